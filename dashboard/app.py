"""The web app (Starlette): three views, their live stream, the login, the vendored static files.

Routes, all GET but the login's POST (the dashboard changes nothing anywhere):

- ``/`` the fleet, ``/device/{id}?range=1h`` a device, ``/pipeline`` the pipeline;
- ``/events?view=fleet|device|pipeline[&device=ID&range=1h]`` server-sent events: an ``update`` with
  the view's new ``#live`` block whenever what it shows changed (looked at every ``[sources] refresh``
  seconds), a comment every 15 s otherwise (proxies keep an idle stream open);
- ``/api/fleet`` the fleet as JSON, for scripts;
- ``/login`` the form, and its POST that sets the session cookie (:mod:`dashboard.auth`).

Rendering runs in worker threads (the sources are blocking: SQLite, feeds' snapshots); a rendered block
is kept per (view, parameters, version), so a hundred open pages cost one rendering per change.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from dashboard import pages
from dashboard.aggregates import MISSING
from dashboard.auth import Login, guard
from dashboard.fleet import DeviceRow, fleet_rows
from dashboard.fleet_table import FleetPage, FleetTable
from dashboard.pipeline import PipelineFeed, PipelineView
from dashboard.readings import Latest, ReadingsDb
from dashboard.readings_pg import PostgresReadings, PostgresRecent
from dashboard.recent import RecentRows
from dashboard.registry_feed import RegistryFeed
from dashboard.status_feed import StatusFeed

__all__ = ["Sources", "build_app"]

KEEPALIVE = 15.0
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "favicon.svg": "image/svg+xml"}
# no inline script, nothing from another origin
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass
class Sources:
    """What the dashboard reads; each may be absent (not configured), and the page says so."""

    readings: ReadingsDb | PostgresReadings | None  # the SQLite or the PostgreSQL sink's table
    registry: RegistryFeed | None
    status: StatusFeed | None
    pipeline: PipelineFeed | None
    recent: RecentRows | PostgresRecent | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.readings, ReadingsDb):
            self.recent = RecentRows(self.readings)
        elif self.readings is not None:
            self.recent = self.readings.recent()

    def start(self) -> None:
        for feed in (self.registry, self.status, self.pipeline):
            if feed is not None:
                feed.start()

    def stop(self) -> None:
        for feed in (self.registry, self.status, self.pipeline):
            if feed is not None:
                feed.stop()
        if self.readings is not None:
            self.readings.close()

    def version(self, view: str) -> tuple[Any, ...]:
        readings = self.readings.version() if self.readings else 0
        registry = self.registry.version if self.registry else 0
        status = self.status.version if self.status else 0
        pipeline = self.pipeline.version if self.pipeline else 0
        if view == "pipeline":
            return (pipeline,)
        if view == "fleet":
            # the sparklines move on when a minute closes; "5s ago" is counted by the page itself
            return readings, registry, status, int(time.time() // 60)
        # the device page's "5s ago" is the server's: a new block at least every 5 s
        return readings, registry, status, pipeline, int(time.time() / 5)

    def notes(self) -> list[str]:
        notes = []
        if self.readings is None:
            notes.append("no [sources] sqlite or postgres configured: no readings")
        if self.registry is not None and self.registry.error:
            notes.append(f"registry: {self.registry.error}")
        if self.status is None:
            notes.append("status topic not followed ([sources] mqtt = false)")
        elif not self.status.connected:
            notes.append("MQTT not connected: online/offline unknown")
        return notes

    def fleet(self, device: str | None = None) -> list[DeviceRow]:
        registry = dict(self.registry.devices) if self.registry else {}
        states = dict(self.status.states) if self.status else {}
        latest: dict[str, Latest] = {}
        if self.recent is not None:
            self.recent.refresh()
            latest = self.recent.latest_rows()
        if device is not None:
            registry = {k: v for k, v in registry.items() if k == device}
            latest = {k: v for k, v in latest.items() if k == device}
            states = {k: v for k, v in states.items() if k == device}
        return fleet_rows(registry, latest, states)

    def pipeline_view(self) -> PipelineView:
        return self.pipeline.view if self.pipeline else PipelineView(errors=["Kafka not configured"])


class _Rendered:
    """The last blocks rendered, by (view, parameters, version): bounded, least recent out."""

    def __init__(self, size: int = 256) -> None:
        self._blocks: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], render: Callable[[], str]) -> str:
        with self._lock:
            if key in self._blocks:
                self._blocks.move_to_end(key)
                return self._blocks[key]
        block = render()
        with self._lock:
            self._blocks[key] = block
            while len(self._blocks) > self._size:
                self._blocks.popitem(last=False)
        return block


def _span(request: Request) -> str:
    span = request.query_params.get("range", "1h")
    return span if span in pages.RANGES else "1h"


def build_app(sources: Sources, login: Login, refresh: float = 1.0) -> Any:
    rendered = _Rendered()
    table = FleetTable(sources)

    def live(view: str, device: str, span: str) -> tuple[tuple[Any, ...], str]:
        version = sources.version(view)
        key = (view, device, span, version)

        def render() -> str:
            now = time.time()
            if view == "pipeline":
                return pages.pipeline_live(sources.pipeline_view())
            if view == "device":
                rows = sources.fleet(device)
                row = rows[0] if rows else None
                seconds = pages.RANGES[span]
                points = (sources.readings.series(now - seconds, device=device, per_minute=seconds > 3600)
                          .get(device, []) if sources.readings else [])
                series: dict[str, list[tuple[float, float]]] = {}
                for p in points:
                    for name, value in p.values.items():
                        series.setdefault(name, []).append((p.when, value))
                units = {n: u for n, (_, u) in row.readings.items()} if row else {}
                letters = sources.pipeline.deadletters_of(device) if sources.pipeline else []
                commands = sources.pipeline.commands.of(device) if sources.pipeline else []
                aggs = sources.readings.aggregates(device, now - seconds) if sources.readings else None
                note = MISSING if sources.readings and aggs is None else None
                return pages.device_live(row, device, series, units, span, letters, now, commands, aggs, note)
            return table.state().block()

        return version, rendered.get(key, render)

    async def fleet(request: Request) -> Response:
        _, block = await run_in_threadpool(live, "fleet", "", "1h")
        return HTMLResponse(pages.page("Fleet", pages.fleet_body(block), "/events?view=fleet", "fleet"))

    async def device(request: Request) -> Response:
        device_id, span = request.path_params["device"], _span(request)
        _, block = await run_in_threadpool(live, "device", device_id, span)
        query = f"/events?view=device&device={device_id}&range={span}"
        return HTMLResponse(pages.page(device_id, f"<div id=live>{block}</div>", query, "fleet"))

    async def pipeline(request: Request) -> Response:
        _, block = await run_in_threadpool(live, "pipeline", "", "1h")
        return HTMLResponse(pages.page("Pipeline", f"<div id=live>{block}</div>", "/events?view=pipeline",
                                       "pipeline"))

    async def events(request: Request) -> Response:
        view = request.query_params.get("view", "fleet")
        if view not in ("fleet", "device", "pipeline"):
            return PlainTextResponse("view: expected fleet, device or pipeline", 400)
        device_id, span = request.query_params.get("device", ""), _span(request)

        held = FleetPage()  # what this page's fleet table holds

        def fleet_update() -> tuple[tuple[Any, ...], dict[str, Any] | None]:
            state = table.state()
            return state.version, held.update(state)

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            last: tuple[Any, ...] | None = None
            quiet_since = time.monotonic()
            while not await request.is_disconnected():
                message: dict[str, Any] | None = None
                if view == "fleet":  # only the rows that changed
                    version, message = await run_in_threadpool(fleet_update)
                else:  # the whole block
                    version, block = await run_in_threadpool(live, view, device_id, span)
                    if version != last:
                        message = {"html": block, "at": time.time()}
                last = version
                if message is not None:
                    quiet_since = time.monotonic()
                    yield b"event: update\ndata: " + orjson.dumps(message) + b"\n\n"
                elif time.monotonic() - quiet_since > KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield b": keepalive\n\n"
                await asyncio.sleep(refresh)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def api_fleet(request: Request) -> Response:
        rows = await run_in_threadpool(sources.fleet)
        return Response(orjson.dumps([asdict(r) for r in rows]), media_type="application/json")

    async def login_form(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(pages.login_page("Log in with the dashboard's token."))
        body = (await request.body())[:4096]
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not login.token_matches(token):
            return HTMLResponse(pages.login_page("Wrong token."), 401)
        response = RedirectResponse("/", 303)
        response.headers.append("set-cookie", login.cookie_header())
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", 404)
        body = resources.files("dashboard").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name])

    def refuse(scope: Any) -> Response:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        challenge = {"www-authenticate": 'Bearer realm="edgebridge dashboard"'}
        if "text/html" in headers.get("accept", ""):
            return HTMLResponse(pages.login_page("Log in with the dashboard's token."), 401, challenge)
        return PlainTextResponse("401 Unauthorized: a token is needed (Bearer, basic auth or the login form)",
                                 401, challenge)

    async def favicon(request: Request) -> Response:
        return RedirectResponse("/static/favicon.svg", 301)

    routes = [
        Route("/", fleet), Route("/device/{device:str}", device), Route("/pipeline", pipeline),
        Route("/events", events), Route("/api/fleet", api_fleet),
        Route("/login", login_form, methods=["GET", "POST"]), Route("/static/{name:str}", static),
        Route("/favicon.ico", favicon),
    ]
    app = Starlette(routes=routes)
    return _headers(guard(app, login, refuse))


def _headers(app: Any) -> Any:
    """The security headers on every answer."""
    extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, sending)

    return middleware
