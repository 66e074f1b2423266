"""``edgebridge dashboard``: serve the dashboard until SIGTERM/Ctrl-C.

Prints one line, ``dashboard: URL``, once it listens (``port = 0`` picks a free port: the line says
which). Exit status 2 for a configuration it refuses (no login on a non-loopback address, a database
that does not exist, an unreadable token file), 1 when it cannot listen.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.errors import ConfigError

__all__ = ["main"]

log = logging.getLogger("dashboard")

EXAMPLES = """\
examples:
  EDGEBRIDGE_WEB_TOKEN_FILE=/etc/edgebridge/dashboard.token \\
  EDGEBRIDGE_SOURCES_SQLITE=/var/lib/edgebridge/sink.db edgebridge dashboard
  EDGEBRIDGE_SOURCES_POSTGRES="host=db dbname=edgebridge user=dashboard" edgebridge dashboard
  edgebridge dashboard --config dashboard.toml
  edgebridge dashboard --no-login            on 127.0.0.1 only: no token asked

The token comes from [web] token_file, EDGEBRIDGE_WEB_TOKEN or [web] token; never from the command line.
"""


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A read-only live web page of the fleet (registry, latest values, status) and the "
        "pipeline (offsets, lag, dead letters, metrics).")
    add_config_arguments(parser)
    parser.add_argument("--no-login", action="store_true",
                        help="serve without a token; refused unless [web] host is a loopback address")
    args = parser.parse_args(argv)
    from dashboard.config import DashboardConfig

    if args.no_login:
        import os

        # the flag is the [web] no_login key, above the file and the environment
        os.environ["EDGEBRIDGE_WEB_NO_LOGIN"] = "true"
    config = config_or_exit_code(DashboardConfig, args, prog)
    if isinstance(config, int):
        return config
    try:
        return _serve(config, prog)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _serve(config: object, prog: str) -> int:
    import uvicorn

    from dashboard.app import Sources, build_app
    from dashboard.auth import Login
    from dashboard.config import DashboardConfig
    from dashboard.pipeline import PipelineFeed
    from dashboard.readings import ReadingsDb
    from dashboard.readings_pg import PostgresReadings
    from dashboard.registry_feed import RegistryFeed
    from dashboard.status_feed import StatusFeed
    from edgebridge.logs import setup_logging

    assert isinstance(config, DashboardConfig)
    setup_logging(config.log.level, config.log.format)
    web, src = config.web, config.sources
    readings: ReadingsDb | PostgresReadings | None = None
    if src.sqlite is not None:
        try:
            readings = ReadingsDb(src.sqlite)
        except (OSError, Exception) as exc:  # sqlite3.Error, FileNotFoundError: one line
            raise ConfigError("sources.sqlite", str(exc)) from exc
    elif src.postgres is not None:
        try:
            readings = PostgresReadings(src.postgres, config.topics.processed)
        except Exception as exc:  # psycopg.OperationalError: not reachable, refused; one line
            raise ConfigError("sources.postgres", str(exc).strip().splitlines()[0]) from exc
    client = config.kafka.client_config({})
    sources = Sources(
        readings=readings,
        registry=RegistryFeed(client, config.topics.devices),
        status=StatusFeed(config.mqtt) if src.mqtt else None,
        pipeline=PipelineFeed(client, config.topics, src.metrics_endpoints(), period=max(2.0, src.refresh)),
    )
    family = socket.AF_INET6 if ":" in web.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((web.host, web.port))
        sock.listen(2048)  # before the URL is printed: a client that reads it can connect at once
    except OSError as exc:
        print(f"{prog}: cannot listen on {web.host}:{web.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    app = build_app(sources, Login(web.token, secure_cookie=web.tls), refresh=src.refresh)
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=2, lifespan="off",
        ssl_certfile=str(web.cert_file) if web.cert_file else None,
        ssl_keyfile=str(web.key_file) if web.key_file else None))
    host = f"[{web.host}]" if ":" in web.host else web.host
    sources.start()
    print(f"dashboard: {'https' if web.tls else 'http'}://{host}:{port}/", flush=True)
    log.info("dashboard serving", extra={"host": web.host, "port": port, "tls": web.tls,
                                         "login": web.token is not None})
    try:
        server.run(sockets=[sock])
    finally:
        sources.stop()
        sock.close()
    return 0
