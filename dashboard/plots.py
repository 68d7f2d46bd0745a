"""The scenario page's two plots, SVG from the server: the verdicts of its recent runs,
and a histogram of its probe reads' latency. Read without JavaScript; every mark has a
``<title>``, and a verdict links to its run."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from lifecycle.models import Run

WIDTH = 600
CELL = 12
VERDICT_CLASS = {"pass": "v-pass", "fail": "v-fail"}


def verdicts(runs: Sequence[Run]) -> str:
    """A strip of squares, oldest first: green a pass, red and crossed a fail, hollow
    still running. A group of links (each run's), named for what it shows."""
    if not runs:
        return ""
    per_row = WIDTH // CELL
    rows = (len(runs) + per_row - 1) // per_row
    height = rows * CELL
    parts = [
        f'<svg class="plot verdict-strip" viewBox="0 0 {WIDTH} {height}" role="group" '
        f'aria-label="verdicts of the last {len(runs)} runs, oldest first" '
        'data-testid="verdict-plot" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, run in enumerate(runs):
        x, y = (i % per_row) * CELL, (i // per_row) * CELL
        verdict = run.verdict or "running"
        title = escape(f"run {run.id}: {verdict}, observed {run.observed or '—'}")
        cross = (
            f'<path class="cross" d="M{x + 3} {y + 3}l6 6m0 -6l-6 6"/>'
            if run.verdict == "fail"
            else ""
        )
        parts.append(
            f'<a href="/runs/{run.id}"><title>{title}</title>'
            f'<rect class="{VERDICT_CLASS.get(run.verdict or "", "v-running")}" x="{x + 1}" '
            f'y="{y + 1}" width="{CELL - 2}" height="{CELL - 2}" rx="2"/>{cross}</a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_histogram(latencies_ms: Sequence[float], bins: int = 24) -> str:
    """How long the probe's reads took: bins up to the 99th percentile (the slower rest in
    the last bin), each bar titled with its range and count."""
    values = sorted(v for v in latencies_ms if v >= 0)
    if not values:
        return ""
    top = values[min(len(values) - 1, int(len(values) * 0.99))] or values[-1] or 1.0
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v / width))] += 1
    height, bottom, left = 120, 18, 36
    peak = max(counts)
    bar = (WIDTH - left) / bins
    parts = [
        f'<svg class="plot latency" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="latency of {len(values)} probe reads" data-testid="latency-plot" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<text class="axis" x="0" y="10">{peak}</text>'
        f'<text class="axis" x="0" y="{height - bottom}">0</text>',
    ]
    for i, n in enumerate(counts):
        h = (height - bottom - 4) * n / peak
        x = left + i * bar
        low, high = i * width, (i + 1) * width
        more = "+" if i == bins - 1 else ""
        title = f"{n} read{'s' if n != 1 else ''} of {low:.1f} to {high:.1f}{more} ms"
        parts.append(
            f'<g><title>{escape(title)}</title><rect class="bar" x="{x + 1:.1f}" '
            f'y="{height - bottom - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}"/></g>'
        )
    for i in (0, bins // 2, bins):
        parts.append(
            f'<text class="axis" x="{left + i * bar:.1f}" y="{height - 4}" '
            f'text-anchor="middle">{i * width:.0f} ms</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
