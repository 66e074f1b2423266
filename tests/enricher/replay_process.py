"""``edgebridge replay`` as a subprocess of a test: its output lines as they come, signals, exit status."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.enricher.conftest import ROOT

__all__ = ["PROGRESS", "Replay"]

PROGRESS = re.compile(r"^\s+(\d+)/(\d+) records")


class Replay:
    """``edgebridge replay`` as a subprocess whose stdout lines are collected by a thread."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=ROOT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line)

    def wait_progress(self, accept: Callable[[int, int], bool], timeout: float) -> tuple[int, int]:
        """The first progress line ``done/total`` that ``accept`` takes; fails if the replay ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and not self.reader.is_alive():
                    break  # ended (an error line, or none)
                continue
            self.out.append(line)
            match = PROGRESS.match(line)
            if match and accept(int(match[1]), int(match[2])):
                return int(match[1]), int(match[2])
            if line.startswith(("done:", "stopped:")):
                break
        raise AssertionError(f"no progress line accepted before the end:\n{self.text()}")

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(10)  # the pipe drained and closed
        while not self.lines.empty():
            self.out.append(self.lines.get())
        self.log.write_text(self.text())
        return code

    def text(self) -> str:
        return "".join(self.out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.reader.join(10)

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The first line starting with ``prefix``; fails if the replay ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and not self.reader.is_alive():
                    break
                continue
            self.out.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line {prefix!r} before the end or {timeout} s:\n{self.text()}")
