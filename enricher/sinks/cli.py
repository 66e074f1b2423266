"""``edgebridge sink sqlite --db FILE`` and ``edgebridge sink postgres --dsn DSN``: processed events into a
database, exactly once (offsets stored with the rows). SIGTERM finishes the batch and exits 0."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from edgebridge import service
from edgebridge.config import add_config_arguments, config_or_exit_code
from enricher.sinks.base import SinkConfig, SinkRunner, Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("enricher.sinks")


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Write iot.events.processed (read_committed) "
                                     "into a database, exactly once: offsets live in the database.")
    sub = parser.add_subparsers(dest="kind", required=True, metavar="{sqlite,postgres}")
    sq = sub.add_parser("sqlite", help="into a SQLite file (sqlite-utils)")
    sq.add_argument("--db", type=Path, required=True, help="the SQLite database file")
    pg = sub.add_parser("postgres", help="into PostgreSQL (psycopg 3)")
    pg.add_argument("--dsn", default=None,
                    help=f"libpq connection string without a password (default: ${DSN_ENV}; empty: libpq's "
                    "PG* variables). A password goes in PGPASSFILE, PGPASSWORD or $" + DSN_ENV +
                    ", never on the command line, where every process listing shows it")
    for p in (sq, pg):
        add_config_arguments(p)
    args = parser.parse_args(argv)
    config = config_or_exit_code(SinkConfig, args, prog)
    if isinstance(config, int):
        return config
    # opened before the shell installs its stop handlers: a connect that hangs (psycopg waits up to
    # 130 s) must still die at once on SIGTERM/Ctrl-C, as nothing was written yet
    opened = _open_store(args, prog)
    if isinstance(opened, int):
        return opened
    return service.run(config, lambda config: _build(config, opened), name="sink", log=log)


def _build(config: SinkConfig, opened: Store) -> service.Service:
    try:
        runner = SinkRunner(config, opened)
    except BaseException:
        opened.close()
        raise

    def run(stop: threading.Event) -> None:
        runner.run(stop)
        log.info("sink stopped", extra={"written": runner.written, "skipped": runner.skipped,
                                        "quarantined": runner.quarantined})

    return service.Service(run, health=runner.progress.health, registry=lambda: _registry(runner))


def _registry(runner: SinkRunner) -> CollectorRegistry:
    """The runner's counts and the process."""
    from edgebridge.metrics import new_registry
    from enricher.sinks.metrics import register

    registry = new_registry()
    register(runner, registry)
    return registry


DSN_ENV = "EDGEBRIDGE_SINK_DSN"


def _dsn(args: argparse.Namespace, prog: str) -> str | int:
    """The DSN: --dsn (refused when it carries a password), else $EDGEBRIDGE_SINK_DSN, else "" (libpq
    then reads PGHOST, PGUSER, PGPASSFILE...)."""
    import psycopg

    if args.dsn is None:
        return os.environ.get(DSN_ENV, "")
    try:
        password = psycopg.conninfo.conninfo_to_dict(args.dsn).get("password")
    except psycopg.ProgrammingError as exc:  # not a connection string
        print(f"{prog}: --dsn: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    if password:
        print(f"{prog}: --dsn: holds a password, which every process listing would show; give it in "
              f"PGPASSFILE, PGPASSWORD or {DSN_ENV} instead", file=sys.stderr)
        return 2
    return str(args.dsn)


def _open_store(args: argparse.Namespace, prog: str) -> Store | int:
    """The store, or the exit status after a one-line error: 2 for a database the arguments cannot name
    (a path that cannot be opened, a malformed DSN), 1 for a server that cannot be reached."""
    if args.kind == "sqlite":
        import sqlite3

        from enricher.sinks.sqlite import SqliteStore

        try:
            return SqliteStore(args.db)
        except (sqlite3.Error, OSError) as exc:
            print(f"{prog}: cannot open {args.db}: {exc}", file=sys.stderr)
            return 2
    import psycopg

    from enricher.sinks.postgres import PostgresStore

    dsn = _dsn(args, prog)
    if isinstance(dsn, int):
        return dsn
    try:
        return PostgresStore(dsn)
    except psycopg.ProgrammingError as exc:  # not a connection string
        print(f"{prog}: --dsn: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"{prog}: cannot connect: {exc}".splitlines()[0], file=sys.stderr)
        return 1
