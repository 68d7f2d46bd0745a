"""Scenario files: the lab's loads like any other, a good foreign file gives its scenarios
and lifecycle, and every kind of bad file is refused with its file, line and reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lifecycle import statuses
from lifecycle.scenarios.catalogue import (
    LAB_FILE,
    MAX_BODY,
    BodyError,
    ScenarioFileError,
    activate,
    active,
    dig,
    load,
    parse_body,
    paths_of,
)
from lifecycle.statuses import LAB, Lifecycle

pytestmark = pytest.mark.unit

JOBS = """\
title = "Jobs service"
base_url = "http://127.0.0.1:8001"

[lifecycles."public.jobs"]
statuses = ["queued", "working", "done", "errored"]
running = "working"
success = ["done"]
failure = ["errored"]
transitions = ["queued -> working", "working -> done", "working -> errored"]

[defaults]
table = "public.jobs"
submit = { url = "/jobs", key = "job.id", headers = { Authorization = "Bearer s3cret" } }
poll = { url = "/jobs/{key}", status = "job.state" }

[[scenarios]]
name = "ok"
description = "A job that works."
expect = "done"
submit.body = { mode = "ok" }

[[scenarios]]
name = "swallowed"
expect = "errored"
bug = "swallowed_error"
findings = ["swallowed_error", "expectation_mismatch:committed"]
timeout = 30
submit.body = { mode = "swallowed_error" }
"""


def write(tmp_path: Path, text: str, name: str = "scenarios.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_lab_file_loads_with_every_lab_scenario() -> None:
    catalogue = load([LAB_FILE])
    assert len(catalogue.scenarios) == 13
    swallowed = catalogue.scenarios["swallowed-error"]
    assert [str(f) for f in swallowed.findings] == [
        "swallowed_error",
        "expectation_mismatch:committed",
    ]
    assert swallowed.lifecycle is LAB  # the lab's table declares none: the default
    assert swallowed.submit_to("http://h:8000") == "http://h:8000/lab/api/tasks"
    assert catalogue.scenarios["redelivery"].alone
    assert catalogue.lifecycles == {}
    cached = catalogue.scenarios["cached-response"]
    assert cached.poll_at("http://h:8000", "k") == "http://h:8000/lab/api/cached/tasks/k"
    assert cached.unavailable is None


def test_replica_read_is_unavailable_without_a_standby_and_says_what_provides_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.conf import settings

    replica = load([LAB_FILE]).scenarios["replica-read"]
    assert [str(f) for f in replica.findings] == ["stale_read:replica"]
    monkeypatch.setattr(settings, "LAB_REPLICA_URL", "", raising=False)
    monkeypatch.delenv("LAB_REPLICA_URL", raising=False)
    assert replica.unavailable == (
        "needs LAB_REPLICA_URL, which is not set: python manage.py lifecycle standby start"
    )
    assert replica.as_json()["unavailable"] == replica.unavailable
    monkeypatch.setattr(settings, "LAB_REPLICA_URL", "postgresql://127.0.0.1:5433/x")
    assert replica.unavailable is None


def test_requires_must_name_a_setting(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[scenarios]]
        name = "x"
        expect = "COMPLETED"
        requires = { setting = "lower case" }
        submit = { url = "http://h/t", key = "id" }
        poll = { url = "http://h/t/{key}", status = "status" }
        """,
    )
    with pytest.raises(ScenarioFileError, match="requires must be a table"):
        load([path])


def test_a_foreign_file_gives_its_scenarios_their_lifecycle_and_urls(tmp_path: Path) -> None:
    catalogue = load([LAB_FILE, write(tmp_path, JOBS)])
    ok, swallowed = catalogue.scenarios["ok"], catalogue.scenarios["swallowed"]
    jobs = catalogue.lifecycles["public.jobs"]
    assert ok.lifecycle is jobs and jobs.terminal == {"done", "errored"}
    assert jobs.failed == {"errored"} and jobs.running == "working"
    assert ok.group == "Jobs service" and ok.body == {"mode": "ok"}
    assert ok.headers == (("Authorization", "Bearer s3cret"),)
    # The file's base URL, not the dashboard's; the key is quoted into one path segment.
    assert ok.submit_to("http://dashboard:8000") == "http://127.0.0.1:8001/jobs"
    assert ok.poll_at("http://x", "a/b c#d") == "http://127.0.0.1:8001/jobs/a%2Fb%20c%23d"
    assert swallowed.timeout == 30 and swallowed.settle == 1.0
    # Header values may be credentials: the JSON shows their names only.
    assert ok.as_json()["submit"]["headers"] == ["Authorization"]
    assert "s3cret" not in str(ok.as_json())


