"""The HTML of the three views, as text: every value from a source goes through :func:`html.escape`.

A page is a frame (:func:`page`) around a ``#live`` block; the live stream (:mod:`dashboard.app`)
sends a new ``#live`` block rendered by the same function, so what the first load shows and what an
update shows cannot differ. Sorting and filtering of the fleet table happen in the browser
(``static/dashboard.js``), on the ``data-sort`` values of the cells.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from dashboard.aggregates import DeviceAggregates
from dashboard.commands import Command
from dashboard.fleet import DeviceRow
from dashboard.pipeline_view import DeadLetter, PipelineView
from dashboard.svg import chart, sparkline

__all__ = ["RANGES", "SPARK_SLOT", "device_live", "fleet_live", "fleet_row", "fleet_summary", "login_page",
           "page", "pipeline_live", "spark_cell"]

# the device page's ranges: label -> seconds
RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def page(title: str, body: str, stream: str | None, nav: str) -> str:
    """The frame: a header with the views, the body, and the live stream's address."""
    links = "".join(
        f'<a href="{href}" class="{"on" if key == nav else ""}">{label}</a>'
        for key, href, label in (("fleet", "/", "Fleet"), ("pipeline", "/pipeline", "Pipeline")))
    stream_attr = f' data-stream="{e(stream)}"' if stream else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · edgebridge</title>"
        '<link rel=icon href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel=stylesheet href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head><body>'
        f'<header><b>edgebridge</b><nav>{links}</nav><span id=conn class=conn>connecting…</span></header>'
        f'<main{stream_attr}>{body}</main></body></html>'
    )


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return e(value)


def _ago(text: str | None, now: float) -> str:
    from dashboard.readings import parse_time

    when = parse_time(text) if text else None
    if when is None:
        return "never"
    seconds = max(0, int(now - when))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


COLUMNS = ("device", "site", "location", "status", "last seen", "latest values", "last hour", "alerts")
# a row as sent alone: its sparklines cell left empty, the page keeps the one it has (see dashboard.js)
SPARK_SLOT = "<td class=sparks></td>"


def fleet_summary(rows: list[DeviceRow], now: float, notes: list[str]) -> str:
    online = sum(r.status == "online" for r in rows)
    alerting = sum(bool(r.flags) or r.status == "offline" for r in rows)
    out = [f'<span id=count>{len(rows)}</span> devices · {online} online · '
           f'{alerting} with alerts · updated {datetime.fromtimestamp(now, UTC):%H:%M:%S} UTC']
    out += [f"<span class=note>{e(n)}</span>" for n in notes]
    return " ".join(out)


def fleet_row(r: DeviceRow) -> tuple[str, str]:
    """A device's row, before and after its sparklines cell (kept apart: the sparklines change once a
    minute, the rest with each event). Nothing in it depends on the clock: "last seen" is a time
    (``data-t``) that the page turns into "5s ago" itself, so a row is rendered again only when its
    device changed."""
    alerts = [*r.flags] + (["offline"] if r.status == "offline" else []) + \
             ([] if r.registered else ["unregistered"])
    values = "".join(f'<span class=reading data-name="{e(n)}"><i>{e(n)}</i> <b>{_value(v)}</b> '
                     f'{e(u)}</span>' for n, (v, u) in r.readings.items())
    name = f' <small>{e(r.name)}</small>' if r.name else ""
    head = (f'<tr data-device="{e(r.device_id)}" data-status="{e(r.status)}">'
            f'<td data-sort="{e(r.device_id)}"><a href="/device/{quote(r.device_id, safe="")}">'
            f'{e(r.device_id)}</a>{name}</td>'
            f'<td data-sort="{e(r.site)}">{e(r.site)}</td>'
            f'<td data-sort="{e(r.location)}">{e(r.location)}</td>'
            f'<td data-sort="{e(r.status)}"><span class="status {e(r.status)}">{e(r.status)}</span></td>'
            f'{_seen(r.last_seen)}<td data-sort="{len(r.readings)}">{values}</td>')
    tail = (f'<td data-sort="{len(alerts)}">' + "".join(f'<span class=flag>{e(a)}</span>' for a in alerts)
            + "</td></tr>")
    return head, tail


def _seen(text: str | None) -> str:
    from dashboard.readings import parse_time

    when = parse_time(text) if text else None
    if when is None:
        return '<td data-sort="" class=ago>never</td>'
    shown = datetime.fromtimestamp(when, UTC).strftime("%H:%M:%S")
    return f'<td data-sort="{e(text)}" title="{e(text)}" class=ago data-t="{when:.3f}">{shown}</td>'


