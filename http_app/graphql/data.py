"""SQL reads for the API. Rows come back as dicts keyed by GraphQL field names (dict-first resolvers).

Timestamps are formatted by PostgreSQL (ISO 8601, UTC) and big integers cast to text there, so Python
does no per-row conversion. `_pk` carries the numeric key children batch on.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from http_app.graphql.errors import ApiError


def iso(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


VALIDATOR_COLUMNS = f"""
    v.id AS _pk, v.id::text AS id, v.vote_account AS "voteAccount", v.validator_pubkey AS "validatorPubkey",
    v.name, v.website, v.details, v.icon_url AS "iconUrl", v.keybase_username AS "keybaseUsername",
    v.commission::float8 AS commission, v.uptime, v.activated_stake::text AS "activatedStake",
    v.delinquent, v.version, v.latest_score AS "latestScore",
    {iso("v.created_at")} AS "createdAt", {iso("v.updated_at")} AS "updatedAt"
"""

TRUST_SCORE_COLUMNS = f"""
    t.id::text AS id, t.validator_id AS _validator_pk, t.score, t.confidence, t.components AS _components,
    t.penalties AS _penalties, t.scoring_version AS "scoringVersion", t.epoch,
    t.scoring_run_id::text AS "scoringRunId", {iso("t.created_at")} AS "createdAt"
"""

RUN_COLUMNS = f"""
    r.id::text AS id, {iso("r.run_date")} AS "runDate", r.status, r.validator_count AS "validatorCount",
    r.success_count AS "successCount", r.fail_count AS "failCount", r.epoch, r.slot::text AS slot,
    r.trigger, r.source, r.scoring_version AS "scoringVersion", r.error,
    {iso("r.completed_at")} AS "completedAt", {iso("r.created_at")} AS "createdAt"
"""

COMMISSION_COLUMNS = f"""
    c.id::text AS id, c.validator_id AS _validator_pk, v.vote_account AS "voteAccount", c.epoch, c.kind,
    c.kind = 'rug' AS "isRug", c.old_commission AS "oldCommission", c.new_commission AS "newCommission",
    c.applied_commission AS "appliedCommission", {iso("c.detected_at")} AS "detectedAt"
"""

STAKE_COLUMNS = """
    s.id::text AS id, s.user_id AS _user_pk, s.validator_id AS _validator_pk, s.stake_pubkey AS "stakePubkey",
    s.staked_amount::text AS "stakedAmount", s.state, s.vote_account AS "voteAccount",
    s.activation_epoch::text AS "activationEpoch", s.deactivation_epoch::text AS "deactivationEpoch"
