"""The model the jobs ask for a summary (a stand-in: it answers, or times out when the
payload asks it to)."""

from __future__ import annotations

import time


class LLMError(Exception):
    pass


def complete(prompt: str, *, fail: bool = False) -> str:
    time.sleep(0.05)
    if fail:
        raise LLMError("upstream model timed out after 30 s")
    return f"summary of {prompt!r}"
