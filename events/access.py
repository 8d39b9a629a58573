"""Access: who may act in the trial, and every change to it, as events.

ICH E6(R3) asks that access to the trial's computerised systems, and its changes, be audited
like the data (section 4.2.2 on data governance and computerised systems). So users, their roles
and their tokens are not a file edited in place but facts on their own topic, written by the
access service and signed by its writer key like every other event: an auditor can replay who
was allowed to do what at any moment (``trialops audit trail --user ID``).

A token never travels on the log: an event carries its salted scrypt hash (RFC 7914), and the
tokens the service issues are 256 random bits, so the hash cannot be reversed by guessing.
One stream per user.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from events.registry import EventPayload, event_type

CONTEXT = "access"

UserId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
]
RoleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z_]*$")]
TokenHash = Annotated[
    str, Field(pattern=r"^scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[0-9a-f]{32,128}\$[0-9a-f]{64}$")
]

_EXAMPLE_HASH = "scrypt$16384$8$1$" + "0" * 32 + "$" + "1" * 64


def stream_of(user_id: str) -> str:
    return f"user-{user_id}"


@event_type("UserAdded", version=1, context=CONTEXT)
class UserAdded(EventPayload):
    """A user given access with one role. The envelope's actor is who added them (``bootstrap``
    for the users of the first start, from the users file)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "dr-lee",
                    "role": "investigator",
                    "printed_name": "Dr A. Lee",
                    "token_hash": _EXAMPLE_HASH,
                }
            ]
        }
    )
    user_id: UserId
    role: RoleName
    printed_name: str | None = Field(default=None, max_length=200)
    token_hash: TokenHash


@event_type("RoleGranted", version=1, context=CONTEXT)
class RoleGranted(EventPayload):
    """The user acts under ``role`` from now on (``previous_role`` None: access restored)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": "dr-lee", "role": "sponsor", "previous_role": "investigator"}]
        }
    )
    user_id: UserId
    role: RoleName
    previous_role: RoleName | None = None


@event_type("RoleRevoked", version=1, context=CONTEXT)
class RoleRevoked(EventPayload):
    """The user may no longer act or read: their token authenticates nobody from now on."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": "dr-lee", "role": "investigator"}]}
    )
    user_id: UserId
    role: RoleName


@event_type("TokenRotated", version=1, context=CONTEXT)
class TokenRotated(EventPayload):
    """The user's token replaced: the old one authenticates nobody from now on."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": "dr-lee", "token_hash": _EXAMPLE_HASH}]}
    )
    user_id: UserId
    token_hash: TokenHash
