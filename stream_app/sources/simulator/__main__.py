"""Run the RPC simulator: `python -m stream_app.sources.simulator --port 8899 --epoch-seconds 60 --validators 2000`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal

from stream_app.sources.simulator.server import start_simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stream_app.sources.simulator",
                                     description="Solana JSON-RPC simulator built from a real mainnet snapshot")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--seed", type=int, default=752)
    parser.add_argument("--validators", type=int, default=None,
                        help="vote accounts (default: the 1,351 of the real epoch-752 snapshot)")
    parser.add_argument("--epoch-seconds", type=float, default=600.0, help="wall seconds per epoch (0 = frozen)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    handle = await start_simulator(args.port, args.seed, args.validators, args.epoch_seconds, host=args.host)
    # The model is millions of long-lived objects: keep the cyclic GC from rescanning them on every answer.
    gc.collect()
    gc.freeze()
    print(f"solana rpc simulator on {handle.url} (seed {args.seed}, {len(handle.cluster.validators)} vote accounts, "
          f"epoch {handle.cluster.epoch}, {args.epoch_seconds:g} s per epoch)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await handle.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