"""

# Sort keys never NULL, so keyset cursors compare cleanly.
ORDER_KEYS: dict[str, tuple[str, str]] = {
    "ID": ("v.id", "bigint"),
    "SCORE": ("COALESCE(v.latest_score, -1)", "float8"),
    "COMMISSION": ("COALESCE(v.commission, 101)", "integer"),
    "STAKE": ("v.activated_stake", "bigint"),
    "NAME": ("lower(COALESCE(v.name, ''))", "text"),
    "UPTIME": ("v.uptime", "float8"),
}


def _dicts(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]


def _score(row: asyncpg.Record) -> dict[str, Any]:
    """A trust-score row with its breakdown shaped for GraphQL once, here, instead of per field."""
    score = dict(row)
    score["components"] = [c for c in (score.pop("_components") or ())
                           if isinstance(c, dict) and c.get("name") is not None]
    score["penalties"] = [
        {"kind": p.get("kind"), "reason": p.get("reason"), "factor": p.get("factor"),
         "sinceEpoch": p.get("since_epoch"), "expiresEpoch": p.get("expires_epoch")}
        for p in (score.pop("_penalties") or ()) if isinstance(p, dict) and p.get("kind") is not None
    ]
    return score


@dataclass(frozen=True)
class ValidatorQuery:
    """A validated filter + order, rendered to SQL with positional parameters."""

    min_score: float | None = None
    max_commission: float | None = None
    delinquent: bool | None = None
    search: str | None = None
    order_field: str = "ID"
    descending: bool = False

    @classmethod
    def from_args(cls, args: dict[str, Any], default_order: tuple[str, bool]) -> ValidatorQuery:
        flt = args.get("filter") or {}
        order = args.get("orderBy")
        field, desc = default_order
        if order:
            field = order["field"]
            desc = (order.get("direction") or "DESC") == "DESC"
        search = flt.get("search")
        if search is not None:
            search = search.strip()
            if len(search) > 64:
                raise ApiError("filter.search is limited to 64 characters")
        return cls(flt.get("minScore"), flt.get("maxCommission"), flt.get("delinquent"), search or None,
                   field, desc)

    def where(self, params: list[Any]) -> str:
        clauses: list[str] = []
        if self.min_score is not None:
            params.append(self.min_score)
            clauses.append(f"v.latest_score >= ${len(params)}::double precision")
        if self.max_commission is not None:
            params.append(self.max_commission)
            clauses.append(f"v.commission <= ${len(params)}::double precision")  # no smallint overflow
        if self.delinquent is not None:
            params.append(self.delinquent)
            clauses.append(f"v.delinquent = ${len(params)}")
        if self.search:
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(escaped)
            n = len(params)
            clauses.append(
                f"(v.name ILIKE '%' || ${n} || '%' OR v.vote_account LIKE ${n} || '%'"
                f" OR v.validator_pubkey LIKE ${n} || '%')"
            )
        return " AND ".join(clauses) if clauses else "TRUE"

    def order_by(self) -> str:
        key, _ = ORDER_KEYS[self.order_field]
        direction = "DESC" if self.descending else "ASC"
        return f"{key} {direction}, v.id {direction}"

    def after(self, cursor: tuple[Any, int], params: list[Any]) -> str:
        key, sql_type = ORDER_KEYS[self.order_field]
        params.extend(cursor)
        op = "<" if self.descending else ">"
        return f"({key}, v.id) {op} (${len(params) - 1}::{sql_type}, ${len(params)}::bigint)"

    def cursor_of(self, row: dict[str, Any]) -> str:
        value = _sort_value(self.order_field, row)
        raw = orjson.dumps([self.order_field, self.descending, value, row["_pk"]])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode_cursor(self, cursor: str) -> tuple[Any, int]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            field, desc, value, pk = orjson.loads(raw)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise ApiError("`after` is not a cursor this API issued") from None
        if field != self.order_field or desc != self.descending or not isinstance(pk, int):
            raise ApiError("`after` cursor belongs to a different ordering; restart without it")
        return value, pk


def _sort_value(field: str, row: dict[str, Any]) -> Any:
    if field == "ID":
        return row["_pk"]
    if field == "SCORE":
        return row["latestScore"] if row["latestScore"] is not None else -1
    if field == "COMMISSION":
        return int(row["commission"]) if row["commission"] is not None else 101
    if field == "STAKE":
        return int(row["activatedStake"])
    if field == "NAME":
        return (row["name"] or "").lower()
    return row["uptime"]


async def validators(pool: asyncpg.Pool, query: ValidatorQuery, limit: int | None = None,
                     after: tuple[Any, int] | None = None) -> list[dict[str, Any]]:
    params: list[Any] = []
    where = query.where(params)
    if after is not None:
        where += " AND " + query.after(after, params)
    if limit is None:
        sql = f"SELECT {VALIDATOR_COLUMNS} FROM validators v WHERE {where} ORDER BY {query.order_by()}"
    else:
        # Pick the page's ids first, then format only those rows (PostgreSQL would otherwise compute
        # every column, timestamps included, for every row before sorting).
        params.append(limit)
        sql = (f"SELECT {VALIDATOR_COLUMNS} FROM (SELECT v.id FROM validators v WHERE {where}"
               f" ORDER BY {query.order_by()} LIMIT ${len(params)}) page JOIN validators v ON v.id = page.id"
               f" ORDER BY {query.order_by()}")
    return _dicts(await pool.fetch(sql, *params))


async def count_validators(pool: asyncpg.Pool, query: ValidatorQuery) -> int:
    params: list[Any] = []
    where = query.where(params)
    return int(await pool.fetchval(f"SELECT count(*) FROM validators v WHERE {where}", *params))


async def validator_by_vote(pool: asyncpg.Pool, vote_account: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {VALIDATOR_COLUMNS} FROM validators v WHERE v.vote_account = $1",
                              vote_account)
    return dict(row) if row else None


async def validators_by_pk(pool: asyncpg.Pool, pks: list[int]) -> dict[int, dict[str, Any]]:
    rows = await pool.fetch(f"SELECT {VALIDATOR_COLUMNS} FROM validators v WHERE v.id = ANY($1::bigint[])", pks)
    return {row["_pk"]: dict(row) for row in rows}


async def validators_by_vote(pool: asyncpg.Pool, votes: list[str] | None) -> list[dict[str, Any]]:
    if votes is None:
        rows = await pool.fetch(f"SELECT {VALIDATOR_COLUMNS} FROM validators v ORDER BY v.id")
    else:
        rows = await pool.fetch(
            f"SELECT {VALIDATOR_COLUMNS} FROM validators v WHERE v.vote_account = ANY($1::text[]) ORDER BY v.id",
            votes,
        )
    return _dicts(rows)


async def latest_scores(pool: asyncpg.Pool, pks: list[int]) -> dict[int, dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT {TRUST_SCORE_COLUMNS} FROM unnest($1::bigint[]) AS k(pk)
            CROSS JOIN LATERAL (SELECT * FROM trust_scores s WHERE s.validator_id = k.pk
                                ORDER BY s.created_at DESC, s.id DESC LIMIT 1) t""",
        pks,
    )
    return {row["_validator_pk"]: _score(row) for row in rows}


