"""ASHA: a hand-worked run, replay from stored records, and settings validation."""

from __future__ import annotations

import numpy as np
import pytest

from app.tuning import (
    AshaScheduler,
    Decision,
    Direction,
    RungRecord,
    TrialView,
    make_scheduler,
)
from tests.tuning.helpers import running

C, S = Decision.CONTINUE, Decision.STOP
SETTINGS: dict[str, object] = {"min_resource": 1, "reduction_factor": 3, "max_resource": 9}

# Hand-worked example: 9 trials, eta = 3, min_resource 1, max_resource 9 epochs, loss
# (minimise). Rungs at min_resource * 3**k < 9: epoch 1 (rung 0) and epoch 3 (rung 1); epoch 9
# is where training ends, not a rung. "keep" = floor(n / 3) with n the records at the rung,
# this trial's included; fewer than 3 records: continue only if best so far (optuna's rule).
#
# Rung 0 (epoch 1), in arrival order:
#   t0 0.50  n=1 <3, best so far            -> CONTINUE
#   t1 0.70  n=2 <3, 0.50 is better         -> STOP
#   t2 0.40  n=3 keep 1: {0.40}             -> CONTINUE
#   t3 0.90  n=4 keep 1: {0.40}             -> STOP
#   t4 0.30  n=5 keep 1: {0.30}             -> CONTINUE
#   t5 0.80  n=6 keep 2: {0.30, 0.40}       -> STOP
#   t6 0.60  n=7 keep 2: {0.30, 0.40}       -> STOP
#   t7 0.20  n=8 keep 2: {0.20, 0.30}       -> CONTINUE
#   t8 0.95  n=9 keep 3: {0.20, 0.30, 0.40} -> STOP
# Epoch 2 is no rung: t0, t2, t4, t7 CONTINUE.
# Rung 1 (epoch 3):
#   t0 0.45  n=1 <3, best so far            -> CONTINUE
#   t2 0.25  n=2 <3, best so far            -> CONTINUE
#   t4 0.28  n=3 keep 1: {0.25}             -> STOP
#   t7 0.10  n=4 keep 1: {0.10}             -> CONTINUE
# Epochs 4..9 are no rungs: t0, t2, t7 train to the end (t0 thanks to arriving early: ASHA's
# asynchronous trade-off).
EVENTS: list[tuple[int, int, float, Decision]] = [
    (0, 1, 0.50, C),
    (1, 1, 0.70, S),
    (2, 1, 0.40, C),
    (3, 1, 0.90, S),
    (4, 1, 0.30, C),
    (5, 1, 0.80, S),
    (6, 1, 0.60, S),
    (7, 1, 0.20, C),
    (8, 1, 0.95, S),
    (0, 2, 0.47, C),
    (2, 2, 0.33, C),
    (4, 2, 0.29, C),
    (7, 2, 0.15, C),
    (0, 3, 0.45, C),
    (2, 3, 0.25, C),
    (4, 3, 0.28, S),
    (7, 3, 0.10, C),
    (0, 9, 0.40, C),
    (2, 9, 0.20, C),
    (7, 9, 0.05, C),
]


def replay(
    scheduler: AshaScheduler,
    events: list[tuple[int, int, float, Decision]],
    records: list[RungRecord],
    sign: float = 1.0,
) -> list[Decision]:
    """Feed reports the way the server does: persist new records, pass all of them back."""
    curves: dict[int, dict[int, float]] = {}
    decisions = []
    for number, epoch, value, _ in events:
        trial: TrialView = running(number, curves.get(number))
        step = scheduler.on_report(trial, epoch, sign * value, [], list(records))
        records.extend(step.new_records)
        curves.setdefault(number, {})[epoch] = sign * value
        decisions.append(step.decision)
    return decisions


def test_rungs() -> None:
    asha = AshaScheduler(1, 3, 9)
    assert asha.rung_resources() == (1, 3)
    assert AshaScheduler(2, 2, 20).rung_resources() == (2, 4, 8, 16)
    assert [asha.rung_of(r) for r in (1, 2, 3, 9)] == [0, None, 1, None]


