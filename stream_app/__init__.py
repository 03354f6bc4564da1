"""sol-stake stream side: Solana RPC source → Redis Streams (Faust) → scoring → PostgreSQL sinks."""

__version__ = "0.1.0"
