"""Standard security headers on every response, and CORS for the configured origins only (aiohttp-cors).

Headers are added on `on_response_prepare`, so 404s, 429s and errors raised by the router carry them too.
A handler that sets its own Content-Security-Policy (e.g. a GraphiQL page) keeps it.
CORS: `Settings.cors_origins` lists the allowed origins; empty means same-origin only (no CORS headers,
preflights refused). Credentials (cookies) are never allowed: we authenticate with bearer tokens.
"""

from __future__ import annotations

import logging

import aiohttp_cors
from aiohttp import web

from stream_app.settings import Settings

log = logging.getLogger("http_app.security")

API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
HSTS = "max-age=31536000; includeSubDomains"
EXPOSED_HEADERS = (
    "X-Request-Id", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
    "RateLimit-Policy", "RateLimit", "Retry-After", "WWW-Authenticate",
)
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-Id", "GraphQL-Require-Preflight")
PREFLIGHT_MAX_AGE = 600


def security_headers(production: bool) -> dict[str, str]:
    headers = dict(SECURITY_HEADERS)
    if production:  # only meaningful over HTTPS, which production terminates in front of us
        headers["Strict-Transport-Security"] = HSTS
    return headers


def all_security_headers(production: bool) -> dict[str, str]:
    """Every header `setup_security_headers` adds, for a handler that builds them into a `SecuredResponse`."""
    return {**security_headers(production), "Content-Security-Policy": API_CONTENT_SECURITY_POLICY}


class SecuredResponse(web.Response):
    """A response created with `all_security_headers(...)` already among its headers (prebuilt once, e.g. for
    cached GraphQL answers): the response signal leaves it alone instead of re-adding them one by one."""


def setup_security_headers(app: web.Application, settings: Settings) -> None:
    headers = security_headers(settings.production)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        if response.__class__ is SecuredResponse:
            return
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", API_CONTENT_SECURITY_POLICY)

    app.on_response_prepare.append(add_headers)


def setup_cors(app: web.Application, settings: Settings) -> None:
    """Call after every route is added: CORS is enabled per resource."""
    if not settings.cors_origins:
        return
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        expose_headers=EXPOSED_HEADERS,
        allow_headers=ALLOWED_HEADERS,
        allow_methods=["GET", "POST"],
        max_age=PREFLIGHT_MAX_AGE,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in settings.cors_origins})
    for resource in list(app.router.resources()):
        try:
            cors.add(resource)
        except (ValueError, RuntimeError) as exc:  # e.g. a resource with its own OPTIONS handler
            log.warning("CORS not enabled for %s: %s", resource.canonical, exc)
