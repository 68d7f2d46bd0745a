"""A task key in a URL path: every key has one path and back, and no path a key gets holds
a segment a browser would remove (``.``, ``..``), so no link to a task leaves its page."""

from __future__ import annotations

import pytest

from dashboard.converters import from_path, to_path

pytestmark = pytest.mark.unit

KEYS = [
    "job-1",
    "tenant/42/job 7",
    ".",
    "..",
    "../../admin/auth/user/",
    "a/./b/../c",
    "/..",
    "../",
    "a//..//b",
    "~..",
    "~~.",
    "~/..~/~",
    "...",
    "..a/a..",
    ".hidden/x.",
]


@pytest.mark.parametrize("key", KEYS)
def test_a_key_has_one_path_and_back_with_no_dot_segment(key: str) -> None:
    path = to_path(key)
    assert from_path(path) == key
    assert not {".", ".."} & set(path.split("/"))


def test_keys_without_dot_segments_keep_their_path() -> None:
    for key in ("job-1", "tenant/42/job 7", "~", "a~b/~c", "...", ".hidden/x."):
        assert to_path(key) == key


@pytest.mark.parametrize("key", KEYS)
def test_the_pytest_plugins_link_to_a_task_is_the_dashboards(key: str) -> None:
    # The plugin (no Django) writes the task page's link itself when the inspector could
    # not answer: a raw ".." in it would open another page in the browser.
    from urllib.parse import quote

    from lifecycle.client.pytest_plugin import task_path

    assert task_path(key) == quote(to_path(key))
