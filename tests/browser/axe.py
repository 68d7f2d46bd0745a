"""axe-core, the accessibility engine behind Lighthouse, run on a page as Chromium drew it.

The engine is vendored as a test asset named by its version (``assets/``, with its
licence and checksum), never served by the dashboard. It is put in the page through the
DevTools protocol (Playwright's ``evaluate``), which a page's Content-Security-Policy does
not govern: the policy stays ``script-src 'self'`` with no exception for the tests.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).parent / "assets"
AXE = ASSETS / "axe-core-4.14.1.min.js"
# WCAG 2.0 and 2.1, levels A and AA: what the issue holds every page to.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@functools.cache
def source() -> str:
    text = AXE.read_bytes()
    sums = dict(reversed(line.split()) for line in (ASSETS / "SHA256SUMS").read_text().splitlines())
    assert hashlib.sha256(text).hexdigest() == sums[AXE.name], f"{AXE.name} was altered"
    return text.decode()


def violations(page: Any, context: Any = None) -> list[dict[str, Any]]:
    """axe's violations of the WCAG 2.1 A and AA rules on ``page`` as it is now
    (``context``: a selector to check only a part)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # The UMD bundle sets window.axe when it finds no module system; wrapped in a
        # function so that its top-level names stay its own.
        page.evaluate(f"(() => {{\n{source()}\n}})()")
    return page.evaluate(
        """([context, tags]) => axe.run(context || document,
             {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})
           .then(r => r.violations.map(v => ({
             id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
             nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html,
                                       summary: n.failureSummary}))})))""",
        [context, TAGS],
    )


def report(found: list[dict[str, Any]]) -> str:
    """The violations as a reader wants them: rule, impact, and each element with why."""
    lines = []
    for v in found:
        lines.append(f"{v['impact'] or '?'}: {v['id']}: {v['help']} ({len(v['nodes'])})")
        lines.append(f"  {v['helpUrl']}")
        for n in v["nodes"][:8]:
            lines.append(f"  - {n['target']}")
            lines.append(f"    {n['html'][:200]}")
            for reason in (n["summary"] or "").splitlines():
                lines.append(f"      {reason}")
        if len(v["nodes"]) > 8:
            lines.append(f"  … and {len(v['nodes']) - 8} more")
    return "\n".join(lines)


def assert_clean(page: Any, context: Any = None) -> None:
    found = violations(page, context)
    assert not found, f"axe found on {page.url}:\n{report(found)}"
