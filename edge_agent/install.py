"""``edgebridge agent install``: put the systemd unit and a first configuration on a device.

After ``pip install 'edgebridge[agent]'`` (into a venv or system-wide), as root::

    edgebridge agent install [--root DIR] [--executable PATH]

writes, under ``DIR`` (default ``/``):

- ``etc/systemd/system/edge-agent.service``: the packaged unit (``edge_agent/data/edge-agent.service``,
  the one copy; ``deploy/systemd/`` links to it) with ``ExecStart=`` naming the ``edgebridge`` that runs
  this command, so a venv's ``bin/edgebridge`` or ``/usr/local/bin/edgebridge`` is what systemd starts.
  Replaced on every install: it is ours, and an upgrade must bring the new one.
- ``etc/edge-agent/agent.toml``: the packaged example, only when absent (an operator's config is never
  overwritten). 0644: the dynamic user of the unit must read it, and it holds no secret.
- ``etc/edge-agent/mqtt-password``: an empty 0600 file, only when absent, that the unit hands to the
  agent with ``LoadCredential=`` (systemd refuses to start a unit whose credential file is missing; an
  empty one means no password, for certificate login).

then prints what to do next. ``--root`` stages the files into a directory (tests, image builders); without
it the command must run as root. Errors are one line and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["InstallError", "find_executable", "install", "main", "packaged_text", "unit_text"]

UNIT = Path("etc/systemd/system/edge-agent.service")
CONFIG_DIR = Path("etc/edge-agent")
CONFIG = CONFIG_DIR / "agent.toml"
PASSWORD = CONFIG_DIR / "mqtt-password"


class InstallError(Exception):
    """Something the operator must fix; the message says what."""


def packaged_text(name: str) -> str:
    """A file shipped in the package's ``edge_agent/data/`` (the unit, the example config)."""
    return resources.files("edge_agent").joinpath("data", name).read_text(encoding="utf-8")


