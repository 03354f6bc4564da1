"""`solstake token`: print access tokens for testing (the seed's `npm run generate:tokens`).

    solstake token                 # one token per role: viewer, user, admin
    solstake token --role admin    # just the admin token, alone on stdout (for $(...) in scripts)

Tokens are signed with JWT_SECRET (in development without one: the data dir's dev secret, the same one the
web process uses), so they work against a running server. The user id is a label unless --user-id names a
real `users.id`.
"""

from __future__ import annotations

import argparse

from http_app.principal import ROLE_PERMISSIONS
from http_app.tokens import Identity, Keyring, issue_access_token
from stream_app.settings import Settings

ROLES = ("viewer", "user", "admin")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=sorted(ROLE_PERMISSIONS), help="print only this role's token")
    parser.add_argument("--user-id", help="userId claim (default: test-<role>)")
    parser.add_argument("--email", help="email claim (default: <role>@example.com)")
    parser.add_argument("--wallet", help="wallet public key (becomes the subject)")


def print_tokens(args: argparse.Namespace, settings: Settings) -> int:
    try:
        keyring = Keyring.from_settings(settings)
    except ValueError as exc:
        print(f"solstake token: {exc}")
        return 2
    roles = (args.role,) if args.role else ROLES
    for role in roles:
        identity = Identity(
            user_id=args.user_id or f"test-{role}",
            role=role,
            email=args.email or f"{role}@example.com",
            wallet_pubkey=args.wallet,
        )
        token = issue_access_token(keyring, identity)
        print(token if args.role else f"{role}: {token}")
    return 0
