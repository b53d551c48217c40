"""The predictor with a fake clock: every time is an argument, so each habit is taught in microseconds."""

from __future__ import annotations

import json
import random
from pathlib import Path

from vlmswap.swap.predictor import Predictor, trace_hour

MODELS = ("a", "b", "c", "d", "e")


def teach(p: Predictor, sequence: list[tuple[float, str]]) -> float:
    for t, m in sequence:
        p.observe(m, t)
    return sequence[-1][0]


def cycle(
    order: str, rounds: int, step_s: float = 10.0, gap_s: float = 60.0, t0: float = 0.0
) -> list[tuple[float, str]]:
    """`order` repeated: each model `step_s` after the one before, `gap_s` between rounds."""
    out, t = [], t0
    for _ in range(rounds):
        for m in order:
            out.append((t, m))
            t += step_s
        t += gap_s
    return out


def test_with_no_history_every_model_is_a_coin_flip():
    p = Predictor(MODELS, horizon_s=30)
    assert {round(p.chance(m, 100.0), 6) for m in MODELS} == {0.5}
    assert "no history yet" in p.explain("a", 100.0).why


def test_the_next_model_of_a_fixed_cycle_ranks_first():
    p = Predictor(MODELS, horizon_s=30, hour_of=lambda _t: 0)
    t = teach(p, cycle("abcd", 40))
    p.observe("a", t + 70)  # a new round begins: b comes 10 s later, d only after c
    ranked = [x.model for x in p.ranked(t + 70, ["b", "c", "d", "e"])]
    assert ranked[0] == "b" and ranked[-1] == "e", ranked
    assert p.chance("b", t + 70) > 0.6 > 0.2 > p.chance("e", t + 70)


def test_a_stray_asked_once_amid_a_group_ranks_below_the_group():
    rng = random.Random(7)
    p = Predictor(MODELS, horizon_s=60, hour_of=lambda _t: 0)
    t, seq = 0.0, []
    for _ in range(600):  # a group of three in use, and now and then one request for a model outside it
        model = rng.choice("abc") if rng.random() > 0.08 else rng.choice("de")
        seq.append((t, model))
        t += 20.0
    teach(p, seq)
    p.observe("d", t)  # a stray right now...
    p.observe("a", t + 15)  # ...and back to the group
    now = t + 20
    assert p.chance("d", now) < min(p.chance(m, now) for m in "bc")


def test_old_habits_fade_with_the_half_life():
    p = Predictor(MODELS, horizon_s=30, half_life_s=3600, hour_of=lambda _t: 0)
    t = teach(p, cycle("ab", 200))  # a is always followed by b
    t = teach(p, cycle("ac", 200, t0=t + 100))  # then, for many half-lives, by c
    p.observe("a", t + 70)
    assert p.chance("c", t + 70) > p.chance("b", t + 70)


def test_the_hour_of_day_is_learned_over_days():
    """Model a in the mornings, b in the afternoons, for a week: at 9:00 a is likelier than b."""
    p = Predictor(MODELS, horizon_s=300, hour_of=trace_hour)
    for day in range(7):
        for hour, model in ((9, "a"), (15, "b")):
            t0 = day * 86400 + hour * 3600
            for i in range(60):
                p.observe(model, t0 + i * 60)
    morning = 7 * 86400 + 9 * 3600
    p.observe("c", morning - 3600)  # something else last: the transition table says nothing of a or b
    assert p.chance("a", morning) > p.chance("b", morning)
    assert "at 09h" in p.explain("a", morning).why


def test_what_it_learned_survives_a_restart(tmp_path: Path):
    p = Predictor(MODELS, horizon_s=30, hour_of=lambda _t: 0)
    t = teach(p, cycle("abcd", 30))
    path = tmp_path / "predictor.json"
    p.save(path)
    q = Predictor(MODELS, horizon_s=30, hour_of=lambda _t: 0)
    assert q.load(path)
    assert [round(q.chance(m, t + 5), 9) for m in MODELS] == [round(p.chance(m, t + 5), 9) for m in MODELS]
    assert q.coef == p.coef and q.observed == p.observed


def test_a_file_learned_with_another_horizon_or_broken_is_ignored(tmp_path: Path):
    p = Predictor(MODELS, horizon_s=30)
    teach(p, cycle("ab", 30))
    path = tmp_path / "predictor.json"
    p.save(path)
    other = Predictor(MODELS, horizon_s=120)
    assert not other.load(path) and other.observed == 0
    d = json.loads(path.read_text())
    d["recent"] = {"a": "not cells"}
    path.write_text(json.dumps(d))
    fresh = Predictor(MODELS, horizon_s=30)
    assert not fresh.load(path)
    assert fresh.observed == 0 and not fresh.base  # nothing half-loaded
    assert not fresh.load(tmp_path / "missing.json")


def test_open_observations_are_bounded():
    p = Predictor(MODELS, horizon_s=30, max_open=8)
    for i in range(1000):
        p.observe(MODELS[i % len(MODELS)], float(i))
    assert len(p._open) <= 8