def test_the_toml_form_of_the_default_lifecycle_is_the_default_lifecycle() -> None:
    assert Lifecycle.parse(LAB.as_toml()) == LAB


BAD = [
    # (what, file text, line, words of the reason)
    ("syntax", 'title = "x"\n[[scenarios]\nname = "a"\n', 2, "is not valid TOML"),
    ("top-level typo", 'titel = "x"\n', 1, "unknown key 'titel'"),
    (
        "missing expect",
        '[[scenarios]]\nname = "a"\nsubmit = { url = "/t", key = "id" }\n'
        'poll = { url = "/t/{key}", status = "s" }\n',
        1,
        "expect must be a terminal status",
    ),
    (
        "expect not terminal",
        '[[scenarios]]\nname = "a"\n\nexpect = "RUNNING"\n',
        4,
        "not 'RUNNING'",
    ),
    (
        "bug without findings",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\nbug = "x"\n'
        'submit = { url = "/t", key = "id" }\npoll = { url = "/t/{key}", status = "s" }\n',
        1,
        "must name the findings",
    ),
    (
        "unknown finding",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\nbug = "x"\nfindings = ["stale"]\n',
        5,
        "'stale' is not a finding",
    ),
    (
        "unknown cause",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\nbug = "x"\n'
        'findings = ["stale_read:cache"]\n',
        5,
        "stale_read has no cause 'cache'; its causes: cached_object, old_snapshot",
    ),
    (
        "clean with findings",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\nfindings = ["stuck"]\n',
        4,
        "a clean scenario must produce no finding",
    ),
    (
        "poll without key",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\nsubmit = { url = "/t", key = "id" }\n'
        'poll = { url = "/t/1", status = "s" }\n',
        5,
        "poll.url must hold {key}",
    ),
    (
        "key prefix not text",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\n[scenarios.submit]\nurl = "/t"\n'
        'key = "id"\nkey_prefix = 5\n',
        7,
        "submit.key_prefix must be a string of at most 100 characters",
    ),
    (
        "key prefix with NUL",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\n[scenarios.submit]\nurl = "/t"\n'
        'key = "id"\nkey_prefix = "a\\u0000"\n',
        7,
        "submit.key_prefix must be a string of at most 100 characters, without NUL",
    ),
    (
        "bad method",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\n[scenarios.submit]\nurl = "/t"\n'
        'key = "id"\nmethod = "FETCH"\n',
        7,
        "submit.method must be one of",
    ),
    (
        "relative url",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\nsubmit = { url = "t", key = "id" }\n',
        4,
        "must be absolute",
    ),
    (
        "timeout",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\ntimeout = -1\n',
        4,
        "timeout must be from 0.1 to 3600",
    ),
    (
        "scenario typo",
        '[[scenarios]]\nname = "a"\nexpects = "FAILED"\n',
        3,
        "unknown key 'expects'",
    ),
    (
        "bad name",
        '[[scenarios]]\nname = "A B"\n',
        2,
        "name must be 1 to 64 characters",
    ),
    (
        "a date body",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\nsubmit = { url = "/t", key = "id", '
        "body = { when = 2024-01-01 } }\n",
        4,
        "cannot be sent as JSON",
    ),
    (
        "header with a line break",
        '[[scenarios]]\nname = "a"\nexpect = "FAILED"\n[scenarios.submit]\nurl = "/t"\n'
        'key = "id"\nheaders = { X = "a\\nb" }\n',
        7,
        "header 'X' needs",
    ),
    (
        "transition to nowhere",
        '[lifecycles.jobs]\nstatuses = ["q", "d"]\nsuccess = ["d"]\ntransitions = ["q -> x"]\n',
        4,
        "the lifecycle of jobs: 'q -> x' names 'x', which is not in statuses",
    ),
    (
        "success outside statuses",
        '[lifecycles."public.jobs"]\nstatuses = ["q", "d"]\nsuccess = ["done"]\ntransitions = []\n',
        3,
        "success names 'done', which is not in statuses",
    ),
    (
        "expect of another lifecycle",
        '[lifecycles.jobs]\nstatuses = ["q", "d"]\nsuccess = ["d"]\ntransitions = ["q -> d"]\n'
        '[[scenarios]]\nname = "a"\ntable = "jobs"\nexpect = "COMPLETED"\n',
        8,
        "expect must be a terminal status of public.jobs lifecycle (d)",
    ),
]


@pytest.mark.parametrize(("what", "text", "line", "reason"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_is_refused_with_its_file_line_and_reason(
    tmp_path: Path, what: str, text: str, line: int, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioFileError) as info:
        load([path])
    assert info.value.path == str(path)
    assert info.value.line == line, str(info.value)
    assert reason in info.value.reason, str(info.value)
    assert str(info.value).startswith(f"scenario file {path}, line {line}: ")


def test_a_default_at_fault_is_found_in_the_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[defaults]\ntimeout = 0\n\n[[scenarios]]\nname = "a"\nexpect = "FAILED"\n',
    )
    with pytest.raises(ScenarioFileError) as info:
        load([path])
    assert info.value.line == 2 and "scenario a: timeout" in info.value.reason


def test_a_name_declared_in_two_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, JOBS, "a.toml")
    second = write(
        tmp_path, JOBS.replace('[lifecycles."public.jobs"]', "[lifecycles.other]"), "b.toml"
    )
    with pytest.raises(ScenarioFileError) as info:
        load([first, second])
    assert info.value.path == str(second)
    assert "scenario 'ok' is declared twice (also in " + str(first) in info.value.reason
    assert info.value.line == JOBS.splitlines().index('name = "ok"') + 1


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioFileError, match="cannot be read: No such file"):
        load([tmp_path / "nope.toml"])


