"""Who is calling (services/auth.py): bearer tokens map to a user and one trial role; tokens are
kept only as salted scrypt hashes (RFC 7914), one user per line of an owner-only users file;
the demo directory has one user per role, token ``demo-<role>``, only when asked for."""

from __future__ import annotations

import hashlib
import re

import orjson
import pytest

from events.envelope import Actor
from services import auth
from services.auth import ROLES, User, UserDirectory, demo_token_hash, hash_token, token_matches


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user(user_id: str, role: str, token: str) -> User:
    return User(user_id=user_id, role=role, token_hash=hash_token(token))


def users_file(tmp_path, *lines: str, mode: int = 0o600):
    path = tmp_path / "users.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(mode)
    return path


def line(user_id: str, role: str, token: str) -> str:
    return orjson.dumps(user(user_id, role, token).model_dump(exclude_none=True)).decode()


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


def test_a_token_is_stored_as_a_salted_scrypt_hash_never_as_itself_or_its_digest():
    first, second = hash_token("token-ortega"), hash_token("token-ortega")

    assert re.fullmatch(r"scrypt\$16384\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}", first)
    assert first != second  # a fresh salt each time
    assert "token-ortega" not in first and sha256_hex("token-ortega") not in first
    assert token_matches("token-ortega", first) and token_matches("token-ortega", second)
    assert not token_matches("token-ortegA", first)


@pytest.mark.parametrize(
    "token_hash",
    [
        sha256_hex("t-1"),
        "scrypt$1024$8$1$" + "00" * 16 + "$" + "00" * 32,  # too cheap
        "scrypt$20000$8$1$" + "00" * 16 + "$" + "00" * 32,  # not a power of two
        "scrypt$16384$8$1$" + "00" * 4 + "$" + "00" * 32,  # salt too short
    ],
)
def test_a_user_without_a_salted_slow_hash_is_refused(token_hash):
    with pytest.raises(ValueError, match="token_hash"):
        User(user_id="dr-ortega", role="investigator", token_hash=token_hash)


def test_a_user_with_an_unknown_role_is_refused_naming_the_role():
    with pytest.raises(ValueError, match="sponsor_monitor"):
        user("cro-monitor", "sponsor_monitor", "t-2")


def test_a_users_file_maps_each_token_to_its_user_and_role(tmp_path):
    path = users_file(
        tmp_path,
        "# trial users: one JSON object per line",
        line("dr-ortega", "investigator", "token-ortega"),
        "",
        line("qa-lind", "manufacturing_qa", "token-lind"),
    )

    directory = UserDirectory.from_file(path)

    assert directory.authenticate("token-ortega") == Actor(user_id="dr-ortega", role="investigator")
    assert directory.authenticate("token-lind") == Actor(user_id="qa-lind", role="manufacturing_qa")
    assert directory.authenticate("demo-investigator") is None


def test_the_environment_names_the_users_file(tmp_path, monkeypatch):
    path = users_file(tmp_path, line("aud-kim", "auditor", "token-kim"))
    monkeypatch.setenv("TRIALOPS_USERS_FILE", str(path))

    directory = UserDirectory.from_env()

    assert directory.authenticate("token-kim") == Actor(user_id="aud-kim", role="auditor")
    assert directory.authenticate("demo-auditor") is None


def test_without_a_users_file_nobody_is_let_in_unless_the_demo_is_asked_for(monkeypatch):
    monkeypatch.delenv("TRIALOPS_USERS_FILE", raising=False)

    with pytest.raises(ValueError, match=r"no users: set TRIALOPS_USERS_FILE .* or pass --demo"):
        UserDirectory.from_env()
    assert UserDirectory.from_env(demo=True).authenticate("demo-auditor") == Actor(
        user_id="demo-auditor", role="auditor"
    )


def test_the_demo_and_a_users_file_together_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIALOPS_USERS_FILE", str(users_file(tmp_path, line("a", "auditor", "t"))))

    with pytest.raises(ValueError, match="not both"):
        UserDirectory.from_env(demo=True)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666])
def test_a_users_file_open_to_group_or_others_is_refused(tmp_path, mode):
    path = users_file(tmp_path, line("aud-kim", "auditor", "token-kim"), mode=mode)

    with pytest.raises(ValueError, match=r"open to group or others .* chmod 600"):
        UserDirectory.from_file(path)