def spark_cell(lines: dict[str, list[tuple[float, float]]]) -> str:
    """The sparklines cell: a line per measurement over the hour's closed minutes."""
    return (f'<td class=sparks data-sort="{len(lines)}">'
            + "".join(f'<span class=sparkbox title="{e(n)}">{sparkline(pts)}</span>'
                      for n, pts in sorted(lines.items())) + "</td>")


def fleet_live(summary: str, rows: list[tuple[str, str, str]]) -> str:
    """The fleet block: the summary line and the table of (head, sparklines cell, tail) rows."""
    return (f"<p class=summary id=summary>{summary}</p><table id=fleet><thead><tr>"
            + "".join(f'<th data-col="{i}">{label}</th>' for i, label in enumerate(COLUMNS))
            + "</tr></thead><tbody>" + "".join(h + s + t for h, s, t in rows) + "</tbody></table>")


def fleet_body(live: str) -> str:
    return ('<div class=tools><input id=filter type=search placeholder="filter: device, site, location, '
            f'alert…" aria-label=filter></div><div id=live>{live}</div>')


def _when(unix: float | None) -> str:
    return "" if unix is None else datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _commands(commands: list[Command]) -> str:
    if not commands:
        return "<p class=note>none</p>"
    rows = []
    for c in commands:
        answer = "no reply yet" if c.ok is None else ("ok" if c.ok else "error")
        rows.append(f'<tr data-command="{e(c.id)}"><td>{_when(c.sent_at)}</td><td>{e(c.name)}</td>'
                    f'<td>{e(c.args)}</td><td>{e(c.expires)}</td><td class="answer {answer.split()[0]}">'
                    f'{answer}</td><td>{e(c.answer)}</td><td>{_when(c.answered_at)}</td></tr>')
    return ("<table id=commands><tr><th>sent</th><th>command</th><th>args</th><th>expires</th><th>answer</th>"
            "<th>result or error</th><th>answered</th></tr>" + "".join(rows) + "</table>")


# the newest windows listed per measurement: the chart draws all of the range, the table the latest
WINDOWS_LISTED = 10


def _aggregates(aggs: DeviceAggregates | None, note: str | None) -> str:
    """The device's windows, newest first, per measurement, and its non-zero too-late and ahead
    counts; or the one line saying why there are none."""
    if aggs is None:
        return f"<p class=note id=aggregates-note>{e(note)}</p>" if note else ""
    out = []
    kinds = (("too_late", "too late", aggs.too_late), ("ahead", "ahead of the clock", aggs.ahead))
    counts = [f'<span data-measurement="{e(m)}" data-kind="{kind}">{e(m)}: <b>{n}</b> {label}</span>'
              for kind, label, told in kinds for m, n in sorted(told.items())]
    if counts:
        out.append("<p id=aggregate-counts>readings not applied to a window: " + " · ".join(counts) + "</p>")
    if not aggs.windows:
        out.append("<p class=note id=aggregates-note>no aggregate windows in this range</p>")
        return "".join(out)
    out.append("<table id=aggregates><tr><th>measurement</th><th>window start</th><th>count</th><th>min</th>"
               "<th>max</th><th>mean</th><th>last</th><th>final</th></tr>")
    for name, windows in sorted(aggs.windows.items()):
        for w in reversed(windows[-WINDOWS_LISTED:]):
            out.append(f'<tr data-measurement="{e(name)}" data-start="{w.start:.3f}"><td>{e(name)} '
                       f'<small>{e(w.unit)}</small></td><td>{_when(w.start)}</td><td class=num>{w.count}</td>'
                       + "".join(f"<td class=num>{v:g}</td>" for v in (w.min, w.max, w.mean, w.last))
                       + f'<td>{"final" if w.final else "open"}</td></tr>')
    out.append("</table>")
    return "".join(out)


