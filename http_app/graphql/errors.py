"""GraphQL errors with a stable `extensions.code`, and the coercer that masks everything unexpected."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("http_app.graphql")

# Codes clients may rely on (Apollo's vocabulary plus ours).
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
BAD_REQUEST = "BAD_REQUEST"
OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"
INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED"
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
TIMEOUT = "OPERATION_TIMEOUT"
INTERNAL = "INTERNAL_SERVER_ERROR"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class ApiError(Exception):
    """Raised by resolvers for expected failures; its message and code reach the client as they are."""

    def __init__(self, message: str, code: str = BAD_USER_INPUT) -> None:
        super().__init__(message)
        self.code = code


def error_body(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code, **extensions}}


async def coerce_error(exception: Exception, error: dict[str, Any]) -> dict[str, Any]:
    """Tartiflette's error coercer: add a code; replace unexpected exceptions by a masked error."""
    original = getattr(exception, "original_error", None)
    cause = original if original is not None else exception
    extensions = dict(error.get("extensions") or {})
    if isinstance(cause, ApiError):
        code = cause.code
    elif _is_unavailable(cause):
        log.warning("backing service unavailable at %s: %r", error.get("path"), cause)
        unavailable: dict[str, Any] = {"message": "Database unavailable, retry shortly",
                                       "extensions": {"code": SERVICE_UNAVAILABLE}}
        for key in ("locations", "path"):
            if key in error:
                unavailable[key] = error[key]
        return unavailable
    elif original is None or _is_graphql_error(original) or not error.get("path"):
        # Raised by the engine itself before or outside resolvers: argument/variable coercion, validation.
        code = BAD_USER_INPUT if "rule" not in extensions else VALIDATION_FAILED
    else:
        log.error("resolver failed at %s", error.get("path"), exc_info=original)
        masked: dict[str, Any] = {"message": "Internal server error", "extensions": {"code": INTERNAL}}
        for key in ("locations", "path"):
            if key in error:
                masked[key] = error[key]
        return masked
    # Keep the spec links Tartiflette adds, drop anything that could leak internals.
    extensions = {k: v for k, v in extensions.items() if k in ("rule", "spec")}
    extensions["code"] = code
    return {**error, "extensions": extensions}


def _is_unavailable(exc: BaseException) -> bool:
    import asyncpg

    return isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                            asyncpg.CannotConnectNowError))


def _is_graphql_error(exc: BaseException) -> bool:
    from tartiflette.types.exceptions.tartiflette import TartifletteError

    return isinstance(exc, TartifletteError)
