"""The swimlane picture as Chromium draws it: labels measured in real fonts, not estimated."""

from __future__ import annotations

import math

import pytest

from dashboard.swimlane import PILE_PX

pytestmark = pytest.mark.browser

# Each commit mark's centre, its label's box (or None) and every tick label's box, as drawn.
MEASURE = """svg => {
  const box = el => { const r = el.getBoundingClientRect();
                      return [r.left, r.top, r.right, r.bottom]; };
  const commits = [...svg.querySelectorAll('a.mark')].filter(a => a.querySelector('path'))
    .map(a => {
      const d = box(a.querySelector('path'));
      const label = a.querySelector('.commit-label');
      return {mark: [(d[0] + d[2]) / 2, (d[1] + d[3]) / 2],
              label: label ? label.textContent : null, box: label ? box(label) : null};
    });
  const ticks = [...svg.querySelectorAll('.tick-label, .zoom-note')].map(box);
  return {commits, ticks};
}"""


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# Marks this close (screen pixels) are one pile, or so near one that a label placed to
# miss its neighbours' cannot be told nearer one than the other: the swimlane piles marks
# closer than PILE_PX (4) picture units, and the picture is scaled (4 units were 4.55
# pixels in a run where two commits 4.55 px apart failed the test).
NEIGHBOURS = PILE_PX * 2


def same_pile(commits: list[dict], a: dict) -> list[dict]:
    """The marks ``a``'s label may stand between: each less than NEIGHBOURS from the
    next. Two commits a few milliseconds apart are one pile and one label."""
    marks = sorted(commits, key=lambda c: c["mark"][0])
    piles: list[list[dict]] = []
    for c in marks:
        if piles and c["mark"][0] - piles[-1][-1]["mark"][0] < NEIGHBOURS:
            piles[-1].append(c)
        else:
            piles.append([c])
    return next(p for p in piles if a in p)


def test_the_swimlane_labels_each_commit_by_its_own_mark_in_real_fonts(stack, page, overwritten):
    page.goto(f"{stack.base_url}/tasks/{overwritten['task']}")
    picture = page.get_by_test_id("swimlane")
    picture.wait_for()

    drawn = picture.evaluate(MEASURE)
    commits, ticks = drawn["commits"], drawn["ticks"]
    # The scenario commits PENDING, RUNNING, FAILED and COMPLETED: each is labelled
    assert len(commits) >= 3
    labelled = [c for c in commits if c["box"]]
    assert {"PENDING", "RUNNING", "FAILED", "COMPLETED"} <= {
        part for c in labelled for part in c["label"].split(" → ")
    }
    for i, a in enumerate(labelled):
        # No label overlaps another,
        assert not any(overlap(a["box"], b["box"]) for b in labelled[i + 1 :]), a
        # and each is nearer its own mark than any other commit's
        centre = ((a["box"][0] + a["box"][2]) / 2, (a["box"][1] + a["box"][3]) / 2)
        own = math.dist(centre, a["mark"])
        pile = same_pile(commits, a)
        for other in commits:
            if other not in pile:
                assert own < math.dist(centre, other["mark"]), (a, other)
    # The axis's labels do not overlap either
    for i, a in enumerate(ticks):
        assert not any(overlap(a, b) for b in ticks[i + 1 :]), ticks
