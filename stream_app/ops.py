"""The operator's subcommands of the observability issue: the seed's npm scripts as `solstake` commands.

    solstake metrics summary      npm run metrics:summary    overview: validators, runs, freshness, scores
    solstake metrics health       npm run metrics:health     every dependency check; exit 1 if one fails
    solstake metrics prometheus   npm run metrics:prometheus business + stream gauges as Prometheus text
    solstake stream monitor       npm run queue:monitor      per-topic lengths, lag, members, last commit
    solstake score all            npm run score:all          a scoring run now, with progress until done
    solstake fetch now            npm run queue:add fetch    (pipeline's `fetch`; queues a run, no wait)
    solstake schedule show|set development|production|clear  npm run queue:scheduler
    solstake db verify            npm run verify:db          (pipeline's `verify`)
    solstake token                npm run generate:tokens    (access control's `token`)

Every command attaches to the running system (configured URLs, or the embedded servers `solstake run`
started) and exits 2 when there is none. `--json` prints machine-readable output instead of text.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson

from stream_app.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Configure = Callable[[argparse.ArgumentParser], None]


# --------------------------------------------------------------------------------------------- helpers

def _attach(settings: Settings) -> tuple[str, str] | None:
    from stream_app.pipeline_cli import attach

    urls = attach(settings)
    return None if urls is None else (urls.database_url, urls.redis_url)


def _no_system(command: str) -> int:
    print(f"solstake {command}: no running system found (DATABASE_URL/REDIS_URL unset and no embedded "
          "servers up); start it with `solstake run` or set the URLs", file=sys.stderr)
    return 2


def _run(command: str, settings: Settings, body: Callable[[str, str], Coroutine[Any, Any, int]]) -> int:
    urls = _attach(settings)
    if urls is None:
        return _no_system(command)
    try:
        return asyncio.run(body(*urls))
    except KeyboardInterrupt:
        return 130


def _json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600):02d}h"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


def _when(unix: float | None) -> str:
    if unix is None:
        return "-"
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _stream_prefix(settings: Settings, redis_url: str) -> str | None:
    from stream_app.app import broker_url
    from stream_app.transport.url import TransportURLError, parse_broker_url

    try:
        return parse_broker_url(broker_url(settings, redis_url))[1].prefix
    except TransportURLError:
        return None


def _action(parser: argparse.ArgumentParser, choices: tuple[str, ...], help_text: str,
            *, json_flag: bool = True) -> None:
    parser.add_argument("action", choices=choices, help=help_text)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")


# ----------------------------------------------------------------------------------------------- metrics

def configure_metrics(parser: argparse.ArgumentParser) -> None:
    _action(parser, ("summary", "health", "prometheus"),
            "summary: readable overview; health: dependency checks; prometheus: exposition text")


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> int:
    bodies = {"summary": _summary, "health": _health, "prometheus": _prometheus}
    body = bodies[args.action]
    return _run(f"metrics {args.action}", settings, lambda db, redis: body(args, settings, db, redis))


async def _summary(args: argparse.Namespace, settings: Settings, database_url: str, redis_url: str) -> int:
    import asyncpg
    import redis.asyncio as aioredis

    from stream_app.business import read_snapshot
    from stream_app.rpc_fallback import read_fallback
    from stream_app.runs import latest_runs
    from stream_app.schedule import read_schedule
    from stream_app.streamstats import read_snapshot as read_streams

    conn = await asyncpg.connect(database_url, timeout=5)
    redis = aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        snap = await read_snapshot(conn)
        runs = await latest_runs(conn, 5)
        schedule = await read_schedule(redis, settings)
        fallback = await read_fallback(redis, settings.redis_prefix)
        prefix = _stream_prefix(settings, redis_url)
        streams = await read_streams(redis, prefix) if prefix else None
        memory = await redis.info("memory")
        # The response cache's shared counters (http_app/cache.py: ResponseCache.stats_key).
        raw_cache = await redis.hgetall(f"{settings.redis_prefix}:gqlstats")
        cache = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw_cache.items()}
    finally:
        await conn.close()
        await redis.aclose()
    hits, misses = cache.get("hits", 0), cache.get("misses", 0)
    hit_rate = hits / (hits + misses) if hits + misses else None
    redis_facts = {"used_memory": memory.get("used_memory_human"), "maxmemory_policy": memory.get("maxmemory_policy")}
    lag = {g.group: g.total_lag for g in streams.groups} if streams else {}
    if args.json:
        _json({
            "validators": snap.validators, "delinquent": snap.delinquent, "scored": snap.scored,
            "runs_by_status": snap.runs_by_status, "completion_rate": snap.completion_rate,
            "coverage": snap.coverage, "freshness_seconds": snap.freshness(),
            "score_buckets": [{"le": b, "count": n} for b, n in snap.score_buckets],
            "latest_run": snap.latest_run, "recent_runs": runs, "schedule": schedule.to_dict(),
            "simulator_fallback": fallback, "stream_lag": lag,
            "cache": {"hits": hits, "misses": misses, "hit_rate": hit_rate}, "redis": redis_facts,
        })
        return 0
    print(f"sol-stake summary, {_when(time.time())}")
    print(f"  validators        {snap.validators:,} known, {snap.delinquent:,} delinquent, "
          f"{snap.scored:,} with a score")
    latest = snap.latest_run
    if latest:
        print(f"  latest run        {latest['id']} {latest['status']}: {latest['success_count']:,} scored, "
              f"{latest['fail_count']:,} failed of {latest['validator_count']:,} (coverage {_pct(snap.coverage)}), "
              f"epoch {latest['epoch']}, source {latest['source']}")
    else:
        print("  latest run        none finished yet")
    print(f"  data freshness    {human_seconds(snap.freshness())} since the last completed run")
    print(f"  completion rate   {_pct(snap.completion_rate)} of the last {snap.finished_recent} finished runs")
    print("  runs              " + ", ".join(f"{s} {n}" for s, n in snap.runs_by_status.items()))
    print(f"  schedule          {schedule.profile}: every {human_seconds(schedule.interval)} ({schedule.source})")
    if fallback:
        print(f"  RPC               SIMULATOR fallback at {fallback.get('url')} ({fallback.get('reason')})")
    if lag:
        print("  stream lag        " + ", ".join(f"{g} {n:,} records" for g, n in lag.items()))
    print(f"  response cache    hit rate {_pct(hit_rate)} ({hits:,} hits, {misses:,} misses)")
    print(f"  redis             {redis_facts['used_memory']} used, maxmemory-policy {redis_facts['maxmemory_policy']}")
    print("  trust scores")
    previous = 0
    lower = 0.0
    widest = max([n for _b, n in snap.score_buckets] + [1])
    for bound, cumulative in snap.score_buckets:
        count = cumulative - previous
        bar = "#" * round(40 * count / widest) if count else ""
        print(f"    {lower:>3.0f}-{bound:<3.0f} {count:>6,} {bar}")
        previous, lower = cumulative, bound
    if runs:
        print("  recent runs")
        for r in runs:
            started = r["run_date"].timestamp() if isinstance(r["run_date"], datetime) else None
            print(f"    {_when(started)}  {r['id']}  {r['status']:<9} {r['success_count']:>6,} ok "
                  f"{r['fail_count']:>5,} failed of {r['validator_count']:>6,}  {r['trigger']}")
    return 0


async def _health(args: argparse.Namespace, settings: Settings, database_url: str, redis_url: str) -> int:
    import redis.asyncio as aioredis

    from stream_app.checks import bounded, check_postgres_dsn, check_redis, check_solana, run_checks
    from stream_app.rpc_fallback import read_fallback
    from stream_app.streamstats import read_snapshot as read_streams  # imported now: not inside a timed check

    limit = max(settings.health_timeout, 2.0)  # a CLI can afford a little more than a load balancer
    redis = aioredis.from_url(redis_url, socket_timeout=limit, socket_connect_timeout=limit)

    prefix = _stream_prefix(settings, redis_url)

    async def workers() -> dict[str, Any]:
        if prefix is None:
            return {"members": None, "note": "Kafka broker: use its tools"}
        snap = await read_streams(redis, prefix)
        return {"members": sum(1 for g in snap.groups for m in g.members if m.expires_in > 0),
                "groups": [g.group for g in snap.groups]}

    try:
        checks = await run_checks({
            "db": check_postgres_dsn(database_url, limit),
            "redis": check_redis(redis, limit),
            "solana": check_solana(settings.solana_rpc_urls, limit),
            "workers": bounded("workers", workers, limit,
                               judge=lambda d: "no live worker in any consumer group" if d["members"] == 0 else None),
        })
        try:
            fallback = await asyncio.wait_for(read_fallback(redis, settings.redis_prefix), limit)
        except Exception:  # reported through the redis check already
            fallback = None
    finally:
        await redis.aclose()
    essential_ok = checks["db"].ok and checks["redis"].ok and (checks["solana"].ok or bool(fallback))
    status = "ok" if essential_ok and checks["workers"].ok else ("degraded" if essential_ok else "failing")
    if args.json:
        _json({"status": status, "checks": {n: c.to_dict() for n, c in checks.items()},
               "simulator_fallback": fallback})
        return 0 if essential_ok else 1
    print(f"sol-stake health: {status.upper()}")
    for name, check in checks.items():
        mark = "ok  " if check.ok else "FAIL"
        facts = {k: v for k, v in check.detail.items() if k not in ("endpoints",)}
        extra = ", ".join(f"{k}={v}" for k, v in facts.items() if v is not None)
        print(f"  {mark} {name:<8} {check.latency_ms:7.1f} ms  {check.error or extra}")
    if fallback:
        print(f"  NOTE RPC simulator fallback active at {fallback.get('url')}: {fallback.get('reason')}")
    return 0 if essential_ok else 1


async def _prometheus(args: argparse.Namespace, settings: Settings, database_url: str, redis_url: str) -> int:
    import asyncpg
    import redis.asyncio as aioredis
    from prometheus_client import CollectorRegistry, Info, generate_latest

    from stream_app.business import BusinessCollector
    from stream_app.metrics_shared import git_commit, version
    from stream_app.streamstats import StreamCollector

    registry = CollectorRegistry()
    info = Info("solstake_build", "Version and git commit of the sol-stake code that produced this export.",
                registry=registry)
    info.info({"version": version(), "commit": git_commit()})
    business = BusinessCollector(max_age=0.0, timeout=10.0)
    streams = StreamCollector()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, timeout=10)
    redis = aioredis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        await business.refresh(pool, force=True)
        prefix = _stream_prefix(settings, redis_url)
        if prefix:
            await streams.refresh(redis, prefix, limit=10.0)
    finally:
        await pool.close()
        await redis.aclose()
    registry.register(business)
    registry.register(streams)
    sys.stdout.write(generate_latest(registry).decode())
    return 0 if business.last_error is None else 1


# ------------------------------------------------------------------------------------------------ stream

def configure_stream(parser: argparse.ArgumentParser) -> None:
    _action(parser, ("monitor",), "monitor: per-topic lengths, consumer lag, members, last commit")
    parser.add_argument("--watch", type=float, default=0.0, metavar="SECONDS",
                        help="refresh every SECONDS until Ctrl-C")
    parser.add_argument("--count", type=int, default=0, help="with --watch: stop after this many refreshes")


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    async def body(database_url: str, redis_url: str) -> int:
        import redis.asyncio as aioredis

        from stream_app.streamstats import read_snapshot as read_streams

        prefix = _stream_prefix(settings, redis_url)
        if prefix is None:
            print("solstake stream monitor: STREAM_BROKER is not the Redis transport; use the broker's tools",
                  file=sys.stderr)
            return 2
        redis = aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        shown = 0
        try:
            while True:
                snap = await read_streams(redis, prefix)
                if args.json:
                    _json(_stream_json(snap))
                else:
                    _print_streams(snap)
                shown += 1
                if args.watch <= 0 or (args.count and shown >= args.count):
                    return 0
                await asyncio.sleep(args.watch)
                if not args.json:
                    print()
        finally:
            await redis.aclose()

    return _run("stream monitor", settings, body)


def _stream_json(snap: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {"prefix": snap.prefix, "taken_at": snap.taken_at,
            "partitions": [asdict(p) for p in snap.partitions], "groups": [asdict(g) for g in snap.groups]}


def _print_streams(snap: Any) -> None:
    print(f"streams under {snap.prefix}:*  ({_when(snap.taken_at)})")
    if not snap.partitions:
        print("  no topics yet (no worker has started, or nothing was produced)")
    topics = snap.topics()
    width = max((len(t) for t in topics), default=0)
    for topic, parts in topics.items():
        retained = sum(p.retained for p in parts)
        produced = sum(p.highwater for p in parts)
        print(f"  {topic + ':':<{width + 1}} {len(parts)} partition(s), {retained:>9,} retained, "
              f"{produced:>9,} produced")
    for group in snap.groups:
        live = [m for m in group.members if m.expires_in > 0]
        print(f"  group {group.group}: generation {group.generation}, epoch {group.epoch}, "
              f"{len(live)} live member(s), leader {group.leader or '-'}, total lag {group.total_lag:,}")
        for member in group.members:
            state = f"heartbeat expires in {member.expires_in:.1f}s" if member.expires_in > 0 else "EXPIRED"
            print(f"    member {member.member_id}  {state}")
        width = max((len(f"{gp.topic}[{gp.partition}]") for gp in group.partitions), default=0)
        for gp in group.partitions:
            name = f"{gp.topic}[{gp.partition}]"
            owner = gp.owner or "-"
            if gp.lag is None:  # changelogs and Faust's leader topic: read to rebuild state, never committed
                print(f"    {name:<{width}}  (internal: not committed)  owner {owner}")
                continue
            last = _when(gp.last_commit_record_ms / 1000) if gp.last_commit_record_ms else "-"
            committed = "never" if gp.committed is None else f"{gp.committed:,}"
            print(f"    {name:<{width}}  committed {committed:>9}  lag {gp.lag:>7,}  "
                  f"last committed record {last}  owner {owner}")


# ------------------------------------------------------------------------------------------------- score

def configure_score(parser: argparse.ArgumentParser) -> None:
    _action(parser, ("all",), "all: fetch every validator now and score them (one scoring run)", json_flag=False)
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="give up waiting after this long (default: RUN_TIMEOUT + 60)")
    parser.add_argument("--no-wait", action="store_true", help="queue the run and return at once")
    parser.add_argument("--actor", default="cli", help="recorded in the audit log")


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    async def body(database_url: str, redis_url: str) -> int:
        import redis.asyncio as aioredis

        from stream_app.fetcher import request_fetch

        redis = aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            run_id = await request_fetch(redis, settings.redis_prefix, trigger="cli", actor=args.actor)
            print(f"scoring run {run_id} requested", flush=True)
            if args.no_wait:
                return 0
            timeout = args.timeout if args.timeout is not None else settings.run_timeout + 60
            return await wait_for_run(database_url, redis, settings.redis_prefix, run_id, timeout)
        finally:
            await redis.aclose()

    return _run("score all", settings, body)


async def wait_for_run(database_url: str, redis: Any, prefix: str, run_id: str, limit: float,
                       *, poll: float = 0.5, out: Any = None) -> int:
    """Show a run's progress until it is final; withdraw the request if no worker ever picked it up."""
    import asyncpg

    from stream_app.runs import FINAL_STATUSES, run_status

    out = out or sys.stdout
    tty = bool(getattr(out, "isatty", lambda: False)())
    deadline = time.monotonic() + limit
    last_line = ""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        while True:
            row = await run_status(conn, run_id)
            line = _progress_line(run_id, row)
            if line != last_line:
                out.write(("\r\033[K" if tty else "") + line + ("" if tty else "\n"))
                out.flush()
                last_line = line
            if row is not None and row["status"] in FINAL_STATUSES:
                if tty:
                    out.write("\n")
                if row["error"]:
                    out.write(f"  reason: {row['error']}\n")
                return 0 if row["status"] == "completed" else 1
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll)
        if tty:
            out.write("\n")
        withdrawn = row is None and await _withdraw(redis, prefix, run_id)
        why = ("no worker picked the request up; it was withdrawn (is a worker running?)" if withdrawn
               else "the run is still going; follow it with `solstake metrics summary`")
        print(f"run {run_id}: not finished after {limit:g} s: {why}", file=sys.stderr)
        return 1
    finally:
        await conn.close()


