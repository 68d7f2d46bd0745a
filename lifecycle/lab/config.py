"""The lab task's config: what the work does and which fault switches are on.

The API validates the *shape* of a config (400 on a bad one); the worker validates its
*content* (``input`` must hold numbers), which is how a task fails on an invalid config.
"""

from __future__ import annotations

from typing import Any

# Each switch reproduces one real bug of API + worker + database systems (README: The lab).
FAULT_SWITCHES: dict[str, str] = {
    "swallowed_error": "The work fails; the worker catches and logs the error, then commits "
    "COMPLETED.",
    "missing_commit": "The worker writes its final status but never commits it; the session "
    "closes and the write is rolled back.",
    "overwrite_after_failure": "The worker commits FAILED, then a cleanup path commits "
    "COMPLETED over it.",
    "cached_read": "The API answers from a per-process cache of task objects that is never "
    "refreshed.",
    "snapshot_read": "The API reads the task inside one long REPEATABLE READ transaction per "
    "task, so it keeps seeing its first snapshot.",
    "enqueue_before_commit": "The API sends the message before the task row commits, so the "
    "worker may not find the row and drops the message.",
    "redelivery": "The worker process dies after the work and before the ack, so RabbitMQ "
    "redelivers the message and the task runs twice.",
    "replica_read": "The API reads the task from a hot standby (LAB_REPLICA_URL), whose replay "
    "lags the primary's commits.",
}

# A task's bounds, so that no task holds a worker thread for long (README: The lab); the
# lab's budget across tasks is in ``lifecycle.lab.limits``.
MAX_SLEEP = 30.0
MAX_FAIL_TIMES = 5
MAX_TASK_SLEEP = 60.0  # sleep over every attempt: sleep * (1 + fail_times)
MAX_INPUT = 1000


class ConfigError(ValueError):
    """The config is not a valid lab config; the text says why."""


def validate_config(config: Any) -> dict[str, Any]:
    """Return the config if its shape is valid, else raise ConfigError with the reason."""
    if not isinstance(config, dict):
        raise ConfigError("config must be a JSON object")
    known = {"input", "sleep", "fail_times", *FAULT_SWITCHES}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    if "input" in config and not isinstance(config["input"], list):
        raise ConfigError("input must be a list (of numbers, for the task to succeed)")
    if len(config.get("input", ())) > MAX_INPUT:
        raise ConfigError(f"input holds at most {MAX_INPUT} items, not {len(config['input'])}")
    if "sleep" in config:
        sleep = config["sleep"]
        if (
            isinstance(sleep, bool)
            or not isinstance(sleep, int | float)
            or not (0 <= sleep <= MAX_SLEEP)
        ):
            raise ConfigError(
                f"sleep must be a number of seconds from 0 to {MAX_SLEEP:g} (the lab's bound), "
                f"not {sleep!r}"
            )
    if "fail_times" in config:
        fail_times = config["fail_times"]
        if (
            isinstance(fail_times, bool)
            or not isinstance(fail_times, int)
            or not (0 <= fail_times <= MAX_FAIL_TIMES)
        ):
            raise ConfigError(f"fail_times must be an integer from 0 to {MAX_FAIL_TIMES}")
    for switch in FAULT_SWITCHES:
        if switch in config and not isinstance(config[switch], bool):
            raise ConfigError(f"{switch} must be true or false")
    if task_sleep(config) > MAX_TASK_SLEEP:
        raise ConfigError(
            f"sleep over every attempt, sleep * (1 + fail_times), is at most {MAX_TASK_SLEEP:g} s,"
            f" not {task_sleep(config):g} s"
        )
    return config


def task_sleep(config: dict[str, Any]) -> float:
    """Seconds a valid config's task sleeps over all its attempts."""
    return float(config.get("sleep") or 0) * (1 + int(config.get("fail_times") or 0))
