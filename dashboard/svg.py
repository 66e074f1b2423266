"""Sparklines and charts as SVG text, drawn on the server: no chart library, nothing fetched at run time.

Every value is a number the server computed; text goes through :func:`html.escape`. A chart of no
points is an empty frame with a note, never an error.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from dashboard.aggregates import Window, merged

__all__ = ["chart", "sparkline"]

_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")


def _scale(lo: float, hi: float, size: float, pad: float) -> tuple[float, float]:
    span = hi - lo or 1.0
    return (size - 2 * pad) / span, lo


def _path(points: Sequence[tuple[float, float]], x0: float, x1: float, y0: float, y1: float,
          width: float, height: float, pad: float, digits: int = 1) -> str:
    sx, _ = _scale(x0, x1, width, pad)
    sy, _ = _scale(y0, y1, height, pad)
    return " ".join(f"{pad + (x - x0) * sx:.{digits}f},{height - pad - (y - y0) * sy:.{digits}f}"
                    for x, y in points)


def sparkline(points: Sequence[tuple[float, float]], width: int = 120, height: int = 28) -> str:
    """A line of (time, value) points; a single point is a dot."""
    if not points:
        return f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="no data"></svg>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    # whole pixels: a 120-pixel line needs no tenths, and a fleet's table carries a thousand of them
    line = _path(points, min(xs), max(xs), min(ys), max(ys), width, height, 2, digits=0)
    last_x, last_y = line.rsplit(" ", 1)[-1].split(",")
    # the newest point marked: it is the value the row shows, and a lone point is visible at all
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{len(points)} points"><polyline fill="none" stroke="#2563eb" stroke-width="1.5" '
            f'points="{line}"/><circle cx="{last_x}" cy="{last_y}" r="2" fill="#2563eb"/></svg>')


def chart(series: Mapping[str, Sequence[tuple[float, float]]], units: Mapping[str, str], width: int = 860,
          height: int = 300, bands: Mapping[str, Sequence[Window]] | None = None) -> str:
    """One line per measurement, each scaled to its own range (their units differ), with a legend,
    the time axis and each line's minimum and maximum. Each point is also a circle (``data-v``: the
    value), so a reader, or a test, can find the values drawn.

    ``bands``: a measurement's aggregate windows, drawn under its line on the same scale: a rectangle
    from min to max over each window (``data-min``, ``data-max``, ``data-mean``) and the means as a
    dashed line, so the readings and their windows' figures can be checked against each other."""
    pad = 40
    bands = bands or {}
    names = sorted({n for n, pts in series.items() if pts} | {n for n, ws in bands.items() if ws})
    if not names:
        return (f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="no data">'
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no readings in '
                f'this range</text></svg>')
    xs = [p[0] for n in names for p in series.get(n, ())] + \
         [t for n in names for w in bands.get(n, ()) for t in (w.start, w.end)]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="chart of {len(names)} measurements">',
             f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
             f'fill="none" stroke="#ddd"/>']
    for tick in range(5):
        t = x0 + (x1 - x0) * tick / 4
        x = pad + (width - 2 * pad) * tick / 4
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
        parts.append(f'<text x="{x:.1f}" y="{height - pad + 16}" font-size="11" text-anchor="middle" '
                     f'fill="#555">{label}</text>')
    sx = (width - 2 * pad) / (x1 - x0)
    for i, name in enumerate(names):
        colour = _COLOURS[i % len(_COLOURS)]
        pts, windows = series.get(name, ()), merged(list(bands.get(name, ())), width - 2 * pad)
        ys = [p[1] for p in pts] + [v for w in windows for v in (w.min, w.max)]
        y0, y1 = min(ys), max(ys)
        if y0 == y1:
            y0, y1 = y0 - 1, y1 + 1
        sy = (height - 2 * pad) / (y1 - y0)

        def px(t: float, v: float, x0: float = x0, y0: float = y0, sy: float = sy) -> tuple[float, float]:
            return pad + (t - x0) * sx, height - pad - (v - y0) * sy

        parts.append(f'<g class="series" data-name="{html.escape(name)}">')
        if windows:
            parts.append(f'<g class="band" data-name="{html.escape(name)}">')
            for w in windows:
                left, top = px(w.start, w.max)
                right, bottom = px(w.end, w.min)
                parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(right - left, 1):.1f}" '
                             f'height="{max(bottom - top, 1):.1f}" fill="{colour}" fill-opacity="0.15" '
                             f'data-start="{w.start:.3f}" data-min="{w.min:g}" data-max="{w.max:g}" '
                             f'data-mean="{w.mean:g}"/>')
            means = " ".join("{:.1f},{:.1f}".format(*px((w.start + w.end) / 2, w.mean)) for w in windows)
            parts.append(f'<polyline class="mean" fill="none" stroke="{colour}" stroke-width="1" '
                         f'stroke-dasharray="4 3" points="{means}"/></g>')
        if pts:
            line = " ".join("{:.1f},{:.1f}".format(*px(x, y)) for x, y in pts)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{line}"/>')
            for (x, y), xy in zip(pts, line.split(" "), strict=True):
                cx, cy = xy.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}" data-v="{y:g}" '
                             f'data-t="{x:.3f}"/>')
        label = html.escape(f"{name} ({units.get(name, '')}) {min(ys):g} .. {max(ys):g}"
                            + (" · band: windows' min..max, dashed: their mean" if windows else ""))
        parts.append(f'<text x="{pad + 8}" y="{pad + 16 + 15 * i}" font-size="12" fill="{colour}">'
                     f'{label}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
