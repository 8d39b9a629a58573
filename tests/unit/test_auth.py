"""Who is calling (services/auth.py): bearer tokens map to a user and one trial role; tokens are
kept only as SHA-256 digests; the demo directory has one user per role, token ``demo-<role>``."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from events.envelope import Actor
from services.auth import ROLES, User, UserDirectory, digest


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user(user_id: str, role: str, token: str) -> User:
    return User(user_id=user_id, role=role, token_sha256=sha256_hex(token))


def test_demo_directory_authenticates_the_demo_investigator():
    actor = UserDirectory.demo().authenticate("demo-investigator")

    assert actor == Actor(user_id="demo-investigator", role="investigator")


@pytest.mark.parametrize("role", ROLES)
def test_demo_directory_has_one_user_per_role_with_token_demo_role(role):
    actor = UserDirectory.demo().authenticate(f"demo-{role}")

    assert actor is not None
    assert actor.role == role


@pytest.mark.parametrize(
    "token",
    ["", "demo-courier", "demo-investigator ", "DEMO-INVESTIGATOR", sha256_hex("demo-auditor")],
)
def test_an_unknown_token_authenticates_nobody(token):
    assert UserDirectory.demo().authenticate(token) is None


def test_a_token_is_stored_only_as_its_sha256_digest():
    assert digest("demo-investigator") == sha256_hex("demo-investigator")


def test_a_users_list_with_an_unknown_role_is_refused_naming_the_role():
    users = [
        user("dr-ortega", "investigator", "t-1"),
        user("cro-monitor", "sponsor_monitor", "t-2"),
    ]

    with pytest.raises(ValueError, match="sponsor_monitor"):
        UserDirectory(users)


def test_a_users_file_maps_each_token_to_its_user_and_role(tmp_path):
    path = tmp_path / "users.json"
    path.write_bytes(
        orjson.dumps(
            {
                "users": [
                    user("dr-ortega", "investigator", "token-ortega").model_dump(),
                    user("qa-lind", "manufacturing_qa", "token-lind").model_dump(),
                ]
            }
        )
    )

    directory = UserDirectory.from_file(path)

    assert directory.authenticate("token-ortega") == Actor(user_id="dr-ortega", role="investigator")
    assert directory.authenticate("token-lind") == Actor(user_id="qa-lind", role="manufacturing_qa")
    assert directory.authenticate("demo-investigator") is None


def test_the_environment_names_the_users_file(tmp_path, monkeypatch):
    path = tmp_path / "users.json"
    path.write_bytes(
        orjson.dumps({"users": [user("aud-kim", "auditor", "token-kim").model_dump()]})
    )
    monkeypatch.setenv("TRIALOPS_USERS_FILE", str(path))

    directory = UserDirectory.from_env()

    assert directory.authenticate("token-kim") == Actor(user_id="aud-kim", role="auditor")
    assert directory.authenticate("demo-auditor") is None


def test_without_a_users_file_the_demo_directory_is_used(monkeypatch):
    monkeypatch.delenv("TRIALOPS_USERS_FILE", raising=False)

    assert UserDirectory.from_env().authenticate("demo-auditor") == Actor(
        user_id="demo-auditor", role="auditor"
    )
