"""Who is calling: bearer tokens mapped to users and their trial roles.

Tokens are stored only as SHA-256 digests. The actor recorded in an event always comes from
here, never from the request body.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field

from events.envelope import Actor

ROLES = (
    "site_coordinator",
    "investigator",
    "manufacturing_qa",
    "safety_officer",
    "sponsor",
    "auditor",
)


class User(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    user_id: str = Field(min_length=1)
    role: str
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    printed_name: str | None = Field(
        default=None, description="Name shown with the user's electronic signatures"
    )


class UserDirectory:
    def __init__(self, users: list[User]):
        unknown = sorted({u.role for u in users} - set(ROLES))
        if unknown:
            raise ValueError(f"users: unknown role(s) {unknown}; known roles: {list(ROLES)}")
        self._users = users

    @classmethod
    def from_file(cls, path: Path) -> UserDirectory:
        data = orjson.loads(path.read_bytes())
        return cls([User.model_validate(u) for u in data["users"]])

    @classmethod
    def from_env(cls) -> UserDirectory:
        path = os.environ.get("TRIALOPS_USERS_FILE")
        return cls.from_file(Path(path)) if path else cls.demo()

    @classmethod
    def demo(cls) -> UserDirectory:
        """One user per role, token ``demo-<role>``: for the demo and tests, never production."""
        return cls(
            [
                User(
                    user_id=f"demo-{role.replace('_', '-')}",
                    role=role,
                    token_sha256=digest(f"demo-{role}"),
                    printed_name=f"Demo {role.replace('_', ' ').title()}",
                )
                for role in ROLES
            ]
        )

    def authenticate(self, token: str) -> Actor | None:
        user = self.user_for(token)
        return None if user is None else Actor(user_id=user.user_id, role=user.role)

    def user_for(self, token: str) -> User | None:
        wanted = digest(token)
        for user in self._users:
            if hmac.compare_digest(user.token_sha256, wanted):
                return user
        return None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
