"""The simulator's HTTP face: a JSON-RPC 2.0 server (aiohttp) in front of `SimCluster`, plus a control API.

    handle = await start_simulator(port=0, seed=752, validators=2000, epoch_seconds=60)
    handle.url                      # "http://127.0.0.1:<port>/" — give it to RpcClient
    handle.advance(epochs=1)        # drive the clock from a test (or POST /_sim/advance)
    handle.faults.add("rate_limit", times=2, retry_after=1)
    await handle.close()

Control API (development/test only; binds 127.0.0.1 by default and has no auth):
    GET    /_sim/state                 slot, epoch, counts, request counters, faults, demo wallets, rugs
    POST   /_sim/advance               {"slots": n} | {"epochs": n} | {"to_slot": n}
    POST   /_sim/clock                 {"epoch_seconds": 60} (0 = frozen)
    POST   /_sim/faults                one rule or a list (see faults.py); ?replace=1 clears first
    DELETE /_sim/faults
    POST   /_sim/stake-accounts        {"staker", "withdrawer", "vote"?, "lamports"} → {"pubkey"}
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from solders.pubkey import Pubkey

from stream_app.settings import Settings
from stream_app.sources.parse import CONFIG_PROGRAM_ID, STAKE_PROGRAM_ID
from stream_app.sources.simulator.cluster import SLOTS_PER_EPOCH, SimCluster
from stream_app.sources.simulator.faults import FaultError, FaultPlan, FaultRule, corrupt

MAX_MULTIPLE_ACCOUNTS = 100
MAX_BATCH = 1_000


class SimClock:
    """Slots as a function of time: `epoch_seconds` per epoch (0 = frozen) plus manual advances."""

    def __init__(self, start_slot: int, epoch_seconds: float,
                 now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._base_slot = start_slot
        self._since = now()
        self._rate = 0.0
        self.set_epoch_seconds(epoch_seconds)

    @property
    def epoch_seconds(self) -> float:
        return SLOTS_PER_EPOCH / self._rate if self._rate else 0.0

    def set_epoch_seconds(self, epoch_seconds: float) -> None:
        if epoch_seconds < 0:
            raise ValueError("epoch_seconds must be >= 0 (0 = frozen)")
        self._base_slot = self.slot() if hasattr(self, "_rate") and self._rate else self._base_slot
        self._since = self._now()
        self._rate = SLOTS_PER_EPOCH / epoch_seconds if epoch_seconds else 0.0

    def slot(self) -> int:
        return self._base_slot + int((self._now() - self._since) * self._rate)

    def advance(self, slots: int) -> None:
        if slots < 0:
            raise ValueError("the clock only moves forward")
        self._base_slot += slots


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _pubkey_param(value: Any) -> str:
    try:
        return str(Pubkey.from_string(value))
    except (TypeError, ValueError):
        raise RpcFailure(-32602, f"Invalid param: {str(value)[:60]!r} is not a valid pubkey") from None


def _config(params: list[Any], position: int) -> dict[str, Any]:
    value = params[position] if len(params) > position else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RpcFailure(-32602, f"Invalid params: expected a config object at position {position}")
    return value


@dataclass
class SimulatorHandle:
    """A running simulator; everything a test needs to drive it in process."""

    url: str
    port: int
    cluster: SimCluster
    clock: SimClock
    faults: FaultPlan
    requests: Counter[str] = field(default_factory=Counter)
    log: deque[tuple[float, str, str | None]] = field(default_factory=lambda: deque(maxlen=10_000))
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    def advance(self, *, slots: int = 0, epochs: int = 0) -> None:
        self.clock.advance(slots + epochs * SLOTS_PER_EPOCH)
        self.sync()

    def sync(self) -> None:
        self.cluster.advance_to(self.clock.slot())

    def state(self) -> dict[str, Any]:
        self.sync()
        c = self.cluster
        return {
            "slot": c.slot, "epoch": c.epoch, "slot_index": c.slot_index, "slots_in_epoch": SLOTS_PER_EPOCH,
            "validators": len(c.validators), "epoch_seconds": self.clock.epoch_seconds, "seed": c.seed,
            "requests": dict(self.requests), "faults": self.faults.describe(), "wallets": c.demo_wallets(),
            "rugs": [{"epoch": e, "vote": v, "from": a, "to": b} for e, v, a, b in c.rugs],
        }

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class _Service:
    """Request handling, bound to one handle."""

    def __init__(self, handle: SimulatorHandle) -> None:
        self.h = handle

    # ------------------------------------------------------------------------------------------ JSON-RPC

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._json({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None})
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                return self._json({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid batch"},
                                   "id": None})
            return self._json([self._answer(call, None)[0] for call in payload])
        method = payload.get("method") if isinstance(payload, dict) else None
        rule = self.h.faults.take(method) if isinstance(method, str) else None
        self.h.log.append((time.monotonic(), str(method), rule.kind if rule else None))
        if rule is not None:
            early = await self._early_fault(rule, payload)
            if early is not None:
                return early
        answer, _ = self._answer(payload, rule)
        body = orjson.dumps(answer)
        if rule is not None and rule.kind == "truncate":
            return await self._truncated(request, body)
        return web.Response(body=body, content_type="application/json")

    async def _early_fault(self, rule: FaultRule, payload: Any) -> web.StreamResponse | None:
        request_id = payload.get("id") if isinstance(payload, dict) else None
        if rule.kind == "rate_limit":
            headers = {} if rule.retry_after is None else {"Retry-After": f"{rule.retry_after:g}"}
            return web.json_response({"jsonrpc": "2.0", "error": {"code": 429, "message": "Too many requests"},
                                      "id": request_id}, status=429, headers=headers)
        if rule.kind == "server_error":
            return web.Response(status=rule.status, text="upstream unavailable")
        if rule.kind in ("slow", "timeout"):
            try:
                await asyncio.wait_for(self.h._closing.wait(), rule.delay)
            except TimeoutError:
                pass
            return None
        if rule.kind == "malformed_json":
            return web.Response(body=b'{"jsonrpc":"2.0","result":{"current":[{"votePubkey":,}', status=200,
                                content_type="application/json")
        if rule.kind == "rpc_error":
            return self._json({"jsonrpc": "2.0", "id": request_id,
                               "error": {"code": rule.code, "message": "Node is unhealthy (simulated)"}})
        return None

    async def _truncated(self, request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return response

    def _answer(self, call: Any, rule: FaultRule | None) -> tuple[dict[str, Any], bool]:
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or not isinstance(call.get("method"), str):
            return {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request"},
                    "id": call.get("id") if isinstance(call, dict) else None}, False
        method = call["method"]
        params = call.get("params") or []
        self.h.requests[method] += 1
        if not isinstance(params, list):
            return self._error(call, -32602, "Invalid params: expected an array"), False
        self.h.sync()
        lag = rule.lag_slots if rule is not None and rule.kind == "stale" else 0
        try:
            result = self._dispatch(method, params, lag)
        except RpcFailure as exc:
            return self._error(call, exc.code, exc.message), False
        if rule is not None and rule.kind in ("wrong_types", "missing_fields"):
            result = corrupt(method, result, rule.kind, rule.every)
        return {"jsonrpc": "2.0", "result": result, "id": call.get("id")}, True

    @staticmethod
    def _error(call: dict[str, Any], code: int, message: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": call.get("id")}

    def _dispatch(self, method: str, params: list[Any], lag: int) -> Any:
        c = self.h.cluster
        if method == "getVoteAccounts":
            config = _config(params, 0)
            result = c.rpc_vote_accounts(slot_lag=lag)
            if "votePubkey" in config:
                wanted = _pubkey_param(config["votePubkey"])
                result = {k: [e for e in v if e["votePubkey"] == wanted] for k, v in result.items()}
            return result
        if method == "getEpochInfo":
            return c.rpc_epoch_info(slot_lag=lag)
        if method == "getSlot":
            return max(0, c.slot - lag)
        if method == "getBlockHeight":
            return c.rpc_epoch_info(slot_lag=lag)["blockHeight"]
        if method == "getHealth":
            return "ok"
        if method == "getVersion":
            return {"feature-set": 1_725_507_508, "solana-core": "2.1.14"}
        if method == "getEpochSchedule":
            return {"firstNormalEpoch": 0, "firstNormalSlot": 0, "leaderScheduleSlotOffset": SLOTS_PER_EPOCH,
                    "slotsPerEpoch": SLOTS_PER_EPOCH, "warmup": False}
        if method == "getClusterNodes":
            return c.rpc_cluster_nodes()
        if method == "getBlockProduction":
            config = _config(params, 0)
            identity = _pubkey_param(config["identity"]) if "identity" in config else None
            return c.rpc_block_production(identity)
        if method == "getProgramAccounts":
            return self._program_accounts(params)
        if method == "getMultipleAccounts":
            return self._multiple_accounts(params)
        if method == "getInflationReward":
            return self._inflation_reward(params)
        raise RpcFailure(-32601, "Method not found")

    def _program_accounts(self, params: list[Any]) -> Any:
        if not params:
            raise RpcFailure(-32602, "Invalid params: missing program id")
        program = _pubkey_param(params[0])
        config = _config(params, 1)
        if config.get("encoding") != "jsonParsed":
            raise RpcFailure(-32602, "the simulator answers getProgramAccounts with encoding jsonParsed only")
        filters = config.get("filters") or []
        if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
            raise RpcFailure(-32602, "Invalid params: filters must be an array of objects")
        for f in filters:
            if "memcmp" in f:
                memcmp = f["memcmp"]
                if not isinstance(memcmp, dict) or not isinstance(memcmp.get("offset"), int):
                    raise RpcFailure(-32602, "Invalid params: memcmp needs offset and bytes")
                _pubkey_param(memcmp.get("bytes"))
        if program == CONFIG_PROGRAM_ID:
            return self.h.cluster.rpc_config_accounts()
        if program == STAKE_PROGRAM_ID:
            return self.h.cluster.rpc_stake_accounts(filters)
        return []

    def _multiple_accounts(self, params: list[Any]) -> Any:
        keys = params[0] if params else None
        if not isinstance(keys, list):
            raise RpcFailure(-32602, "Invalid params: expected an array of pubkeys")
        if len(keys) > MAX_MULTIPLE_ACCOUNTS:
            raise RpcFailure(-32602, f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        if _config(params, 1).get("encoding") != "jsonParsed":
            raise RpcFailure(-32602, "the simulator answers getMultipleAccounts with encoding jsonParsed only")
        c = self.h.cluster
        return {"context": {"apiVersion": "2.1.14", "slot": c.slot},
                "value": [c.rpc_vote_account_data(_pubkey_param(k)) for k in keys]}

    def _inflation_reward(self, params: list[Any]) -> Any:
        addresses = params[0] if params else None
        if not isinstance(addresses, list):
            raise RpcFailure(-32602, "Invalid params: expected an array of addresses")
        c = self.h.cluster
        epoch = _config(params, 1).get("epoch", c.epoch - 1)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise RpcFailure(-32602, "Invalid params: epoch must be a non-negative integer")
        try:
            return c.rpc_inflation_reward([_pubkey_param(a) for a in addresses], epoch)
        except ValueError as exc:
            raise RpcFailure(-32602, str(exc)) from None

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")

    # ------------------------------------------------------------------------------------------ control

    async def state(self, request: web.Request) -> web.Response:
        return self._json(self.h.state())

    async def advance(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            if "to_slot" in body:
                self.h.clock.advance(max(0, int(body["to_slot"]) - self.h.clock.slot()))
                self.h.sync()
            else:
                self.h.advance(slots=int(body.get("slots", 0)), epochs=int(body.get("epochs", 0)))
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"advance: {exc}") from None
        return self._json(self.h.cluster.rpc_epoch_info())

    async def clock(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            self.h.sync()
            self.h.clock.set_epoch_seconds(float(body.get("epoch_seconds", 0)))
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"clock: {exc}") from None
        return self._json({"epoch_seconds": self.h.clock.epoch_seconds, "slot": self.h.clock.slot()})

    async def add_faults(self, request: web.Request) -> web.Response:
        body = await self._body(request, allow_list=True)
        rules = body if isinstance(body, list) else [body]
        try:
            parsed = [FaultRule.from_dict(r) for r in rules]
        except FaultError as exc:
            raise web.HTTPBadRequest(text=f"faults: {exc}") from None
        if request.query.get("replace") in ("1", "true"):
            self.h.faults.clear()
        self.h.faults.rules.extend(parsed)
        return self._json(self.h.faults.describe())

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.h.faults.clear()
        return self._json([])

    async def add_stake_account(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            address = self.h.cluster.add_stake_account(
                body["staker"], body.get("withdrawer", body["staker"]), body.get("vote"), int(body["lamports"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"stake-accounts: {exc!r}") from None
        return self._json({"pubkey": address})

    @staticmethod
    async def _body(request: web.Request, *, allow_list: bool = False) -> Any:
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text="body is not JSON") from None
        if not isinstance(body, dict) and not (allow_list and isinstance(body, list)):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body


def build_app(handle: SimulatorHandle) -> web.Application:
    service = _Service(handle)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/", service.rpc)
    app.router.add_get("/_sim/state", service.state)
    app.router.add_post("/_sim/advance", service.advance)
    app.router.add_post("/_sim/clock", service.clock)
    app.router.add_post("/_sim/faults", service.add_faults)
    app.router.add_delete("/_sim/faults", service.clear_faults)
    app.router.add_post("/_sim/stake-accounts", service.add_stake_account)
    return app


async def start_simulator(
    port: int = 0,
    seed: int = 752,
    validators: int | None = None,
    epoch_seconds: float = 600.0,
    *,
    host: str = "127.0.0.1",
    share_with: SimulatorHandle | None = None,
) -> SimulatorHandle:
    """Start the simulator in this event loop. port 0 picks a free port; epoch_seconds 0 freezes the clock.

    `share_with` serves the same cluster and clock from a second port (a second "RPC node", with its own
    faults) for failover tests.
    """
    if share_with is not None:
        cluster, clock = share_with.cluster, share_with.clock
    else:
        cluster = SimCluster(seed=seed, validators=validators)
        clock = SimClock(cluster.slot, epoch_seconds)
    handle = SimulatorHandle(url="", port=0, cluster=cluster, clock=clock, faults=FaultPlan())
    runner = web.AppRunner(build_app(handle), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    handle.port = bound
    handle.url = f"http://{host}:{bound}/"
    handle._runner = runner
    return handle


async def start_simulator_from_settings(
    settings: Settings, *, validators: int | None = None, port: int | None = None
) -> SimulatorHandle:
    """The simulator as configured by SIMULATOR_PORT / SIMULATOR_SEED / SIMULATOR_EPOCH_SECONDS."""
    return await start_simulator(settings.simulator_port if port is None else port, settings.simulator_seed,
                                 validators, settings.simulator_epoch_seconds)
