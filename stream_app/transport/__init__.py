"""Faust transport driver for Redis Streams: `faust.App(..., broker="redis://host:6379/0?prefix=...")`."""

from .transport import Transport

__all__ = ["Transport"]
