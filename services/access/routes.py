"""HTTP routes of the access service: an administrator adds users, grants and revokes their
role and rotates their tokens; each change is an event on the access topic, with its reason."""

from __future__ import annotations

from events.topics import ACCESS
from services.access.decider import AddUser, GrantRole, RevokeRole, RotateToken, make_decider
from services.catalog import Route, ServiceSpec

SERVICE = ServiceSpec(
    context=ACCESS,
    make_decider=make_decider,
    routes=(
        Route("/access/users", "add-user", AddUser, issues_token=True),
        Route("/access/role-grants", "grant-role", GrantRole),
        Route("/access/role-revocations", "revoke-role", RevokeRole),
        Route("/access/token-rotations", "rotate-token", RotateToken, issues_token=True),
    ),
)
