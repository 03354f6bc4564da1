"""Authorization hooks for resolvers: one place that turns the caller's Principal into allow/deny.

The access-control layer fills `context["principal"]`; resolvers only call these helpers.
"""

from __future__ import annotations

from typing import Any

from http_app.graphql.errors import FORBIDDEN, UNAUTHENTICATED, ApiError
from http_app.principal import ANONYMOUS, Principal


def principal_of(ctx: dict[str, Any]) -> Principal:
    principal = ctx.get("principal")
    return principal if isinstance(principal, Principal) else ANONYMOUS


def _deny(principal: Principal, what: str) -> ApiError:
    if principal.anonymous:
        return ApiError(f"Authentication required: {what}", UNAUTHENTICATED)
    return ApiError(f"Not allowed: {what}", FORBIDDEN)


def require(ctx: dict[str, Any], permission: str) -> Principal:
    principal = principal_of(ctx)
    if not principal.can(permission):
        raise _deny(principal, f"needs the {permission} permission")
    return principal


def require_admin(ctx: dict[str, Any]) -> Principal:
    principal = principal_of(ctx)
    if not principal.is_admin:
        raise _deny(principal, "needs the admin role")
    return principal


def require_signed_in(ctx: dict[str, Any]) -> Principal:
    principal = principal_of(ctx)
    if principal.anonymous:
        raise _deny(principal, "sign in first")
    return principal
