"""Sinks: where scored records leave the stream (PostgreSQL, the live-update stream)."""
