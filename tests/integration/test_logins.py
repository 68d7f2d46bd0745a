"""Login throttling and password validators: a name or an address that fails too often is
locked for a while, even against the right password, until the lock ends or is lifted; a
weak password is refused where accounts are made."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import F
from django.test import Client

from lifecycle.models import LoginFailure, LoginLockout
from lifecycle.people import accounts

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def account(role: str = "viewer") -> tuple[str, str]:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    return name, accounts.add(name, role)


def log_in(name: str, password: str, address: str = "127.0.0.1", path: str = "/login") -> Any:
    """One login through the form, as a fresh browser from ``address``."""
    return Client().post(path, {"username": name, "password": password}, REMOTE_ADDR=address)


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def fail(name: str, times: int, address: str = "127.0.0.1") -> None:
    for _ in range(times):
        page = log_in(name, "wrong password", address)
        assert page.status_code == 200 and b"do not match an active account" in page.content


def lifecycle(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("lifecycle", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_five_wrong_passwords_lock_the_name_against_the_right_one(postgres, caplog):
    name, password = account("maintainer")
    fail(name, 5)

    page = log_in(name, password)
    assert page.status_code == 429
    assert 890 <= int(page["Retry-After"]) <= 900
    text = page.content.decode()
    assert 'data-testid="login-locked"' in text
    assert "Too many failed logins for this name" in text and "UTC (in 15 minutes)" in text
    assert "even with the right password" in text
    assert not logged_in(page)
    assert any("login refused" in r.getMessage() and name in r.getMessage() for r in caplog.records)
    lock = LoginLockout.objects.get(scope="username", key=name)
    assert lock.failures == 5
    # The minute it names is not before the lock's end
    end = lock.until.replace(second=0, microsecond=0) + timedelta(minutes=1)
    assert f"{end:%H:%M} UTC (in 15 minutes)" in text

    # The admin's own login is the same door, locked the same way
    admin = log_in(name, password, path="/admin/login/")
    assert not logged_in(admin)
    assert b"Too many failed logins for this name" in admin.content
    # Another way in that calls authenticate() is refused too
    assert not Client().login(username=name, password=password)


def test_other_names_are_unaffected(postgres):
    locked, locked_password = account()
    other, other_password = account()
    fail(locked, 5)
    assert log_in(locked, locked_password).status_code == 429

    assert logged_in(log_in(other, other_password))  # same address, another name
    fail(other, 4)
    assert logged_in(log_in(other, other_password))


def test_an_address_is_locked_after_twenty_failures(postgres):
    name, password = account()
    for i in range(19):  # many names, each below its own limit
        fail(f"guess-{i % 5}-{uuid.uuid4().hex[:4]}", 1, address="10.0.0.7")
    # 19: still open, and a right password does not wipe the address's count
    assert logged_in(log_in(name, password, address="10.0.0.7"))
    fail("one-more", 1, address="10.0.0.7")

    page = log_in(name, password, address="10.0.0.7")
    assert page.status_code == 429 and int(page["Retry-After"]) > 0
    assert b"Too many failed logins for your address" in page.content
    assert LoginLockout.objects.get(scope="address").key == "10.0.0.7"
    # The same account from elsewhere is not locked: only that address is
    assert logged_in(log_in(name, password, address="10.0.0.8"))


def test_failures_older_than_the_window_do_not_count_and_a_lock_ends(postgres, settings):
    name, password = account()
    fail(name, 4)
    LoginFailure.objects.update(at=F("at") - timedelta(seconds=901))
    fail(name, 1)  # the fifth, but the first four are past the 900 s window
    assert logged_in(log_in(name, password))
    assert LoginFailure.objects.filter(at__lt=F("at")).count() == 0
    fail(name, 4)
    # Older rows are deleted as new failures come: the table keeps only the window
    LoginFailure.objects.update(at=F("at") - timedelta(seconds=901))
    fail("someone-else", 1)
    assert list(LoginFailure.objects.values_list("username", flat=True)) == ["someone-else"]

    # A lock lasts LIFECYCLE_LOGIN_LOCKOUT, then the right password works again
    fail(name, 5)
    assert log_in(name, password).status_code == 429
    LoginLockout.objects.update(until=F("until") - timedelta(seconds=901))
    assert logged_in(log_in(name, password))

    # The limits are settings
    settings.LIFECYCLE_LOGIN_FAILURES = 2
    settings.LIFECYCLE_LOGIN_LOCKOUT = 60
    fail(name, 2)
    page = log_in(name, password)
    assert page.status_code == 429 and int(page["Retry-After"]) <= 60
    assert b"(in 1 minute)" in page.content


def test_a_right_password_clears_the_names_failures(postgres):
    name, password = account()
    fail(name, 4)
    assert LoginFailure.objects.filter(username=name).count() == 4
    assert logged_in(log_in(name, password))
    assert not LoginFailure.objects.filter(username=name).exists()
    fail(name, 4)  # 8 in the window, but only 4 since the success
    assert logged_in(log_in(name, password))


def test_login_lift_unlocks_a_name_or_an_address(postgres):
    name, password = account()
    fail(name, 5)
    for i in range(20):
        fail(f"guess-{i}", 1, address="10.0.0.9")
    code, out, _ = lifecycle("login", "list")
    assert code == 0
    assert f"username\t{name}\tuntil " in out and "\t5 failures" in out
    assert "address\t10.0.0.9\tuntil " in out and "\t20 failures" in out
    assert log_in(name, password).status_code == 429

    code, out, err = lifecycle("login", "lift", name)
    assert code == 0 and f"lifted username {name}" in out
    assert logged_in(log_in(name, password))
    # Its failures are forgotten too: one more wrong password does not lock it again
    fail(name, 1)
    assert logged_in(log_in(name, password))

    assert log_in(name, password, address="10.0.0.9").status_code == 429
    code, out, _ = lifecycle("login", "lift", "10.0.0.9")
    assert code == 0 and "lifted address 10.0.0.9" in out
    assert logged_in(log_in(name, password, address="10.0.0.9"))

    code, out, err = lifecycle("login", "list")
    assert code == 0 and out == "" and "no lockout in force" in err
    code, _, err = lifecycle("login", "lift", "nobody-at-all")
    assert code == 2 and "no lockout and no failed login for 'nobody-at-all'" in err


def test_a_maintainer_lifts_a_lockout_in_the_admin(postgres):
    name, password = account()
    fail(name, 5)
    maintainer = Client()
    maintainer_name, maintainer_password = account("maintainer")
    assert logged_in(
        maintainer.post(
            "/admin/login/", {"username": maintainer_name, "password": maintainer_password}
        )
    )
    assert b"Login lockouts" in maintainer.get("/admin/").content
    listing = maintainer.get("/admin/lifecycle/loginlockout/")
    assert listing.status_code == 200 and name.encode() in listing.content

    lock = LoginLockout.objects.get(key=name)
    done = maintainer.post(
        "/admin/lifecycle/loginlockout/",
        {"action": "lift", "_selected_action": [lock.pk]},
        follow=True,
    )
    assert b"1 lockout(s) lifted." in done.content
    assert not LoginLockout.objects.exists()
    assert logged_in(log_in(name, password))

    # A viewer may not
    viewer = Client()
    viewer.force_login(get_user_model().objects.get(username=account()[0]))
    assert viewer.get("/admin/lifecycle/loginlockout/").status_code == 302


@pytest.mark.parametrize(
    "variable, value, message",
    [
        (
            "LIFECYCLE_LOGIN_FAILURES",
            "five",
            "LIFECYCLE_LOGIN_FAILURES must be a whole number, not 'five'",
        ),
        (
            "LIFECYCLE_LOGIN_ADDRESS_FAILURES",
            "0",
            "LIFECYCLE_LOGIN_ADDRESS_FAILURES is 0: at least 1",
        ),
        (
            "LIFECYCLE_LOGIN_WINDOW",
            "15m",
            "LIFECYCLE_LOGIN_WINDOW must be a whole number, not '15m'",
        ),
        ("LIFECYCLE_LOGIN_LOCKOUT", "-1", "LIFECYCLE_LOGIN_LOCKOUT is -1: at least 1"),
    ],
)
def test_a_bad_setting_stops_start_up_saying_why(postgres, variable, value, message):
    env = {**os.environ, variable: value}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr


def test_a_good_setting_is_read(postgres):
    env = {**os.environ, "LIFECYCLE_LOGIN_LOCKOUT": " 60 "}
    code = "from django.conf import settings; print(settings.LIFECYCLE_LOGIN_LOCKOUT)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "60"


def test_a_weak_password_is_refused(postgres):
    name = f"weak-{uuid.uuid4().hex[:6]}"
    for weak in ("1", "password", "12345678901", name + "1"):
        with pytest.raises(accounts.AccountError, match="password refused"):
            accounts.add(name, "viewer", password=weak)
    assert not get_user_model().objects.filter(username=name).exists()
    assert accounts.add(name, "viewer", password="a long and unusual phrase") == (
        "a long and unusual phrase"
    )

    # The admin's password change applies the same validators
    admin_name = f"root-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_superuser(admin_name, password="old and long enough")
    c = Client()
    c.force_login(user)
    page = c.post(
        "/admin/password_change/",
        {"old_password": "old and long enough", "new_password1": "1", "new_password2": "1"},
    )
    assert page.status_code == 200 and b"This password is too short" in page.content
    user.refresh_from_db()
    assert user.check_password("old and long enough")