def test_a_bad_file_changes_nothing_that_was_active(tmp_path: Path) -> None:
    good = activate(f"{LAB_FILE}:{write(tmp_path, JOBS, 'jobs.toml')}")
    assert statuses.for_table("public.jobs") is good.lifecycles["public.jobs"]
    try:
        with pytest.raises(ScenarioFileError):
            activate(f"{LAB_FILE}:{write(tmp_path, 'nonsense = 1', 'bad.toml')}")
        assert active() is good
        assert statuses.for_table("jobs") is good.lifecycles["public.jobs"]
    finally:
        activate(str(LAB_FILE))
    assert statuses.for_table("public.jobs") is LAB


def test_the_setting_lists_files_like_path() -> None:
    assert paths_of("/a.toml:  :/b.toml:") == [Path("/a.toml"), Path("/b.toml")]


def test_dig_follows_dotted_paths_and_list_indexes() -> None:
    data = {"job": {"id": 7, "steps": [{"state": "done"}]}}
    assert dig(data, "job.id") == 7
    assert dig(data, "job.steps.0.state") == "done"
    for missing in ("job.name", "job.steps.3", "job.id.x"):
        with pytest.raises(KeyError):
            dig(data, missing)


def test_an_edited_body_must_be_json_and_bounded() -> None:
    assert parse_body('{"mode": "ok"}') == {"mode": "ok"}
    assert parse_body("[1, 2]") == [1, 2]
    with pytest.raises(BodyError, match="not JSON: Expecting .* at line 1, column 10"):
        parse_body('{"mode": }')
    with pytest.raises(BodyError, match="NaN|JSON"):
        parse_body('{"x": NaN}')
    with pytest.raises(BodyError, match="more than"):
        parse_body('"' + "x" * MAX_BODY + '"')


def test_urls_and_header_values_take_variables_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_API_URL", "http://jobs.internal:9000")
    monkeypatch.setenv("JOBS_TOKEN", "t0ken")
    text = JOBS.replace('base_url = "http://127.0.0.1:8001"', 'base_url = "${JOBS_API_URL}"')
    text = text.replace("Bearer s3cret", "Bearer ${JOBS_TOKEN}")
    ok = load([write(tmp_path, text)]).scenarios["ok"]
    assert ok.submit_to("http://dashboard") == "http://jobs.internal:9000/jobs"
    assert ok.headers == (("Authorization", "Bearer t0ken"),)

    monkeypatch.delenv("JOBS_TOKEN")
    with pytest.raises(ScenarioFileError) as info:
        load([write(tmp_path, text)])
    assert "submit.headers uses ${JOBS_TOKEN}, which is not set" in info.value.reason
    assert (
        info.value.line
        == text.splitlines().index(next(line for line in text.splitlines() if "JOBS_TOKEN" in line))
        + 1
    )