def device_live(row: DeviceRow | None, device: str, series: dict[str, list[tuple[float, float]]],
                units: dict[str, str], span: str, letters: list[DeadLetter], now: float,
                commands: list[Command] | None = None, aggregates: DeviceAggregates | None = None,
                aggregates_note: str | None = None) -> str:
    ranges = " ".join(f'<a href="?range={k}" class="{"on" if k == span else ""}">{k}</a>' for k in RANGES)
    out = [f"<h1>{e(device)}</h1>"]
    if row is not None:
        out.append(f'<p>{e(row.name or "")} site <b>{e(row.site)}</b> · location <b>{e(row.location)}</b> · '
                   f'<span class="status {e(row.status)}">{e(row.status)}</span> · last seen '
                   f'{_ago(row.last_seen, now)} ({e(row.last_seen)})</p>')
        out.append("<p>" + "".join(f'<span class=reading><i>{e(n)}</i> <b>{_value(v)}</b> {e(u)}</span>'
                                   for n, (v, u) in row.readings.items()) + "</p>")
        if row.flags:
            out.append("<p>" + "".join(f"<span class=flag>{e(f)}</span>" for f in row.flags) + "</p>")
    else:
        out.append("<p class=note>not in the registry and no readings</p>")
    points = sum(len(p) for p in series.values())
    out.append(f'<p class=ranges>range: {ranges} · <span id=points>{points}</span> points</p>')
    out.append(chart(series, units, bands=aggregates.windows if aggregates else None))
    out.append("<h2>Aggregates</h2>")
    out.append(_aggregates(aggregates, aggregates_note))
    out.append("<h2>Last commands</h2>")
    out.append(_commands(commands or []))
    out.append("<h2>Recent dead letters</h2>")
    if letters:
        out.append("<table><tr><th>time</th><th>reason</th><th>component</th><th>error</th><th>at</th></tr>"
                   + "".join(f"<tr><td>{e(d.when)}</td><td>{e(d.reason)}</td><td>{e(d.component)}</td>"
                             f"<td>{e(d.error)}</td><td>{d.partition}:{d.offset}</td></tr>" for d in letters)
                   + "</table>")
    else:
        out.append("<p class=note>none</p>")
    return "".join(out)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}/s"


def pipeline_live(view: PipelineView) -> str:
    if not view.when:
        return "<p class=note>reading Kafka…</p>"
    out = [f'<p class=summary>as of {datetime.fromtimestamp(view.when, UTC):%H:%M:%S} UTC</p>']
    out += [f"<p class='note error'>{e(err)}</p>" for err in view.errors]
    out.append("<h2>By hop</h2><table id=hops><tr><th>figure</th><th>per second</th><th>total</th>"
               "<th>read from</th></tr>")
    out += [f'<tr data-hop="{e(h.key)}"><td>{e(h.label)}</td><td class=num>{_rate(h.rate)}</td>'
            f'<td class=num>{e(h.value) or "not reported"}</td><td class=source>{e(h.source)}</td></tr>'
            for h in view.hops]
    out.append("</table><h2>Topics</h2><table id=topics><tr><th>role</th><th>topic</th><th>end offset</th>"
               "<th>rate</th></tr>")
    out += [f'<tr data-topic="{e(t.topic)}"><td>{e(t.role)}</td><td>{e(t.topic)}</td>'
            f'<td class=num>{"missing" if t.end is None else t.end}</td>'
            f'<td class=num>{_rate(t.rate)}</td></tr>' for t in view.topics]
    out.append("</table><h2>Consumer lag</h2><table id=lag><tr><th>group</th><th>topic</th><th>partition</th>"
               "<th>committed</th><th>end</th><th>lag</th></tr>")
    out += [f'<tr data-group="{e(g.group)}"><td>{e(g.group)}</td><td>{e(g.topic)}</td>'
            f'<td class=num>{g.partition}</td><td class=num>{e(g.committed)}</td>'
            f'<td class=num>{e(g.end)}</td>'
            f'<td class=num>{e(g.lag)}</td></tr>' for g in view.groups]
    out.append("</table><h2>Dead letters by reason</h2><table id=reasons>"
               "<tr><th>reason</th><th>count</th></tr>")
    out += [f'<tr data-reason="{e(r)}"><td>{e(r)}</td><td class=num>{n}</td></tr>'
            for r, n in sorted(view.deadletters_by_reason.items())]
    out.append("</table><h2>Metrics</h2><table id=metrics><tr><th>component</th><th>metric</th>"
               "<th>labels</th><th>value</th><th>rate</th></tr>")
    out += [f"<tr><td>{e(m.endpoint)}</td><td>{e(m.name)}</td><td>{e(m.labels)}</td>"
            f"<td class=num>{m.value:.6g}</td><td class=num>{_rate(m.rate)}</td></tr>" for m in view.metrics]
    out.append("</table>")
    return "".join(out)


def login_page(message: str) -> str:
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>login · edgebridge</title>"
            '<link rel=icon href="/static/favicon.svg" type="image/svg+xml">'
            '<link rel=stylesheet href="/static/dashboard.css"></head><body><main class=login>'
            f"<h1>edgebridge dashboard</h1><p>{e(message)}</p>"
            '<form method=post action="/login"><label>token <input name=token type=password '
            'autocomplete=current-password autofocus></label> <button type=submit>log in</button></form>'
            "</main></body></html>")
