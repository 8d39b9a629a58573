"""Access as events (events/access.py, services/access/decider.py): users, roles and tokens
change only through commands that leave an event, so who was allowed to do what can be replayed
(ICH E6(R3) 4.2.2). Given the events so far, when a command, then the new events or the rule."""

from __future__ import annotations

from functools import reduce

import pytest
from pydantic import ValidationError

from events.access import RoleGranted, RoleRevoked, TokenRotated, UserAdded
from services.access.decider import (
    EMPTY,
    AddUser,
    BootstrapAccess,
    GrantRole,
    NewUser,
    RevokeRole,
    RotateToken,
    active,
    decide,
    evolve,
)
from services.auth import LiveUsers, UserDirectory, hash_token
from services.errors import NotFound, RuleViolated

from .builders import at

ADMIN_TOKEN = "admin-token-000000000000000"
LEE_TOKEN = "lee-token-00000000000000000"
# A cheap stand-in hash for events whose token is never checked (scrypt runs ~50 ms each).
HASH = "scrypt$16384$8$1$" + "a" * 32 + "$" + "b" * 64


def given(*events):
    return reduce(evolve, events, EMPTY)


def added(user_id: str, role: str, token_hash: str = HASH) -> UserAdded:
    return UserAdded(user_id=user_id, role=role, token_hash=token_hash)


def payloads(new_events):
    return [e.payload for e in new_events]


def test_the_first_start_records_every_seed_user_once():
    command = BootstrapAccess(
        occurred_at=at(0),
        users=(NewUser(user_id="admin", role="administrator", token_hash=HASH),
               NewUser(user_id="dr-lee", role="investigator", token_hash=HASH)),
    )

    new = decide(command, EMPTY)

    assert payloads(new) == [added("admin", "administrator"), added("dr-lee", "investigator")]
    assert [e.stream_id for e in new] == ["user-admin", "user-dr-lee"]


def test_bootstrap_is_refused_once_the_log_holds_a_user():
    command = BootstrapAccess(
        occurred_at=at(0), users=(NewUser(user_id="x", role="auditor", token_hash=HASH),)
    )

    with pytest.raises(RuleViolated) as refused:
        decide(command, given(added("admin", "administrator")))

    assert refused.value.rule == "bootstrap-once"


def test_a_user_is_added_once():
    state = given(added("admin", "administrator"), added("dr-lee", "investigator"))
    command = AddUser(occurred_at=at(1), user_id="dr-lee", role="sponsor", token_hash=HASH,
                      reason="second account")

    with pytest.raises(RuleViolated) as refused:
        decide(command, state)

    assert refused.value.rule == "user-added-once"


def test_an_unknown_role_is_refused_at_the_command():
    with pytest.raises(ValidationError, match="unknown role 'pharmacist'"):
        AddUser(occurred_at=at(1), user_id="p", role="pharmacist", token_hash=HASH,
                reason="new pharmacist")


def test_granting_a_role_records_the_previous_one():
    state = given(added("admin", "administrator"), added("dr-lee", "investigator"))

    new = decide(GrantRole(occurred_at=at(2), user_id="dr-lee", role="sponsor",
                           reason="moved to the sponsor's team"), state)

    assert payloads(new) == [RoleGranted(user_id="dr-lee", role="sponsor",
                                         previous_role="investigator")]


def test_granting_the_role_a_user_already_has_is_refused():
    state = given(added("dr-lee", "investigator"))

    with pytest.raises(RuleViolated) as refused:
        decide(GrantRole(occurred_at=at(2), user_id="dr-lee", role="investigator",
                         reason="again"), state)

    assert refused.value.rule == "role-must-change"


def test_a_revoked_user_is_no_longer_active_and_cannot_be_revoked_twice():
    state = given(added("admin", "administrator"), added("dr-lee", "investigator"))
    revoke = RevokeRole(occurred_at=at(3), user_id="dr-lee", reason="left the site")

    new = decide(revoke, state)
    state = given(added("admin", "administrator"), added("dr-lee", "investigator"),
                  *payloads(new))

    assert payloads(new) == [RoleRevoked(user_id="dr-lee", role="investigator")]
    assert [u.user_id for u in active(state)] == ["admin"]
    with pytest.raises(RuleViolated) as refused:
        decide(revoke, state)
    assert refused.value.rule == "access-already-revoked"


def test_the_last_administrator_can_neither_be_revoked_nor_lose_the_role():
    state = given(added("admin", "administrator"), added("dr-lee", "investigator"))

    for command in (
        RevokeRole(occurred_at=at(3), user_id="admin", reason="leaving"),
        GrantRole(occurred_at=at(3), user_id="admin", role="auditor", reason="new job"),
    ):
        with pytest.raises(RuleViolated) as refused:
            decide(command, state)
        assert refused.value.rule == "last-administrator-kept"


def test_an_administrator_may_step_down_when_another_remains():
    state = given(added("admin", "administrator"), added("admin-2", "administrator"))

    new = decide(RevokeRole(occurred_at=at(3), user_id="admin", reason="leaving"), state)

    assert payloads(new) == [RoleRevoked(user_id="admin", role="administrator")]


def test_changes_to_an_unknown_user_are_refused():
    for command in (
        GrantRole(occurred_at=at(3), user_id="ghost", role="auditor", reason="r"),
        RevokeRole(occurred_at=at(3), user_id="ghost", reason="r"),
        RotateToken(occurred_at=at(3), user_id="ghost", token_hash=HASH, reason="r"),
    ):
        with pytest.raises(NotFound) as refused:
            decide(command, given(added("admin", "administrator")))
        assert refused.value.rule == "user-must-exist"


def test_the_directory_follows_the_log_a_rotated_token_and_a_revocation_end_access():
    """The old token stops at the rotation, the new one works; a revocation ends both."""
    admin_hash, lee_hash = hash_token(ADMIN_TOKEN), hash_token(LEE_TOKEN)
    new_token = "lee-token-rotated-000000000"
    events = [
        added("admin", "administrator", admin_hash),
        added("dr-lee", "investigator", lee_hash),
    ]
    state = [given(*events)]
    users = LiveUsers(lambda: state[0])

    assert users.authenticate(LEE_TOKEN).role == "investigator"

    events.append(TokenRotated(user_id="dr-lee", token_hash=hash_token(new_token)))
    state[0] = given(*events)
    assert users.authenticate(LEE_TOKEN) is None
    assert users.authenticate(new_token).user_id == "dr-lee"

    events.append(RoleRevoked(user_id="dr-lee", role="investigator"))
    state[0] = given(*events)
    assert users.authenticate(new_token) is None
    assert users.authenticate(ADMIN_TOKEN).role == "administrator"


def test_the_seed_answers_only_until_the_log_holds_a_user():
    seed = UserDirectory.demo()
    state = [EMPTY]
    users = LiveUsers(lambda: state[0], seed=seed)

    assert users.authenticate("demo-investigator").role == "investigator"

    state[0] = given(added("admin", "administrator", hash_token(ADMIN_TOKEN)))
    assert users.authenticate("demo-investigator") is None
    assert users.authenticate(ADMIN_TOKEN).user_id == "admin"
