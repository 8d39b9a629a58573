"""The access decider: who may act in the trial. Pure.

Users, roles and tokens are events (``events/access.py``); this decider keeps them consistent.
The first start records the users file's users (``BootstrapAccess``, once, on an empty log);
after that every change is a command of an administrator, with a reason, and the log is the
only source of who may do what (ICH E6(R3) 4.2.2: access changes are audited like the data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from events.access import (
    RoleGranted,
    RoleRevoked,
    TokenHash,
    TokenRotated,
    UserAdded,
    UserId,
    stream_of,
)
from events.registry import EventPayload
from services.auth import ADMINISTRATOR, ROLES
from services.decider import Decider, NewEvent
from services.errors import NotFound, RuleViolated
from services.persistent import put
from trial.config import TrialConfig

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def _known(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")
    return role


KnownRole = Annotated[str, AfterValidator(_known)]


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime


class NewUser(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    user_id: UserId
    role: KnownRole
    printed_name: str | None = Field(default=None, max_length=200)
    token_hash: TokenHash


class BootstrapAccess(_Command):
    """The users of the first start (from the users file, or the demo users): recorded once,
    on an empty access log, by the server itself."""

    users: tuple[NewUser, ...] = Field(min_length=1)


class AddUser(_Command):
    """Give a new user access under one role; the server issues the token and answers it once."""

    user_id: UserId
    role: KnownRole
    printed_name: str | None = Field(default=None, max_length=200)
    token_hash: TokenHash
    reason: Reason


class GrantRole(_Command):
    """From now on the user acts under ``role`` (replacing the one they had, or restoring
    access after a revocation)."""

    user_id: UserId
    role: KnownRole
    reason: Reason


class RevokeRole(_Command):
    """The user may no longer act or read."""

    user_id: UserId
    reason: Reason


class RotateToken(_Command):
    """Replace the user's token; the server issues the new one and answers it once."""

    user_id: UserId
    token_hash: TokenHash
    reason: Reason


@dataclass(frozen=True, slots=True)
class UserAccess:
    user_id: str
    role: str | None
    """None once revoked."""
    token_hash: str
    printed_name: str | None


AccessState = Mapping[str, UserAccess]
"""Every user ever added, by id (read-only; ``evolve`` returns a new mapping)."""

EMPTY: AccessState = MappingProxyType({})


def decide(command: _Command, state: AccessState) -> list[NewEvent]:
    if isinstance(command, BootstrapAccess):
        return _bootstrap(command, state)
    if isinstance(command, AddUser):
        _not_added(state, command.user_id)
        event: EventPayload = UserAdded(
            user_id=command.user_id,
            role=command.role,
            printed_name=command.printed_name,
            token_hash=command.token_hash,
        )
        return [NewEvent(stream_of(command.user_id), event, command.occurred_at)]
    if isinstance(command, GrantRole):
        user = _existing(state, command.user_id)
        if user.role == command.role:
            raise RuleViolated(
                "role-must-change",
                f"user {user.user_id} already acts as {user.role}",
                user_id=user.user_id,
                role=user.role,
            )
        if user.role == ADMINISTRATOR:
            _another_administrator(state, user.user_id, "change the role of")
        event = RoleGranted(user_id=user.user_id, role=command.role, previous_role=user.role)
        return [NewEvent(stream_of(user.user_id), event, command.occurred_at)]
    if isinstance(command, RevokeRole):
        user = _existing(state, command.user_id)
        if user.role is None:
            raise RuleViolated(
                "access-already-revoked",
                f"user {user.user_id} has no access to revoke",
                user_id=user.user_id,
            )
        if user.role == ADMINISTRATOR:
            _another_administrator(state, user.user_id, "revoke")
        event = RoleRevoked(user_id=user.user_id, role=user.role)
        return [NewEvent(stream_of(user.user_id), event, command.occurred_at)]
    if isinstance(command, RotateToken):
        user = _existing(state, command.user_id)
        event = TokenRotated(user_id=user.user_id, token_hash=command.token_hash)
        return [NewEvent(stream_of(user.user_id), event, command.occurred_at)]
    raise TypeError(f"not an access command: {type(command).__name__}")


def _bootstrap(command: BootstrapAccess, state: AccessState) -> list[NewEvent]:
    if state:
        raise RuleViolated(
            "bootstrap-once",
            f"the access log already holds {len(state)} user(s): access changes are commands now",
            users=len(state),
        )
    ids = [u.user_id for u in command.users]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise RuleViolated("user-added-once", f"users repeat: {repeated}", user_ids=repeated)
    return [
        NewEvent(
            stream_of(user.user_id),
            UserAdded(
                user_id=user.user_id,
                role=user.role,
                printed_name=user.printed_name,
                token_hash=user.token_hash,
            ),
            command.occurred_at,
        )
        for user in command.users
    ]


def _not_added(state: AccessState, user_id: str) -> None:
    if user_id in state:
        raise RuleViolated(
            "user-added-once",
            f"user {user_id} was added before; grant a role or rotate the token instead",
            user_id=user_id,
        )


def _existing(state: AccessState, user_id: str) -> UserAccess:
    user = state.get(user_id)
    if user is None:
        raise NotFound("user-must-exist", f"no user {user_id}", user_id=user_id)
    return user


def _another_administrator(state: AccessState, user_id: str, doing: str) -> None:
    """Someone must always be able to change access: the last administrator stays one."""
    others = [u for u in state.values() if u.role == ADMINISTRATOR and u.user_id != user_id]
    if not others:
        raise RuleViolated(
            "last-administrator-kept",
            f"cannot {doing} {user_id}: the trial would be left without an administrator",
            user_id=user_id,
        )


def evolve(state: AccessState, event: EventPayload) -> AccessState:
    if isinstance(event, UserAdded):
        user = UserAccess(event.user_id, event.role, event.token_hash, event.printed_name)
    elif isinstance(event, RoleGranted | RoleRevoked | TokenRotated):
        current = state.get(event.user_id)
        if current is None:  # a change to a user the log never added: nothing to change
            return state
        if isinstance(event, RoleGranted):
            user = replace(current, role=event.role)
        elif isinstance(event, RoleRevoked):
            user = replace(current, role=None)
        else:
            user = replace(current, token_hash=event.token_hash)
    else:
        return state
    return put(state, user.user_id, user)


def active(state: AccessState) -> list[UserAccess]:
    """The users who may act now: added and not revoked."""
    return [u for u in state.values() if u.role is not None]


def make_decider(_trial: TrialConfig | None = None) -> Decider[AccessState]:
    return Decider(EMPTY, decide, evolve)
