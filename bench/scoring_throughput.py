"""Scoring throughput and state size: 2,000 and 100,000 records from the real epoch-752 cluster.

Runs are simulated from the saved mainnet snapshot (1,351 vote accounts): each run advances the slot by
a quarter epoch, finished epochs append their epochCredits entry, a few validators change commission
and some are delinquent, so every code path of `update()` is exercised. Printed side by side:

  baseline  ValidatorRecord.from_dict on the same records (the per-record decode the pipeline pays anyway)
  update    scoring.update() alone, states kept as objects
  +dict     update() with the state read from and written to a plain dict + orjson, as the table does
  event     breakdown -> ScoreEvent -> dict -> JSON (ScoreEvent.to_dict is dataclasses.asdict)

Rates are records per CPU-second of this process (time.process_time), so other load on a shared machine
moves them less than wall time would.

Usage: .venv/bin/python -m bench.scoring_throughput [--quick]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson

from bench.report import emit
from stream_app.records import ClusterContext, ValidatorRecord
from stream_app.scoring import build_cluster_context, state_from_dict, state_to_dict, update
from stream_app.scoring.state import ValidatorState
from tests.scoring.mainnet import EPOCH, SLOTS_IN_EPOCH, load_e752

RUNS_PER_EPOCH = 4
# CPU seconds of this process: the machine is shared, and wall time would mostly measure the neighbours.
clock = time.process_time


def simulated_runs(total: int, seed: int = 7) -> Iterator[tuple[ClusterContext, list[ValidatorRecord]]]:
    """Successive runs over the real validator set until `total` records were produced."""
    rng = random.Random(seed)
    base, tip = load_e752()
    produced = 0
    run = 0
    while produced < total:
        epoch = EPOCH + run // RUNS_PER_EPOCH
        slot = tip + run * SLOTS_IN_EPOCH // RUNS_PER_EPOCH
        batch = [evolve(r, run, epoch, slot, rng) for r in base[: total - produced]]
        ctx = build_cluster_context(
            f"run-{run}", epoch, slot, slot - epoch * SLOTS_IN_EPOCH, SLOTS_IN_EPOCH, batch, float(run * 21_600)
        )
        yield ctx, batch
        produced += len(batch)
        run += 1


def evolve(record: ValidatorRecord, run: int, epoch: int, slot: int, rng: random.Random) -> ValidatorRecord:
    credits = list(record.epoch_credits)
    while credits and credits[-1][0] < epoch:  # finish the epoch and open the next
        last_epoch, total, _ = credits[-1]
        earned = int(6_900_000 * min(1.0, rng.gauss(0.995, 0.01)))
        credits.append((last_epoch + 1, total + earned, total))
    credits = credits[-5:]
    leader = rng.randint(0, 200)
    commission = record.commission
    if rng.random() < 0.01:
        commission = min(100, commission + rng.choice((1, 2, 5, 10)))
    return replace(
        record,
        run_id=f"run-{run}",
        epoch=epoch,
        slot=slot,
        observed_at=float(run * 21_600),
        epoch_credits=tuple(credits),
        commission=commission,
        delinquent=record.delinquent or rng.random() < 0.005,
        leader_slots=leader,
        blocks_produced=leader - min(leader, int(rng.expovariate(1 / 3))),
        gossip_ip=f"{rng.randint(1, 220)}.{rng.randint(0, 255)}.1.1",
        version=rng.choice(("2.1.14", "2.1.13", "2.0.21", "0.403.20113")),
        applied_commission=record.commission if run % RUNS_PER_EPOCH == 0 else None,
        applied_commission_epoch=epoch - 1 if run % RUNS_PER_EPOCH == 0 else None,
    )


def measure(total: int) -> dict[str, Any]:
    runs = list(simulated_runs(total))
    dicts = [[r.to_dict() for r in batch] for _, batch in runs]
    # The pre-built inputs are not what a worker holds: keep the cyclic GC from rescanning them.
    gc.collect()
    gc.freeze()

    start = clock()
    for encoded in dicts:
        for data in encoded:
            ValidatorRecord.from_dict(data)
    decode = clock() - start

    states: dict[str, ValidatorState] = {}
    start = clock()
    for ctx, batch in runs:
        for rec in batch:
            states[rec.vote_pubkey], _ = update(states.get(rec.vote_pubkey), rec, ctx)
    scoring = clock() - start

    table: dict[str, bytes] = {}
    events = 0.0
    start = clock()
    for ctx, batch in runs:
        for rec in batch:
            raw = table.get(rec.vote_pubkey)
            state = state_from_dict(orjson.loads(raw)) if raw is not None else None
            new_state, breakdown = update(state, rec, ctx)
            table[rec.vote_pubkey] = orjson.dumps(state_to_dict(new_state))
            mark = clock()
            orjson.dumps(breakdown.to_score_event(rec).to_dict())
            events += clock() - mark
    faust = clock() - start - events

    state_sizes = [len(v) for v in table.values()]
    record_sizes = [len(orjson.dumps(d)) for d in dicts[-1]]
    gc.unfreeze()
    return {
        "records": total,
        "runs": len(runs),
        "validators": len(table),
        "decode_rps": total / decode,
        "update_rps": total / scoring,
        "faust_rps": total / faust,
        "event_rps": total / events,
        "state_mean": statistics.mean(state_sizes),
        "state_max": max(state_sizes),
        "record_mean": statistics.mean(record_sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 and 10,000 records instead of 100,000")
    args = parser.parse_args()
    sizes = (2_000, 10_000) if args.quick else (2_000, 100_000)
    print(
        f"{'records':>8} {'runs':>5} {'baseline decode/s':>18} {'update/s':>10} {'update+dict/s':>14}"
        f" {'event/s':>9} {'state B mean':>12} {'state B max':>11} {'record B':>9}"
    )
    for total in sizes:
        m = measure(total)
        print(
            f"{m['records']:>8,} {m['runs']:>5} {m['decode_rps']:>18,.0f} {m['update_rps']:>10,.0f}"
            f" {m['faust_rps']:>14,.0f} {m['event_rps']:>9,.0f}"
            f" {m['state_mean']:>12,.0f} {m['state_max']:>11,} {m['record_mean']:>9,.0f}"
        )
        emit(f"{total:,} records: scoring update()+dict per CPU-s", m["faust_rps"], "rec/cpu-s",
             baseline=m["decode_rps"], baseline_label="record decode alone")


if __name__ == "__main__":
    main()
