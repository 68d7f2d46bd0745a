"""The checker's registry: every finding kind, its causes, what usually fixes each, and
whether it rests on broker steps being absent.

One table, so a kind, its causes and its fix cannot drift apart: the checker's rules
(``lifecycle.check.rules``) register one function for each kind here and name their
findings from it, scenario files are checked against
it, and every place a finding is shown (its page, its JSON's ``"fix"``, the pytest
plugin's report) takes the fix line from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    name: str
    fix: str  # one or two lines: what usually fixes a finding with this cause


@dataclass(frozen=True)
class Rule:
    kind: str
    fix: str  # for a finding with no cause, or a cause without a fix of its own
    causes: tuple[Cause, ...] = ()
    # It rests on broker steps being absent (no retry between two starts; nothing after an
    # ack): a publisher that dropped broker events (a ``gap``) could have dropped exactly
    # those, so while a gap overlaps its proof the checker makes no such claim.
    rests_on_absence: bool = False

    def fix_for(self, cause: str | None) -> str:
        return next((c.fix for c in self.causes if c.name == cause), self.fix)


RULES: tuple[Rule, ...] = (
    Rule(
        "stale_read",
        "Read the task's status from the primary, in a fresh transaction, after the worker's "
        "commit; keep no copy of it in front of the read.",
        (
            Cause(
                "cached_object",
                "Reload the object: session.refresh(obj), SQLAlchemy's populate_existing, "
                "Django's refresh_from_db, or expire the session at the end of each request.",
            ),
            Cause(
                "old_snapshot",
                "End the transaction with each request, or poll with autocommit / READ "
                "COMMITTED instead of one long REPEATABLE READ transaction.",
            ),
            Cause(
                "cached_response",
                "Drop the application's cache entry when the task's row changes (or on "
                "commit), or cache only final statuses.",
            ),
            Cause(
                "replica",
                "Read your own writes from the primary (route status reads there), or wait "
                "until the standby's replay LSN has reached the commit's LSN.",
            ),
            Cause(
                "response_cache",
                "Mark the status endpoint Cache-Control: no-store (Django's never_cache), and "
                "keep it out of cache_page, the CDN and the proxy's cache.",
            ),
        ),
    ),
    Rule(
        "unwritten_read",
        "Return the status the row holds: find the code path that makes up or maps a status "
        "on the way out (a default, a serializer, a cache filled by hand).",
    ),
    Rule(
        "terminal_overwrite",
        "Guard the final write: UPDATE ... WHERE status NOT IN (the terminal ones), and move "
        "success writes out of finally/cleanup paths.",
    ),
    Rule(
        "forbidden_transition",
        "Make the writer go through the lifecycle's steps (or allow the transition in the "
        "scenario file if it is legitimate); a conditional UPDATE on the old status enforces it.",
    ),
    Rule(
        "non_monotonic_reads",
        "Pin a client's reads to one server (the primary, or one replica with sticky "
        "sessions), or send the version it last saw and refuse older ones.",
    ),
    Rule(
        "duplicate_execution",
        "Make the actor idempotent: claim the task with a conditional UPDATE (status = "
        "PENDING → RUNNING) and skip it when the claim finds none.",
        (
            Cause(
                "redelivery",
                "Expect redelivery after a crash before the ack: make the actor idempotent, "
                "checking the committed status before doing the work again.",
            ),
        ),
        rests_on_absence=True,
    ),
    Rule(
        "enqueue_before_commit",
        "Send the message after the commit: transaction.on_commit(lambda: actor.send(...)), "
        "or an outbox table that a relay publishes from.",
    ),
    Rule(
        "stuck",
        "Commit the final status before the actor returns: session.commit() (or "
        "transaction.atomic) around the last write, not only a flush.",
        rests_on_absence=True,
    ),
    Rule(
        "swallowed_error",
        "Let the exception reach the actor (re-raise after logging), or mark the task "
        "FAILED where it is caught.",
    ),
    Rule(
        "expectation_mismatch",
        "Look where the wrong status was born: the worker's commit, or the read path.",
        (
            Cause(
                "committed",
                "The worker committed it: fix the worker's success path (a swallowed error, "
                "a wrong branch), not the reads.",
            ),
            Cause(
                "superseded",
                "The read path served an old version: see the stale read beside it (fresh "
                "transaction, primary, no cached object or response).",
            ),
            Cause(
                "reads_only",
                "No commit wrote it: the API made it up on the way out (a default, a "
                "mapping, a cache).",
            ),
        ),
    ),
)

BY_KIND = {rule.kind: rule for rule in RULES}
KINDS = tuple(rule.kind for rule in RULES)
CAUSES = {rule.kind: tuple(c.name for c in rule.causes) for rule in RULES if rule.causes}
RESTS_ON_ABSENCE = frozenset(rule.kind for rule in RULES if rule.rests_on_absence)


def fix_for(kind: str, cause: str | None = None) -> str:
    """What usually fixes a finding of ``kind`` with ``cause`` ("" for a kind we do not
    know: a finding stored by another version)."""
    rule = BY_KIND.get(kind)
    return rule.fix_for(cause) if rule is not None else ""
