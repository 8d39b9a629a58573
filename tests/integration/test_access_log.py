"""Access changes are events, on the real services, worker and broker (ICH E6(R3) 4.2.2): an
administrator adds a user, rotates their token and revokes them through the API; each change
takes effect for commands and for the projections' views, and ``trialops audit trail --user``
shows it beside what the user recorded. Only an administrator changes access."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from clients.http import call

from .helpers import eventually, post

pytestmark = pytest.mark.kafka

ADMIN = "demo-administrator"
AUDIT = "from trialops.cli_audit import audit_app; audit_app()"


def test_an_added_user_acts_a_rotated_token_and_a_revocation_end_access_and_the_trail_says_so(
    stack,
):
    user = f"sc-{uuid.uuid4().hex[:6]}"
    subject = f"MSK-{uuid.uuid4().int % 9000 + 1000}"
    views = f"{stack.projections_url}/projections/cohort-occupancy"

    # Only an administrator adds users
    status, body = post(stack, "/access/users", {"user_id": user, "role": "site_coordinator",
                                                 "reason": "new coordinator"},
                        token="demo-investigator")
    assert (status, body["error"]) == (403, "role-not-permitted")

    # Given an administrator adds a site coordinator: the token is answered once
    status, body = post(stack, "/access/users", {"user_id": user, "role": "site_coordinator",
                                                 "printed_name": "S. Coordinator",
                                                 "reason": "joined the site team"},
                        token=ADMIN)
    assert status == 201, body
    token = body["token"]
    assert [e["event_type"] for e in body["events"]] == ["UserAdded"]
    # A token hash sent by the client is refused: the server makes the token
    status, body = post(stack, "/access/users", {"user_id": "x-1", "role": "auditor",
                                                 "token_hash": "scrypt$1", "reason": "r"},
                        token=ADMIN)
    assert (status, body["fields"][0]["rule"]) == (422, "set-by-server")

    # Then the new user records with their own token, under their own name
    status, body = post(stack, "/enrollment/subjects", {"subject_id": subject, "site_id": "MSK"},
                        token=token)
    assert status == 201, body
    # And reads the projections once the worker has read the access log
    eventually(lambda: call("GET", views, token=token)[0] == 200, timeout=30, interval=1)

    # When the token is rotated, the old one authenticates nobody and the new one works
    status, body = post(stack, "/access/token-rotations",
                        {"user_id": user, "reason": "token shown on a shared screen"},
                        token=ADMIN)
    assert status == 201, body
    rotated = body["token"]
    status, body = post(stack, "/enrollment/subjects", {"subject_id": subject + "-X",
                                                        "site_id": "MSK"}, token=token)
    assert (status, body["error"]) == (401, "unauthenticated")
    eventually(lambda: call("GET", views, token=rotated)[0] == 200, timeout=30, interval=1)

    # When the user is revoked, neither the services nor the projections let them in
    status, body = post(stack, "/access/role-revocations",
                        {"user_id": user, "reason": "left the site"}, token=ADMIN)
    assert status == 201, body
    status, body = post(stack, "/enrollment/subjects", {"subject_id": subject + "-Y",
                                                        "site_id": "MSK"}, token=rotated)
    assert (status, body["error"]) == (401, "unauthenticated")
    eventually(lambda: call("GET", views, token=rotated)[0] == 401, timeout=30, interval=1)

    # And the last administrator cannot be revoked
    status, body = post(stack, "/access/role-revocations",
                        {"user_id": "demo-administrator", "reason": "test"}, token=ADMIN)
    assert (status, body["error"]) == (409, "last-administrator-kept"), body

    # And the user's audit trail shows every access change beside what they recorded
    result = subprocess.run(
        [sys.executable, "-c", AUDIT, "trail", "--user", user, "--format", "csv"],
        env={**os.environ, **stack.settings.env(), "NO_COLOR": "1"},
        capture_output=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    rows = result.stdout.decode().splitlines()[1:]
    kinds = [row.split(",") for row in rows]
    assert [k for row in kinds for k in row if k in {
        "UserAdded", "SubjectRegistered", "TokenRotated", "RoleRevoked"}] == [
        "UserAdded", "SubjectRegistered", "TokenRotated", "RoleRevoked"]
    assert "scrypt$" not in result.stdout.decode()