def test_hand_worked_example() -> None:
    records: list[RungRecord] = []
    assert replay(AshaScheduler(1, 3, 9), EVENTS, records) == [e[3] for e in EVENTS]
    # One record per rung report, nothing at non-rung epochs.
    assert [(r.trial_number, r.rung) for r in records] == (
        [(n, 0) for n in range(9)] + [(0, 1), (2, 1), (4, 1), (7, 1)]
    )
    assert records[4] == RungRecord(4, 0, 0.30)


def test_maximize_mirrors_minimize() -> None:
    asha = AshaScheduler(1, 3, 9, direction=Direction.MAXIMIZE)
    assert replay(asha, EVENTS, [], sign=-1.0) == [e[3] for e in EVENTS]


@pytest.mark.parametrize("restart_at", range(len(EVENTS) + 1))
def test_a_restart_continues_the_same_way(restart_at: int) -> None:
    # Before the restart: one scheduler object. After: a fresh one built from the stored
    # settings, knowing only the stored records.
    records: list[RungRecord] = []
    before = replay(AshaScheduler(1, 3, 9), EVENTS[:restart_at], records)
    stored = [RungRecord(r.trial_number, r.rung, r.value) for r in records]
    fresh = make_scheduler("asha", **SETTINGS)
    assert isinstance(fresh, AshaScheduler)
    after = replay(fresh, EVENTS[restart_at:], stored)
    assert before + after == [e[3] for e in EVENTS]


@pytest.mark.parametrize("index", [1, 3, 7, 15])
def test_a_repeated_report_gives_the_original_answer_and_no_record(index: int) -> None:
    records: list[RungRecord] = []
    asha = AshaScheduler(1, 3, 9)
    replay(asha, EVENTS, records)
    number, epoch, value, expected = EVENTS[index]
    step = asha.on_report(running(number), epoch, value, [], records)
    assert step.decision is expected
    assert step.new_records == ()


def test_ties_continue() -> None:
    asha = AshaScheduler(1, 2, 4)
    records = [RungRecord(0, 0, 0.5)]
    step = asha.on_report(running(1), 1, 0.5, [], records)
    assert step.decision is Decision.CONTINUE  # n = 2, keep 1: 0.5 ties the best


