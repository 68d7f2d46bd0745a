"""The Content-Security-Policy and htmx's own settings, in Chromium: the pages work under
the policy (no violation), htmx takes no script from a fragment, and an inline script an
observed system might smuggle in would not run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_the_pages_run_under_the_policy_and_htmx_takes_no_scripts(stack, page):
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    response = page.goto(stack.base_url + "/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    page.wait_for_function("() => window.htmx !== undefined")
    assert page.evaluate("htmx.config.allowScriptTags") is False
    assert page.evaluate("htmx.config.allowEval") is False
    page.goto(stack.base_url + "/scenarios/succeeds")
    assert violations == []

    # An inline script that reached the page would be refused by the browser
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = true'; document.body.appendChild(s); }"
    )
    assert page.evaluate("window.__ran === true") is False
    assert any("Content Security Policy" in v for v in violations)
