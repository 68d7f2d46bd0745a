"""The lab's config rules and the work it does: pure logic."""

import pytest

from lifecycle.lab.config import FAULT_SWITCHES, ConfigError, validate_config
from lifecycle.lab.work import LabError, TransientError, do_work
from lifecycle.scenarios.catalogue import LAB_FILE, UnknownScenario, get_scenario, load

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ({"colour": "red"}, "unknown config key(s): colour"),
        ({"input": "1,2"}, "input must be a list"),
        ({"sleep": -1}, "sleep must be a number"),
        ({"sleep": 61}, "sleep must be a number"),
        ({"sleep": True}, "sleep must be a number"),
        ({"fail_times": 1.5}, "fail_times must be an integer"),
        ({"fail_times": 9}, "fail_times must be an integer"),
        ({"cached_read": "yes"}, "cached_read must be true or false"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(config, reason):
    with pytest.raises(ConfigError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        validate_config(config)


def test_a_valid_config_is_returned_unchanged():
    config = {"input": [1, 2], "sleep": 0.5, "fail_times": 2, "redelivery": True}
    assert validate_config(config) == config


def test_the_work_sums_its_input():
    assert do_work({"input": [1, 2, 3.5]}, attempt=1) == {"sum": 6.5, "count": 3}


def test_the_work_fails_on_a_non_number_and_names_it():
    with pytest.raises(LabError, match=r"input\[1\] is 'two', not a number"):
        do_work({"input": [1, "two"]}, attempt=1)


def test_fail_times_fails_the_first_attempts_only():
    config = {"input": [1], "fail_times": 2}
    for attempt in (1, 2):
        with pytest.raises(TransientError):
            do_work(config, attempt)
    assert do_work(config, 3) == {"sum": 1, "count": 1}


def test_the_lab_file_has_the_clean_scenarios_and_one_per_fault_switch():
    catalogue = load([LAB_FILE]).scenarios
    clean = {name for name, s in catalogue.items() if s.clean}
    assert {"succeeds", "fails", "slow", "retry-then-succeeds"} <= clean
    for switch in FAULT_SWITCHES:
        scenario = catalogue[switch.replace("_", "-")]
        assert scenario.bug == switch
        assert scenario.body["config"][switch] is True
        assert scenario.findings
    for scenario in catalogue.values():
        validate_config(scenario.body["config"])  # the lab API accepts every body
        assert scenario.submit_url == "/lab/api/tasks"


def test_an_unknown_scenario_lists_the_known_ones():
    with pytest.raises(UnknownScenario) as info:
        get_scenario("nope")
    assert "unknown scenario 'nope'" in str(info.value)
    assert "succeeds" in str(info.value)