async def score_history(pool: asyncpg.Pool, pks: list[int], last: int | None) -> dict[int, list[dict[str, Any]]]:
    if last is None:
        rows = await pool.fetch(
            f"""SELECT {TRUST_SCORE_COLUMNS} FROM trust_scores t WHERE t.validator_id = ANY($1::bigint[])
                ORDER BY t.validator_id, t.created_at DESC, t.id DESC""",
            pks,
        )
    else:
        rows = await pool.fetch(
            f"""SELECT {TRUST_SCORE_COLUMNS} FROM unnest($1::bigint[]) AS k(pk)
                CROSS JOIN LATERAL (SELECT * FROM trust_scores s WHERE s.validator_id = k.pk
                                    ORDER BY s.created_at DESC, s.id DESC LIMIT $2) t""",
            pks, last,
        )
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["_validator_pk"], []).append(_score(row))
    return out


async def scores_of_runs(pool: asyncpg.Pool, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    rows = await pool.fetch(
        f"""SELECT {TRUST_SCORE_COLUMNS} FROM trust_scores t WHERE t.scoring_run_id = ANY($1::uuid[])
            ORDER BY t.scoring_run_id, t.validator_id""",
        run_ids,
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["scoringRunId"], []).append(_score(row))
    return out


async def scoring_runs(pool: asyncpg.Pool, first: int | None) -> list[dict[str, Any]]:
    sql = f"SELECT {RUN_COLUMNS} FROM scoring_runs r ORDER BY r.run_date DESC, r.id"
    if first is not None:
        return _dicts(await pool.fetch(sql + " LIMIT $1", first))
    return _dicts(await pool.fetch(sql))


async def scoring_run(pool: asyncpg.Pool, run_id: str) -> dict[str, Any] | None:
    try:
        row = await pool.fetchrow(f"SELECT {RUN_COLUMNS} FROM scoring_runs r WHERE r.id = $1::uuid", run_id)
    except asyncpg.DataError:
        return None
    return dict(row) if row else None


async def latest_run(pool: asyncpg.Pool) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {RUN_COLUMNS} FROM scoring_runs r WHERE r.status <> 'running' ORDER BY r.run_date DESC LIMIT 1"
    )
    return dict(row) if row else None


