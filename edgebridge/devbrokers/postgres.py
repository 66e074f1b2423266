"""A throwaway PostgreSQL from the system's package (``initdb`` and ``postgres`` from
``/usr/lib/postgresql/*/bin``), for the sink tests: trust authentication, 127.0.0.1 on a free port,
data under the state folder, ``fsync=off`` (a test database, not a durable one).

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (or ``nobody``),
through ``setpriv`` so that our pid *is* the server's (``runuser`` would stay in between). That user
must be able to reach the state folder: give one outside a 0700 directory (e.g. ``tempfile.mkdtemp``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgebridge.devbrokers._process import free_port, port_is_free
from edgebridge.devbrokers.base import ManagedBroker
from edgebridge.errors import BrokerStartError, ToolMissingError

__all__ = ["Postgres"]


def _pg_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if found:
        return found[-1]  # the newest major version installed
    on_path = shutil.which(tool)
    if on_path is None:
        raise ToolMissingError(tool, "postgresql")
    return on_path


class Postgres(ManagedBroker):
    name = "postgres"

    def __init__(self, state_dir: Path, port: int = 0) -> None:
        super().__init__(state_dir)
        self.port = port
        self.initdb = _pg_bin("initdb")
        self.server = _pg_bin("postgres")
        self.user = self._run_as()

    @staticmethod
    def _run_as() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise BrokerStartError("postgres", "running as root, and no 'postgres' or 'nobody' user to run as")

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_user(self, cmd: list[str]) -> list[str]:
        if self.user is None:
            return cmd
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise ToolMissingError("setpriv", "util-linux")
        return [setpriv, f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--init-groups", *cmd]

    def prepare(self) -> None:
        if not self.port or not port_is_free(self.port):
            self.port = free_port()
        if self.user is not None:
            for path in (self.state_dir, *self.state_dir.rglob("*")):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            self._as_user([self.initdb, "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--no-sync"]),
            capture_output=True, text=True)
        if result.returncode != 0:
            self.log_path.write_text(result.stdout + result.stderr)
            raise BrokerStartError("postgres", "initdb failed", str(self.log_path))

    def command(self) -> list[str]:
        return self._as_user([self.server, "-D", str(self.data_dir), "-p", str(self.port),
                              "-c", "listen_addresses=127.0.0.1",
                              "-c", f"unix_socket_directories={self.state_dir}",
                              "-c", "fsync=off", "-c", "full_page_writes=off"])

    def probe(self) -> bool:
        import psycopg  # only the sink tests need it

        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def describe(self) -> dict[str, Any]:
        return {"dsn": self.dsn, "port": self.port, "pid": self.pid, "log": str(self.log_path),
                "data": str(self.data_dir), "ready_seconds": self.ready_seconds}
