"""A Solana JSON-RPC simulator: a deterministic cluster model (`cluster.py`) behind a real aiohttp server
(`server.py`) with switchable faults (`faults.py`). `python -m stream_app.sources.simulator --help`."""

from stream_app.sources.simulator.server import SimulatorHandle, start_simulator, start_simulator_from_settings

__all__ = ["SimulatorHandle", "start_simulator", "start_simulator_from_settings"]