def test_a_missing_users_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"users file .*missing\.jsonl: No such file") as refused:
        UserDirectory.from_file(tmp_path / "missing.jsonl")
    assert "\n" not in str(refused.value)


def test_an_empty_users_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no user"):
        UserDirectory.from_file(users_file(tmp_path, "# nobody yet", ""))


def test_two_lines_with_one_user_id_are_refused_naming_both_lines(tmp_path):
    path = users_file(
        tmp_path,
        line("dr-ortega", "investigator", "token-ortega"),
        "# the same person again, with another role",
        line("dr-ortega", "sponsor", "token-ortega-2"),
    )

    with pytest.raises(ValueError, match=r"line 3: the same user id as line 1 \(dr-ortega\)"):
        UserDirectory.from_file(path)


def test_a_copied_hash_line_is_refused_naming_both_lines(tmp_path):
    ortega = user("dr-ortega", "investigator", "token-ortega")
    copied = ortega.model_copy(update={"user_id": "dr-lind"})
    path = users_file(
        tmp_path, *(orjson.dumps(u.model_dump()).decode() for u in (ortega, copied))
    )

    with pytest.raises(ValueError, match="line 2: the same token hash as line 1"):
        UserDirectory.from_file(path)


def test_one_token_under_two_salts_authenticates_nobody_and_names_the_lines(caplog):
    directory = UserDirectory(
        [
            user("dr-ortega", "investigator", "shared-token"),
            user("qa-lind", "sponsor", "shared-token"),
            user("aud-kim", "auditor", "token-kim"),
        ],
        lines=[2, 5, 7],
    )

    assert directory.authenticate("shared-token") is None
    assert "lines 2, 5" in caplog.text
    assert directory.authenticate("token-kim") == Actor(user_id="aud-kim", role="auditor")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"users": [', "line 1: not a JSON object on one line"),
        ('["dr-ortega"]', "line 1: not a JSON object on one line"),
        (
            orjson.dumps(
                {"user_id": "dr-ortega", "role": "investigator", "token_sha256": sha256_hex("t")}
            ).decode(),
            "line 1: token_sha256 (unsalted) is no longer accepted",
        ),
        ('{"user_id": "dr-ortega", "role": "investigator"}', "line 1: token_hash: Field required"),
        (
            orjson.dumps(
                {"user_id": "dr-ortega", "role": "courier", "token_hash": hash_token("t")}
            ).decode(),
            "line 1: role: unknown role 'courier'",
        ),
    ],
)
def test_a_bad_users_line_is_refused_naming_the_line_and_the_field(tmp_path, content, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        UserDirectory.from_file(users_file(tmp_path, content))


def test_a_token_is_checked_with_scrypt_once_then_found_again_without_it(monkeypatch):
    directory = UserDirectory([user("aud-kim", "auditor", "token-kim")])
    checks = []
    original = token_matches
    monkeypatch.setattr(
        "services.auth.token_matches", lambda *a: checks.append(a) or original(*a)
    )

    for _ in range(3):
        assert directory.authenticate("token-kim") is not None
        assert directory.authenticate("wrong-token") is None

    assert len(checks) == 2


@pytest.mark.parametrize("role", ROLES)
def test_each_demo_users_kept_hash_is_the_scrypt_of_its_public_token(role):
    assert token_matches(f"demo-{role}", demo_token_hash(role))
    assert not token_matches(f"demo-{role}x", demo_token_hash(role))


def test_a_token_is_checked_against_users_of_one_salt_with_one_scrypt(monkeypatch):
    calls = []
    original = auth._scrypt
    monkeypatch.setattr(auth, "_scrypt", lambda *a: calls.append(a) or original(*a))
    demo = UserDirectory(list(UserDirectory.demo().users))  # nothing remembered yet
    salted_apart = UserDirectory([user(f"u-{n}", "auditor", f"token-{n}") for n in range(3)])
    calls.clear()

    assert demo.authenticate("demo-sponsor") == Actor(user_id="demo-sponsor", role="sponsor")
    assert len(calls) == 1
    assert salted_apart.authenticate("token-2") == Actor(user_id="u-2", role="auditor")
    assert len(calls) == 1 + 3  # every user is still checked: one salt each
