"""Hypothesis properties: bounds, monotonicity, idempotence, late records, order-insensitivity in a run."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.records import ValidatorRecord
from stream_app.scoring import build_cluster_context, state_from_dict, state_to_dict, update
from stream_app.scoring import config as names
from stream_app.scoring.config import DEFAULT_CONFIG
from stream_app.scoring.rugs import rug_factor
from stream_app.scoring.state import ValidatorState
from tests.scoring.conftest import EPOCH, REFERENCE, SLOTS, credits_history, make_context, make_record

FAST = settings(max_examples=60, deadline=None)

earned_lists = st.lists(st.integers(0, 7_000_000), min_size=0, max_size=5)


@st.composite
def records(draw: st.DrawFn, epoch: int = EPOCH, vote: str = "Vote111") -> ValidatorRecord:
    earned = draw(earned_lists)
    leader = draw(st.none() | st.integers(0, 400))
    produced = None if leader is None else draw(st.integers(0, leader))
    return make_record(
        vote_pubkey=vote,
        epoch=epoch,
        slot=epoch * SLOTS + draw(st.integers(0, SLOTS - 1)),
        observed_at=draw(st.floats(0, 1e9, allow_nan=False)),
        commission=draw(st.integers(0, 100)),
        activated_stake=draw(st.integers(0, 20_000_000 * 10**9)),
        epoch_credits=credits_history(earned, epoch - draw(st.integers(0, 3))) if earned else (),
        delinquent=draw(st.booleans()),
        leader_slots=leader,
        blocks_produced=produced,
        applied_commission=draw(st.none() | st.integers(0, 100)),
        applied_commission_epoch=epoch - 1,
        version=draw(st.sampled_from([None, "2.1.14", "2.0.1", "0.403.20113"])),
        gossip_ip=draw(st.sampled_from([None, "10.1.2.3", "65.21.8.9"])),
        name=draw(st.sampled_from([None, "Acme"])),
        authorized_withdrawer=draw(st.sampled_from([None, "Node111", "Cold"])),
        mev_commission_bps=draw(st.none() | st.integers(0, 10_000)),
    )


contexts = st.builds(
    lambda slot_index, skip, refs: make_context(
        slot_index=slot_index,
        cluster_skip_rate=skip,
        reference_credits={str(EPOCH - 4 + i): r for i, r in enumerate(refs)},
        consensus_versions={"agave": "2.1.14"},
        infra_stake_share={"65.21.0.0/16": 0.2},
    ),
    st.integers(0, SLOTS),
    st.none() | st.floats(0, 1),
    st.lists(st.integers(1, 7_000_000), min_size=5, max_size=5),
)


@FAST
@given(st.lists(records(), min_size=1, max_size=4), contexts)
def test_score_confidence_and_components_stay_in_bounds(recs: list[ValidatorRecord], ctx: object) -> None:
    state: ValidatorState | None = None
    for rec in recs:
        state, b = update(state, rec, ctx)  # type: ignore[arg-type]
        assert 0.0 <= b.score <= 100.0 and 0.0 <= b.base_score <= 100.0
        assert 0.0 <= b.confidence <= 1.0
        assert all(0.0 <= c.measurement.score <= 1.0 for c in b.components)
        assert abs(sum(c.weight for c in b.components) - 1.0) < 1e-9
        assert abs(sum(c.contribution for c in b.components) - b.base_score) < 1e-6
        if rec.commission == 100:
            assert b.score == 0.0


@FAST
@given(earned_lists.filter(bool), st.data(), st.integers(1, 3_000_000), contexts)
def test_more_credits_never_lowers_the_vote_component(
    earned: list[int], data: st.DataObject, extra: int, ctx: object
) -> None:
    index = data.draw(st.integers(0, len(earned) - 1))
    more = list(earned)
    more[index] += extra
    prior_state, _ = update(None, make_record(epoch=EPOCH - 3, epoch_credits=()), make_context(epoch=EPOCH - 3))
    base = make_record(epoch_credits=credits_history(earned, EPOCH))
    _, low = update(prior_state, base, ctx)  # type: ignore[arg-type]
    _, high = update(prior_state, replace(base, epoch_credits=credits_history(more, EPOCH)), ctx)  # type: ignore[arg-type]
    assert high.component(names.VOTE).measurement.score >= low.component(names.VOTE).measurement.score - 1e-12


@FAST
@given(st.integers(0, 99), st.integers(1, 100), st.none() | st.integers(0, 10_000), st.integers(0, 100))
def test_higher_commission_never_raises_the_commission_component(
    commission: int, raise_by: int, mev: int | None, history: int
) -> None:
    state, _ = update(None, make_record(epoch=EPOCH - 2, commission=history), make_context(epoch=EPOCH - 2))
    low_rec = make_record(commission=commission, mev_commission_bps=mev)
    high_rec = replace(low_rec, commission=min(100, commission + raise_by))
    _, low = update(state, low_rec, make_context())
    _, high = update(state, high_rec, make_context())
    assert high.component(names.COMMISSION).measurement.score <= low.component(names.COMMISSION).measurement.score


def sequence(draw: st.DrawFn) -> list[ValidatorRecord]:
    recs = []
    for epoch in sorted(draw(st.lists(st.integers(EPOCH, EPOCH + 6), min_size=1, max_size=6))):
        recs.append(draw(records(epoch=epoch)))
    recs.sort(key=lambda r: (r.slot, r.observed_at))
    return recs


@FAST
@given(st.data())
def test_reapplying_records_is_a_no_op(data: st.DataObject) -> None:
    recs = sequence(data.draw)
    once = twice = None
    for rec in recs:
        ctx = make_context(epoch=rec.epoch)
        once, _ = update(once, rec, ctx)
        twice, _ = update(twice, rec, ctx)
        twice, replay = update(twice, rec, ctx)
        assert not replay.applied and replay.events == ()
    assert once == twice


@FAST
@given(st.data())
def test_late_records_do_not_corrupt_state(data: st.DataObject) -> None:
    recs = sequence(data.draw)
    in_order = None
    for rec in recs:
        in_order, _ = update(in_order, rec, make_context(epoch=rec.epoch))
    shuffled_state = None
    delivered: list[ValidatorRecord] = []
    for rec in recs:
        shuffled_state, _ = update(shuffled_state, rec, make_context(epoch=rec.epoch))
        delivered.append(rec)
        late = data.draw(st.sampled_from(delivered))  # an old record re-delivered late
        shuffled_state, _ = update(shuffled_state, late, make_context(epoch=late.epoch))
    assert shuffled_state == in_order


@FAST
@given(st.lists(st.integers(0, 6_900_000), min_size=5, max_size=5), st.integers(1, SLOTS - 1), st.data())
def test_committed_vote_history_ignores_how_often_an_epoch_was_polled(
    earned: list[int], step: int, data: st.DataObject
) -> None:
    ctx = make_context(epoch=EPOCH + 1, reference_credits={str(e): REFERENCE for e in range(EPOCH - 4, EPOCH + 1)})
    early = make_record(epoch_credits=credits_history([*earned[:4], earned[4] // 3], EPOCH), slot=EPOCH * SLOTS + 1)
    middle = replace(early, slot=EPOCH * SLOTS + step, observed_at=early.observed_at + step)
    final = make_record(epoch=EPOCH + 1, epoch_credits=credits_history(earned, EPOCH))
    polled_twice, _ = update(update(update(None, early, make_context())[0], middle, make_context())[0], final, ctx)
    polled_once, _ = update(update(None, early, make_context())[0], final, ctx)
    assert polled_twice.vote_ewma == polled_once.vote_ewma
    assert polled_twice.vote_n == polled_once.vote_n == 5


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_a_run_scores_the_same_in_any_order(data: st.DataObject) -> None:
    recs = [data.draw(records(vote=f"Vote{i}")) for i in range(data.draw(st.integers(2, 8)))]
    order = list(recs)
    random.Random(data.draw(st.integers(0, 2**32))).shuffle(order)

    def score_all(batch: list[ValidatorRecord]) -> dict[str, tuple[float, float]]:
        ctx = build_cluster_context("run", EPOCH, EPOCH * SLOTS + 5, 5, SLOTS, batch)
        out = {}
        for rec in batch:
            _, b = update(None, rec, ctx)
            out[rec.vote_pubkey] = (b.score, b.confidence)
        return out

    assert build_cluster_context("run", EPOCH, 1, 5, SLOTS, recs) == build_cluster_context(
        "run", EPOCH, 1, 5, SLOTS, order
    )
    assert score_all(recs) == score_all(order)


@FAST
@given(records(), contexts)
def test_being_delinquent_never_raises_the_score(rec: ValidatorRecord, ctx: object) -> None:
    _, up = update(None, replace(rec, delinquent=False), ctx)  # type: ignore[arg-type]
    _, down = update(None, replace(rec, delinquent=True), ctx)  # type: ignore[arg-type]
    assert down.score <= up.score + 1e-9


@FAST
@given(st.integers(2, 100), st.integers(0, 200))
def test_rug_penalty_only_decays(increase_pp: int, since: int) -> None:
    now, later = rug_factor(increase_pp, since, DEFAULT_CONFIG), rug_factor(increase_pp, since + 1, DEFAULT_CONFIG)
    assert 0 < later < now <= DEFAULT_CONFIG.rug_max


@FAST
@given(st.lists(records(), min_size=1, max_size=4), contexts)
def test_the_fast_encodings_write_the_same_bytes_as_the_plain_ones(recs: list[ValidatorRecord], ctx: object) -> None:
    """The table stores `orjson.dumps(state)` and the breakdown skips `round` for 0/1 and memoises weights:
    both must give exactly what `state_to_dict` and a plain `round` of every number give."""
    wide = orjson.OPT_NON_STR_KEYS
    state: ValidatorState | None = None
    for rec in recs:
        state, b = update(state, rec, ctx)  # type: ignore[arg-type]
        raw = orjson.dumps(state, option=wide)
        assert raw == orjson.dumps(state_to_dict(state), option=wide)
        assert state_from_dict(orjson.loads(raw)) == state
        for c in b.components:
            m = c.measurement
            plain = {"name": m.name, "raw": m.raw, "reference": m.reference, "score": round(m.score, 6),
                     "weight": round(c.weight, 6), "contribution": round(c.contribution, 4), "n": round(m.n, 4),
                     "known": m.known, **m.details}
            assert orjson.dumps(c.to_dict(), option=wide) == orjson.dumps(plain, option=wide)