def test_nan_is_the_worst_value() -> None:
    asha = AshaScheduler(1, 2, 4)
    records = [RungRecord(0, 0, 0.5), RungRecord(1, 0, 0.7), RungRecord(2, 0, 0.9)]
    assert asha.on_report(running(3), 1, float("nan"), [], records).decision is Decision.STOP


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_resource": 0}, "min_resource"),
        ({"reduction_factor": 1}, "reduction_factor"),
        ({"min_resource": 4, "max_resource": 4}, "max_resource"),
        ({"min_resource": 1.5}, "min_resource"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        AshaScheduler(**kwargs)  # type: ignore[arg-type]
    assert "allowed" in str(info.value)


# -- pause mode (the ASHA paper's promotions) ------------------------------------------------

P = Decision.PAUSE
# Hand-worked example, pause mode: eta = 3, min_resource 1, max_resource 9 (rungs at epochs 1
# and 3), minimise. A trial continues iff it ranks within the best floor(n / 3) of its rung,
# n its rung's records with its own; else it waits there. After each report the server asks
# which waiting trials to promote: those now within their rung's floor(n / 3).
#
# Rung 0 (epoch 1):
#   t0 0.50  n=1 keep 0                               -> PAUSE
#   t1 0.70  n=2 keep 0                               -> PAUSE
#   t2 0.40  n=3 keep 1: {0.40}                       -> CONTINUE
#   t3 0.90  n=4 keep 1                               -> PAUSE
#   t4 0.30  n=5 keep 1: {0.30}                       -> CONTINUE
#   t5 0.80  n=6 keep 2: {0.30, 0.40}                 -> PAUSE
#   t6 0.45  n=7 keep 2                               -> PAUSE
#   t7 0.20  n=8 keep 2: {0.20, 0.30}                 -> CONTINUE
#   t8 0.35  n=9 keep 3: {0.20, 0.30, 0.35}           -> CONTINUE
#   t9 0.60, t10 0.55 (n=10, 11, keep 3)              -> PAUSE
#   t11 0.65 n=12 keep 4: {0.20 .. 0.40}              -> PAUSE
#   t12 0.85, t13 0.75 (n=13, 14, keep 4)             -> PAUSE
#   t14 0.95 n=15 keep 5: {0.20 .. 0.40, 0.45}        -> PAUSE, and t6 (0.45) is promoted
# Rung 1 (epoch 3), t6 resumed from its checkpoint:
#   t2 0.38  n=1 keep 0 -> PAUSE;  t4 0.25  n=2 keep 0 -> PAUSE
#   t7 0.15  n=3 keep 1: {0.15}                       -> CONTINUE
#   t8 0.33  n=4 keep 1                               -> PAUSE
#   t6 0.30  n=5 keep 1                               -> PAUSE
# Then no trial is promoted: rung 1 keeps 1 (t7, running), rung 0 keeps 5 (all sent on). At
# the end of the study (final) rung 1 keeps ceil(5 / 3) = 2: t4 (0.25) goes on to epoch 9.
PAUSE_EVENTS: list[tuple[int, int, float, Decision]] = [
    (0, 1, 0.50, P),
    (1, 1, 0.70, P),
    (2, 1, 0.40, C),
    (3, 1, 0.90, P),
    (4, 1, 0.30, C),
    (5, 1, 0.80, P),
    (6, 1, 0.45, P),
    (7, 1, 0.20, C),
    (8, 1, 0.35, C),
    (9, 1, 0.60, P),
    (10, 1, 0.55, P),
    (11, 1, 0.65, P),
    (12, 1, 0.85, P),
    (13, 1, 0.75, P),
    (14, 1, 0.95, P),
    (2, 3, 0.38, P),
    (4, 3, 0.25, P),
    (7, 3, 0.15, C),
    (8, 3, 0.33, P),
    (6, 3, 0.30, P),
]
# The promotions asked after each report above, with the trials waiting then.
PROMOTED_AFTER = {14: [6]}


def pause_run(
    asha: AshaScheduler,
    events: list[tuple[int, int, float, Decision]],
    records: list[RungRecord],
    waiting: set[int],
    offset: int = 0,
) -> tuple[list[Decision], dict[int, list[int]]]:
    """The server's loop: a report, its records stored, PAUSE parks, promotions un-park."""
    decisions, promoted = [], {}
    for i, (number, epoch, value, _) in enumerate(events, offset):
        step = asha.on_report(running(number), epoch, value, [], list(records))
        records.extend(step.new_records)
        decisions.append(step.decision)
        if step.decision is Decision.PAUSE:
            waiting.add(number)
        up = asha.promotions(records, waiting)
        waiting.difference_update(up)
        if up:
            promoted[i] = up
    return decisions, promoted


def test_pause_mode_hand_worked_example() -> None:
    records: list[RungRecord] = []
    waiting: set[int] = set()
    asha = AshaScheduler(1, 3, 9, mode="pause")
    decisions, promoted = pause_run(asha, PAUSE_EVENTS, records, waiting)
    assert decisions == [e[3] for e in PAUSE_EVENTS]
    assert promoted == PROMOTED_AFTER
    assert waiting == {0, 1, 3, 5, 9, 10, 11, 12, 13, 14, 2, 4, 8, 6}
    assert asha.promotions(records, waiting) == []
    assert asha.promotions(records, waiting, final=True) == [4]


@pytest.mark.parametrize("restart_at", range(0, len(PAUSE_EVENTS) + 1, 3))
def test_pause_mode_after_a_restart_continues_the_same_way(restart_at: int) -> None:
    # The server stores the records and which trials are paused; a fresh scheduler built
    # from the stored settings decides and promotes as the old one would have.
    records: list[RungRecord] = []
    waiting: set[int] = set()
    before = pause_run(
        AshaScheduler(1, 3, 9, mode="pause"), PAUSE_EVENTS[:restart_at], records, waiting
    )
    fresh = make_scheduler("asha", **SETTINGS, mode="pause")
    assert isinstance(fresh, AshaScheduler) and fresh.pauses
    after = pause_run(fresh, PAUSE_EVENTS[restart_at:], list(records), set(waiting), restart_at)
    assert before[0] + after[0] == [e[3] for e in PAUSE_EVENTS]
    assert {**before[1], **after[1]} == PROMOTED_AFTER


def test_promotions_take_the_highest_rung_first_then_the_best() -> None:
    asha = AshaScheduler(1, 3, 27, mode="pause")
    # Rung 0: 9 records, keep 3 = trials 0 (0.1), 6 (0.15), 1 (0.2). Rung 1: 3 records, keep 1
    # = trial 1 (0.1). Trial 0 waits at rung 1 (its highest), out of rung 1's cut.
    rung0 = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.15, 0.9, 0.95]
    records = [RungRecord(n, 0, v) for n, v in enumerate(rung0)]
    records += [RungRecord(0, 1, 0.5), RungRecord(1, 1, 0.1), RungRecord(2, 1, 0.2)]
    assert asha.promotions(records, {0, 1, 6, 7}) == [1, 6]
    assert asha.promotions(records, {7, 8}) == []
    assert asha.promotions(records, set()) == []


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("final", [False, True])
def test_promotions_match_ranking_each_waiting_trial_on_its_own(seed: int, final: bool) -> None:
    # The reference ranks every waiting trial against its rung separately, the rule as the
    # docstring states it; promotions() sorts each rung once. Values on a coarse grid: ties.
    rng = np.random.default_rng(seed)
    asha = AshaScheduler(1, 3, 27, mode="pause")
    records = [
        RungRecord(int(n), int(rung), float(rng.integers(0, 8)) / 8)
        for rung, size in enumerate((60, 20, 7))
        for n in rng.permutation(60)[:size]
    ]
    waiting = {int(n) for n in rng.permutation(60)[:40]}
    at = {n: max(r.rung for r in records if r.trial_number == n) for n in waiting}
    expected = []
    for rung in sorted(set(at.values()), reverse=True):
        rows = [r for r in records if r.rung == rung]
        cut = -(-len(rows) // 3) if final else len(rows) // 3
        keys = sorted(r.value for r in rows)
        ok = [
            (r.value, i, r.trial_number)
            for i, r in enumerate(rows)
            if at.get(r.trial_number) == rung and cut > 0 and r.value <= keys[cut - 1]
        ]
        expected += [n for *_, n in sorted(ok)]
    assert asha.promotions(records, waiting, final=final) == expected
    assert expected  # the draw leaves something to promote


def test_a_repeated_report_in_pause_mode_pauses_again_without_a_record() -> None:
    records: list[RungRecord] = []
    asha = AshaScheduler(1, 3, 9, mode="pause")
    pause_run(asha, PAUSE_EVENTS, records, set())
    step = asha.on_report(running(0), 1, 0.50, [], records)
    assert (step.decision, step.new_records) == (Decision.PAUSE, ())


def test_stop_mode_never_pauses_or_promotes() -> None:
    asha = AshaScheduler(1, 3, 9)
    assert not asha.pauses
    decisions = replay(asha, [(n, 1, v, C) for n, v in enumerate([0.5, 0.7, 0.4])], [])
    assert Decision.PAUSE not in decisions
    assert asha.promotions([RungRecord(0, 0, 0.1)] * 3, {0}, final=True) == []


# -- pause mode with eager_top ---------------------------------------------------------------

# The same reports with eager_top: rung 1 (epoch 3) is the top rung below max_resource 9, and
# it keeps max(1, floor(n / 3)). Rung 0 decides as above. Rung 1:
#   t2 0.38  n=1 keep 1: {0.38}                       -> CONTINUE (pause mode: PAUSE)
#   t4 0.25  n=2 keep 1: {0.25}                       -> CONTINUE (pause mode: PAUSE)
#   t7 0.15  n=3 keep 1: {0.15}                       -> CONTINUE
#   t8 0.33  n=4 keep 1 -> PAUSE;  t6 0.30  n=5 keep 1 -> PAUSE
# No promotion follows; at the end (final) rung 1 keeps ceil(5 / 3) = 2, t7 and t4, neither
# waiting, so nothing more trains.
EAGER_EVENTS = [*PAUSE_EVENTS[:15], (2, 3, 0.38, C), (4, 3, 0.25, C), *PAUSE_EVENTS[17:]]


def test_eager_top_hand_worked_example() -> None:
    records: list[RungRecord] = []
    waiting: set[int] = set()
    asha = AshaScheduler(1, 3, 9, mode="pause", eager_top=True)
    decisions, promoted = pause_run(asha, EAGER_EVENTS, records, waiting)
    assert decisions == [e[3] for e in EAGER_EVENTS]
    assert promoted == PROMOTED_AFTER
    assert waiting == {0, 1, 3, 5, 9, 10, 11, 12, 13, 14, 8, 6}
    assert asha.promotions(records, waiting, final=True) == []


def test_eager_top_leaves_the_lower_rungs_as_in_pause_mode() -> None:
    # Rungs at epochs 1, 3 and 9 (max 27): the first arrival at rung 0 or rung 1 still waits,
    # the first arrival at rung 2 goes on.
    asha = AshaScheduler(1, 3, 27, mode="pause", eager_top=True)
    for epoch in (1, 3):
        assert asha.on_report(running(0), epoch, 0.5, [], []).decision is P
    assert asha.on_report(running(0), 9, 0.5, [], []).decision is C


@pytest.mark.parametrize("restart_at", range(0, len(EAGER_EVENTS) + 1, 4))
def test_eager_top_after_a_restart_continues_the_same_way(restart_at: int) -> None:
    records: list[RungRecord] = []
    waiting: set[int] = set()
    asha = AshaScheduler(1, 3, 9, mode="pause", eager_top=True)
    before = pause_run(asha, EAGER_EVENTS[:restart_at], records, waiting)
    fresh = make_scheduler("asha", **SETTINGS, mode="pause", eager_top=True)
    assert isinstance(fresh, AshaScheduler) and fresh.eager_top
    after = pause_run(fresh, EAGER_EVENTS[restart_at:], list(records), set(waiting), restart_at)
    assert before[0] + after[0] == [e[3] for e in EAGER_EVENTS]
    assert {**before[1], **after[1]} == PROMOTED_AFTER


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eager_top": True}, "eager_top: got true with mode 'stop', allowed: true only with"),
        ({"mode": "pause", "eager_top": "yes"}, "eager_top: got 'yes', allowed: true or false"),
    ],
)
def test_eager_top_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AshaScheduler(**kwargs)  # type: ignore[arg-type]


def test_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="mode: got 'later', allowed: one of 'stop', 'pause'"):
        AshaScheduler(mode="later")


def test_a_pause_says_which_cut_it_missed() -> None:
    asha = AshaScheduler(1, 3, 9, Direction.MAXIMIZE, mode="pause")
    records: list[RungRecord] = []
    whys = []
    for number, value in ((0, 0.5), (1, 0.9), (2, 0.7)):
        step = asha.on_report(running(number), 1, value, [], records)
        records.extend(step.new_records)
        whys.append((step.decision, step.why))
    # The first arrival waits (floor(1 / 3) = 0 go on, no cut yet); the second is the best of
    # 2, still none go on; the third, 0.7, misses the cut of 3 records: the best, 0.9.
    assert whys == [
        (Decision.PAUSE, {"rung": 0, "keep": 0, "of": 1}),
        (Decision.PAUSE, {"rung": 0, "keep": 0, "of": 2}),
        (Decision.PAUSE, {"rung": 0, "keep": 1, "of": 3, "cut": 0.9}),
    ]