def _unit_quote(word: str) -> str:
    """``word`` as one word of a unit file's command line: ``%`` and ``$`` are specifier and variable
    expansion there, and a path with blanks or quotes must be quoted."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() or c in "\"'\\;" for c in word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def unit_text(executable: Path) -> str:
    """The packaged unit with its ``ExecStart=`` program replaced by ``executable`` (arguments kept)."""
    lines = packaged_text("edge-agent.service").splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    if len(starts) != 1:  # a packaging mistake, not the operator's
        raise RuntimeError(f"the packaged unit has {len(starts)} ExecStart= lines, expected 1")
    _program, _, arguments = lines[starts[0]].removeprefix("ExecStart=").partition(" ")
    lines[starts[0]] = f"ExecStart={_unit_quote(str(executable))} {arguments}"
    return "".join(lines)


def find_executable() -> Path:
    """The ``edgebridge`` console script of the installation running this: the one that was invoked,
    else the one in this interpreter's scripts directory (a venv's ``bin``, ``/usr/local/bin``)."""
    invoked = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    candidates = [invoked] if invoked is not None and invoked.name == "edgebridge" else []
    candidates.append(Path(sysconfig.get_path("scripts")) / "edgebridge")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Path(os.path.abspath(candidate))
    raise InstallError("cannot find the installed edgebridge executable: give it with --executable PATH")


@dataclass(frozen=True)
class Outcome:
    unit: str  # "written" or "unchanged"
    config: str  # "created" or "kept"
    password: str  # "created" or "kept"
    config_mode: int
    password_mode: int


def _write_atomically(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents 0755 whatever the umask (root's may be 077, and the
    unit's dynamic user must reach the config); existing directories are left as they are."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        os.chmod(directory, 0o755)


def install(root: Path, executable: Path) -> Outcome:
    """Write the files under ``root`` (see the module); ``OSError`` from the file system."""
    unit, config, password = root / UNIT, root / CONFIG, root / PASSWORD
    text = unit_text(executable)
    _make_dirs(unit.parent)
    unchanged = unit.is_file() and unit.read_text(encoding="utf-8") == text
    if not unchanged:
        _write_atomically(unit, text, 0o644)
    _make_dirs(root / CONFIG_DIR)
    config_created = not config.exists()
    if config_created:
        _write_atomically(config, packaged_text("agent.example.toml"), 0o644)
    password_created = False
    try:
        # O_EXCL: never truncate a password an operator has put there; 0600 from the first byte
        os.close(os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        password_created = True
    except FileExistsError:
        pass
    return Outcome(
        unit="unchanged" if unchanged else "written",
        config="created from the example" if config_created else "kept (it exists)",
        password="created empty, mode 0600" if password_created else "kept (it exists)",
        config_mode=stat.S_IMODE(config.stat().st_mode),
        password_mode=stat.S_IMODE(password.stat().st_mode),
    )


def _next_steps(root: Path, executable: Path, outcome: Outcome) -> str:
    def on_device(rel: Path) -> str:
        return "/" + str(rel)

    staged = f" (staged under {root})" if root != Path("/") else ""
    lines = [
        f"installed{staged}:",
        f"  {on_device(UNIT)}: {outcome.unit}, ExecStart={executable} agent run ...",
        f"  {on_device(CONFIG)}: {outcome.config}",
        f"  {on_device(PASSWORD)}: {outcome.password}",
    ]
    if outcome.config_mode & 0o004 == 0:
        lines.append(f"warning: {on_device(CONFIG)} has mode {outcome.config_mode:04o}; the unit's dynamic "
                     f"user cannot read it: chmod 644 {on_device(CONFIG)}")
    if outcome.password_mode & 0o077:
        lines.append(f"warning: {on_device(PASSWORD)} has mode {outcome.password_mode:04o}; "
                     f"make it root-only: chmod 600 {on_device(PASSWORD)}")
    lines += [
        "next:",
        f"  1. edit {on_device(CONFIG)}: device_id, [mqtt] url, username and ca_file, the sources",
        f"  2. password login: put the MQTT password, alone on one line, into {on_device(PASSWORD)}",
        f"     (sudoedit {on_device(PASSWORD)}); systemd hands it to the agent (LoadCredential=),",
        "     never in the config, the environment or a command line. Certificate login: leave it empty",
        "  3. systemctl daemon-reload && systemctl enable --now edge-agent",
        "  4. systemctl status edge-agent; journalctl -u edge-agent -f",
    ]
    return "\n".join(lines)


def main(argv: list[str], prog: str = "edgebridge agent install") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Install the edge agent's systemd unit (ExecStart= this edgebridge), a config from "
        "the example when none exists, and the MQTT password file; then print the next steps.",
    )
    parser.add_argument("--root", metavar="DIR", type=Path, default=None,
                        help="install under DIR instead of / (a staging tree, an image being built)")
    parser.add_argument("--executable", metavar="PATH", type=Path, default=None,
                        help="the edgebridge program for ExecStart= (default: the one running this)")
    args = parser.parse_args(argv)
    try:
        if args.root is None and os.geteuid() != 0:
            raise InstallError("must run as root to write /etc (sudo; or --root DIR to stage the files)")
        root = Path(os.path.abspath(args.root)) if args.root is not None else Path("/")
        if not root.is_dir():
            raise InstallError(f"--root {root}: not a directory")
        executable = find_executable() if args.executable is None else _checked(args.executable)
        outcome = install(root, executable)
    except InstallError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{prog}: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(_next_steps(root, executable, outcome))
    return 0


def _checked(executable: Path) -> Path:
    found = shutil.which(str(executable)) if not executable.is_absolute() else str(executable)
    if not found or not (Path(found).is_file() and os.access(found, os.X_OK)):
        raise InstallError(f"--executable {executable}: not an executable file")
    return Path(os.path.abspath(found))