def _progress_line(run_id: str, row: dict[str, Any] | None) -> str:
    if row is None:
        return f"run {run_id}: waiting for the leader worker to start it"
    done = row["success_count"] + row["fail_count"]
    total = row["validator_count"]
    share = f" ({100.0 * done / total:.0f}%)" if total else ""
    success = f", success rate {100.0 * row['success_count'] / done:.1f}%" if done else ""
    return f"run {run_id}: {row['status']}, {done:,}/{total:,} validators scored{share}{success}"


async def _withdraw(redis: Any, prefix: str, run_id: str) -> bool:
    from stream_app.fetcher import FetchRequest, requests_key

    for raw in await redis.lrange(requests_key(prefix), 0, -1):
        request = FetchRequest.decode(raw)
        if request is not None and request.run_id == run_id:
            return bool(await redis.lrem(requests_key(prefix), 1, raw))
    return False


# ---------------------------------------------------------------------------------------------- schedule

def configure_schedule(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show", "set", "clear", "list", "setup"),
                        help="show the interval in force; set a profile's (or --every) interval; clear = "
                             "back to the settings (the seed's `list` and `setup` are accepted for show and set)")
    parser.add_argument("profile", nargs="?", choices=("development", "production"),
                        help="with set: development (every 30 s) or production (every 6 h)")
    parser.add_argument("--every", type=float, metavar="SECONDS", help="with set: a custom interval")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    args.action = {"list": "show", "setup": "set"}.get(args.action, args.action)  # queue:scheduler's words
    if args.action == "set" and args.profile is None and args.every is None:
        print("solstake schedule set: give a profile (development or production) or --every SECONDS",
              file=sys.stderr)
        return 2

    async def body(database_url: str, redis_url: str) -> int:
        import redis.asyncio as aioredis

        from stream_app import schedule

        redis = aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            if args.action == "set":
                try:
                    chosen = await schedule.set_schedule(redis, settings, profile=args.profile, interval=args.every)
                except ValueError as exc:
                    print(f"solstake schedule set: {exc}", file=sys.stderr)
                    return 2
            elif args.action == "clear":
                chosen = await schedule.clear_schedule(redis, settings)
            else:
                chosen = await schedule.read_schedule(redis, settings)
        finally:
            await redis.aclose()
        if args.json:
            _json(chosen.to_dict())
            return 0
        verb = {"set": "now", "clear": "back to the settings:", "show": "in force:"}[args.action]
        origin = (f"set by {chosen.set_by} at {_when(chosen.set_at)}" if chosen.source == "redis"
                  else "from SOLSTAKE_PROFILE / FETCH_INTERVAL")
        print(f"fetch schedule {verb} {chosen.profile}, a run every {human_seconds(chosen.interval)} ({origin})")
        if args.action != "show":
            print("running workers apply it on their next tick (within a second)")
        return 0

    return _run(f"schedule {args.action}", settings, body)


# ---------------------------------------------------------------------------------------------------- db

def configure_db(parser: argparse.ArgumentParser) -> None:
    _action(parser, ("verify",), "verify: integrity checks (orphans, run counts, score bounds)", json_flag=False)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.pipeline_cli import cmd_verify

    return cmd_verify(args, settings)


COMMANDS: dict[str, tuple[Handler, str]] = {
    "metrics": (cmd_metrics, "metrics summary | health | prometheus (the seed's metrics:* scripts)"),
    "stream": (cmd_stream, "stream monitor: topic lengths, consumer lag, members, last commit (queue:monitor)"),
    "score": (cmd_score, "score all: a scoring run now, with progress until it finishes (score:all)"),
    "schedule": (cmd_schedule, "schedule show | set development|production | clear (queue:scheduler)"),
    "db": (cmd_db, "db verify: database integrity checks (verify:db)"),
}

ARGUMENTS: dict[str, Configure] = {
    "metrics": configure_metrics,
    "stream": configure_stream,
    "score": configure_score,
    "schedule": configure_schedule,
    "db": configure_db,
}
