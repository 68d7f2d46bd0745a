"""The work a task does, as ops-core's engine does it: call the LLM, store the answer.

The bug the seed was about lives in ``LLMClient.complete``: it catches its own exception,
logs a warning with the traceback and returns an empty answer, so the engine marks the
task COMPLETED.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger("tasks.llm")


class LLMError(Exception):
    pass


class LLMClient:
    async def _call(self, prompt: str, fail: bool) -> str:
        await asyncio.sleep(0.05)
        if fail:
            raise LLMError("upstream model timed out after 30 s")
        return f"answer to {prompt!r}"

    async def complete(self, prompt: str, *, fail: bool = False) -> str:
        try:
            return await self._call(prompt, fail)
        except LLMError:
            # BUG: the error is logged and swallowed; the caller cannot tell it failed.
            logger.warning("LLM completion failed for prompt %r", prompt, exc_info=True)
            return ""