async def commission_events(pool: asyncpg.Pool, vote: str | None, kind: str | None,
                            first: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT {COMMISSION_COLUMNS} FROM commission_events c JOIN validators v ON v.id = c.validator_id
            WHERE ($1::text IS NULL OR v.vote_account = $1) AND ($2::text IS NULL OR c.kind = $2)
            ORDER BY c.detected_at DESC, c.id DESC LIMIT $3""",
        vote, kind, first,
    )
    return _dicts(rows)


async def commission_events_of(pool: asyncpg.Pool, pks: list[int]) -> dict[int, list[dict[str, Any]]]:
    rows = await pool.fetch(
        f"""SELECT {COMMISSION_COLUMNS} FROM commission_events c JOIN validators v ON v.id = c.validator_id
            WHERE c.validator_id = ANY($1::bigint[]) ORDER BY c.validator_id, c.epoch DESC, c.id DESC""",
        pks,
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["_validator_pk"], []).append(dict(row))
    return out


async def recommended(pool: asyncpg.Pool, limit: int, max_commission: int,
                      rug_free_epochs: int) -> list[dict[str, Any]]:
    """Outside the superminority (the fewest top-staked validators holding > 1/3 of active stake)."""
    rows = await pool.fetch(
        f"""WITH active AS (
                SELECT v.*, sum(v.activated_stake) OVER (ORDER BY v.activated_stake DESC, v.id) AS cum,
                       sum(v.activated_stake) OVER () AS total
                FROM validators v WHERE NOT v.delinquent),
            current AS (SELECT max(epoch) AS epoch FROM scoring_runs)
            SELECT {VALIDATOR_COLUMNS},
                   CASE WHEN v.total > 0 THEN v.activated_stake::float8 / v.total ELSE 0 END AS _share
            FROM active v, current
            WHERE v.cum - v.activated_stake >= v.total / 3.0
              AND v.latest_score IS NOT NULL AND COALESCE(v.commission, 101) <= $2
              AND NOT EXISTS (SELECT 1 FROM commission_events c WHERE c.validator_id = v.id AND c.kind = 'rug'
                              AND (current.epoch IS NULL OR c.epoch > current.epoch - $3))
            ORDER BY v.latest_score DESC, v.commission ASC, v.id
            LIMIT $1""",
        limit, max_commission, rug_free_epochs,
    )
    return [{"rank": i + 1, "stakeShare": row["_share"], "validator": dict(row)} for i, row in enumerate(rows)]


async def users(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT u.id AS _pk, u.id::text AS id, u.wallet_pubkey AS "walletPubkey", u.email, u.role,
                   {iso("u.created_at")} AS "createdAt" FROM users u ORDER BY u.id"""
    )
    return _dicts(rows)


async def stakes_of_users(pool: asyncpg.Pool, user_pks: list[int]) -> dict[int, list[dict[str, Any]]]:
    rows = await pool.fetch(
        f"SELECT {STAKE_COLUMNS} FROM stake_accounts s WHERE s.user_id = ANY($1::bigint[]) ORDER BY s.id",
        user_pks,
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["_user_pk"], []).append(dict(row))
    return out


async def stakes_of_wallet(pool: asyncpg.Pool, user_pk: int | None, wallet: str | None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT {STAKE_COLUMNS} FROM stake_accounts s
            WHERE ($1::bigint IS NOT NULL AND s.user_id = $1)
               OR ($2::text IS NOT NULL AND (s.staker = $2 OR s.withdrawer = $2))
            ORDER BY s.id""",
        user_pk, wallet,
    )
    return _dicts(rows)


async def system_stats(pool: asyncpg.Pool) -> dict[str, Any]:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM validators)::int AS "validatorCount",
                  (SELECT count(*) FROM users)::int AS "userCount",
                  (SELECT count(*) FROM scoring_runs)::int AS "scoringRunCount",
                  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS timestamp"""
    )
    return dict(row)


async def audit(pool: asyncpg.Pool, action: str, actor_id: str | None, metadata: dict[str, Any]) -> None:
    await pool.execute("INSERT INTO audit_log (action, actor_id, metadata) VALUES ($1, $2, $3)",
                       action, actor_id, metadata)
