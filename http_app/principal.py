"""Who is calling: the seed's roles and permissions, and the principal every request carries.

The access-control layer (JWT, Sign-In With Solana) builds a `Principal` per request and stores it in
`request["principal"]`; GraphQL resolvers and REST handlers only ever ask `principal.can(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

READ_VALIDATORS = "read:validators"
READ_SCORES = "read:scores"
WRITE_STAKES = "write:stakes"
WRITE_VALIDATORS = "write:validators"
ADMIN_SYSTEM = "admin:system"
READ_USERS = "read:users"

# Exactly the seed's table (002), plus `read:users` for admins (the seed gates `users` on it).
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ_VALIDATORS, READ_SCORES}),
    "user": frozenset({READ_VALIDATORS, READ_SCORES, WRITE_STAKES}),
    "admin": frozenset({READ_VALIDATORS, READ_SCORES, WRITE_STAKES, WRITE_VALIDATORS, ADMIN_SYSTEM, READ_USERS}),
}


@dataclass(frozen=True)
class Principal:
    user_id: str | None = None
    role: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)
    wallet_pubkey: str | None = None
    token_id: str | None = None  # jti, for logout

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @cached_property  # asked on every GraphQL request; a principal never changes
    def scope(self) -> str:
        """Cache-isolation scope: callers with the same scope may share cached answers."""
        if self.anonymous:
            return "public"
        return f"role:{self.role}:" + ",".join(sorted(self.permissions))


ANONYMOUS = Principal()
