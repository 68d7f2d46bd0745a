"""LIFECYCLE_LAB=off: no lab at all, in a process of its own (settings are read at start)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SCRIPT = """
import django
django.setup()
from django.apps import apps
from django.urls import Resolver404, resolve
from lifecycle.scenarios.catalogue import all_scenarios
from lifecycle.cli.up import handle
assert not apps.is_installed("lifecycle.lab"), "the lab app is installed"
try:
    resolve("/lab/api/tasks")
except Resolver404:
    pass
else:
    raise AssertionError("/lab/ still resolves")
assert all_scenarios() == [], [s.name for s in all_scenarios()]
print("no lab")
"""


def test_lab_off_removes_the_app_its_urls_and_its_scenarios() -> None:
    env = {**os.environ, "LIFECYCLE_LAB": "off", "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    env.pop("LIFECYCLE_SCENARIOS", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no lab"
