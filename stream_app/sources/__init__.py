"""Solana source: validating RPC parsers, a retrying JSON-RPC client, the cluster snapshot of one scoring
run, a wallet's stake accounts, and the RPC simulator. See README.md in this folder."""
