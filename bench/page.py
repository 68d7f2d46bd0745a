"""Benchmark a long task's page: the server's time, Chromium's time, the bytes.

Three pages of histories shaped like a long lab task (``bench.dashboard.history``: 10 %
commits, reads of three clients, probe polls, warnings, retried attempts), inserted with
COPY under keys of its own and removed at the end:

- the 5,000-event page as it was rendered before windows (``?whole=1``: every event in
  the page), the baseline;
- the 5,000-event page and the 100,000-event page as they are served now (an outline,
  the first and last events, the rest in windows).

For each: the server's time (median ``django.test.Client`` GET, in this process), and in
Debian's Chromium through a real daphne (median of 3 fresh contexts): the time to
``DOMContentLoaded`` (the page parsed, its scripts run: links, runs and windows answer),
to ``load``, the bytes transferred (the page and its static files) and the page's DOM
nodes. Then, on the 100,000-event page, the time from following a link to an event in
the middle (``#event-N``, not in the page) until it is on screen.

    python -m bench --only page          (make bench runs it too)

Chromium is /usr/bin/chromium (``apt-get install chromium``), driven by Playwright.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

TARGET_INTERACTIVE_MS = 1000.0  # the 100,000-event page, in Chromium
TARGET_BYTES = 5 * 1024 * 1024
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[1]


def bench_page(events: int = 100_000, baseline: int = 5000) -> dict[str, Any]:
    from django.db import connection

    from bench.dashboard import _bench_user, _free_port, _insert_history, _wait_for_port
    from bench.harness import stop

    keys = {events: f"bench-page-{uuid.uuid4()}", baseline: f"bench-page-{uuid.uuid4()}"}
    started = time.perf_counter()
    for count, key in keys.items():
        _insert_history(key, count)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE lifecycle_event")
    inserted = time.perf_counter() - started
    cookie = _session_cookie(_bench_user())
    port = _free_port()
    log = tempfile.TemporaryFile()
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
        + ["dashboard.asgi:application"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not _wait_for_port(port, 30, daphne):
            raise RuntimeError(f"daphne did not listen on port {port}")
        base = f"http://127.0.0.1:{port}"
        pages = {
            f"{baseline} events, whole (before)": f"/tasks/{keys[baseline]}?whole=1",
            f"{baseline} events": f"/tasks/{keys[baseline]}",
            f"{events} events": f"/tasks/{keys[events]}",
        }
        result: dict[str, Any] = {"events": events, "baseline": baseline, "pages": {}}
        for name, path in pages.items():
            first, again = _server_ms(path)
            result["pages"][name] = {
                "first_ms": first,
                "server_ms": again,
                **_browser(base + path, cookie),
            }
        result["jump_ms"] = _jump(base, keys[events], cookie)
        result["inserted_s"] = inserted
    finally:
        stop(daphne)
        with connection.cursor() as cursor:
            for key in keys.values():
                cursor.execute("DELETE FROM lifecycle_event WHERE task_key = %s", [key])
                cursor.execute("DELETE FROM lifecycle_task_check WHERE task_key = %s", [key])
    print(format_page(result), flush=True)
    return result


def _session_cookie(user: Any) -> dict[str, str]:
    """A logged-in session for the browser: the page a reader gets, not the login's."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return {"name": settings.SESSION_COOKIE_NAME, "value": session.session_key or ""}


def _server_ms(path: str, repeat: int = 5) -> tuple[float, float]:
    """The first GET's time and the median of the next ``repeat``, in ms."""
    from django.conf import settings
    from django.test import Client

    from bench.dashboard import _bench_user

    host = "testserver" if "testserver" in settings.ALLOWED_HOSTS else "127.0.0.1"
    client = Client(HTTP_HOST=host)
    client.force_login(_bench_user())
    start = time.perf_counter()
    client.get(path)  # the first GET: the outline is read (and kept), templates loaded
    first = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
    return first, statistics.median(times) * 1000


TIMING = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  const bytes = performance.getEntriesByType("resource")
    .reduce((sum, r) => sum + r.transferSize, n.transferSize);
  return {interactive_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd, bytes: bytes,
          html_bytes: n.transferSize, nodes: document.getElementsByTagName("*").length};
}"""


def _browser(url: str, cookie: dict[str, str], repeat: int = 3) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    runs = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies(
                    [{"name": cookie["name"], "value": cookie["value"], "url": url}]
                )
                page = context.new_page()
                page.goto(url, wait_until="load", timeout=120_000)
                runs.append(page.evaluate(TIMING))
                context.close()
        finally:
            browser.close()
    found = {
        key: statistics.median(r[key] for r in runs)
        for key in ("interactive_ms", "load_ms", "bytes", "html_bytes", "nodes")
    }
    found["first_interactive_ms"] = runs[0]["interactive_ms"]  # the server's first view
    return found


def _jump(base: str, key: str, cookie: dict[str, str]) -> float:
    """From following a link to an event in the middle until it is in view, in ms."""
    from playwright.sync_api import sync_playwright

    from lifecycle.models import Event

    ids = list(
        Event.objects.filter(task_key=key, source="log").order_by("id").values_list("id", flat=True)
    )
    middle = ids[len(ids) // 2]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": cookie["name"], "value": cookie["value"], "url": base}])
            page = context.new_page()
            page.goto(f"{base}/tasks/{key}", wait_until="load", timeout=120_000)
            assert page.locator(f"#event-{middle}").count() == 0
            start = time.perf_counter()
            page.evaluate(f"location.hash = '#event-{middle}'")
            page.locator(f"#event-{middle}").wait_for(state="visible", timeout=30_000)
            return (time.perf_counter() - start) * 1000
        finally:
            browser.close()


def format_page(r: dict[str, Any]) -> str:
    lines = [
        "long task page (server: django.test.Client GETs, the first and the median of 5 "
        "more; browser: Chromium through daphne, median of 3)",
        f"  {'page':<30}{'first GET':>10}{'again':>7}{'interactive ms':>16}{'first view':>12}"
        f"{'load ms':>9}{'MB':>7}{'HTML MB':>9}{'DOM nodes':>11}",
    ]
    for name, p in r["pages"].items():
        lines.append(
            f"  {name:<30}{p['first_ms']:>10.0f}{p['server_ms']:>7.0f}{p['interactive_ms']:>16.0f}"
            f"{p['first_interactive_ms']:>12.0f}{p['load_ms']:>9.0f}"
            f"{p['bytes'] / 1048576:>7.2f}{p['html_bytes'] / 1048576:>9.2f}{p['nodes']:>11.0f}"
        )
    long = r["pages"][f"{r['events']} events"]
    lines.append(
        f"  a link to an event in the middle of {r['events']}: on screen in {r['jump_ms']:.0f} ms"
    )
    lines.append(
        f"  target: {r['events']} events interactive ≤ {TARGET_INTERACTIVE_MS:g} ms "
        f"({'met' if long['interactive_ms'] <= TARGET_INTERACTIVE_MS else 'MISSED'}), "
        f"≤ {TARGET_BYTES / 1048576:g} MB ({'met' if long['bytes'] <= TARGET_BYTES else 'MISSED'})"
        f"\n  ('interactive' is DOMContentLoaded: the page parsed and its scripts run; 'first "
        "view' is the first of the three, when the server reads the outline; later views "
        f"reuse it until the task's next event; the histories took {r['inserted_s']:.0f} s "
        "to insert)"
    )
    return "\n".join(lines)
