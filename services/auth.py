"""Who is calling: bearer tokens mapped to users and their trial roles.

Tokens are stored only as salted scrypt hashes (RFC 7914), one user per line of the users file
(``TRIALOPS_USERS_FILE``); ``trialops users hash-token`` writes such a line. Without a users
file nobody is let in, unless the demo is asked for explicitly (``--demo``). The actor recorded
in an event always comes from here, never from the request body.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from events.envelope import Actor
from infra.secrets_files import open_to_others

ADMINISTRATOR = "administrator"
"""Changes who may act (the access service); takes no part in the trial's records."""
NOTIFIER = "notifier"
"""The worker's alerts (decision 52): raises alerts and records their delivery; a system role
no person holds, which reads no trial data over HTTP."""
ROLES = (
    "site_coordinator",
    "investigator",
    "manufacturing_qa",
    "safety_officer",
    "sponsor",
    "auditor",
    ADMINISTRATOR,
    NOTIFIER,
)

READ_ROLES = tuple(role for role in ROLES if role not in (ADMINISTRATOR, NOTIFIER))
"""Who may read the projections and the dashboard: every role of the trial, the auditor
included. Commands are permitted per role by the trial file; reading is not narrowed, because
every role works from the same operational picture (decision 22). The administrator manages
access and sees no trial data."""

USERS_FILE_ENV = "TRIALOPS_USERS_FILE"
USERS_FILE_SUFFIX = ".users"
"""A trial's users file in a folder of them: ``<trial id>.users`` (decision 66)."""
MIN_TOKEN_LENGTH = 20
"""``hash-token`` refuses shorter tokens: a token is a password that is never typed by hand."""

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt's interactive-login cost (RFC 7914 section 2; about 50 ms and 16 MiB per check)."""
_SCRYPT_N_RANGE = (2**14, 2**20)
_TOKEN_HASH = re.compile(
    r"scrypt\$(?P<n>[0-9]+)\$(?P<r>[0-9]+)\$(?P<p>[0-9]+)\$(?P<salt>[0-9a-f]{32,128})"
    r"\$(?P<key>[0-9a-f]{64})"
)
_MISSES_KEPT = 1024
_BEARER = re.compile(r"Bearer ([A-Za-z0-9._~+/-]+=*)", re.IGNORECASE)
"""RFC 6750 section 2.1: the b64token syntax of a bearer credential."""

log = logging.getLogger(__name__)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    found = _BEARER.fullmatch(header or "")
    return None if found is None else found.group(1)


def new_token() -> str:
    """A token the server issues: 256 random bits, URL-safe (a valid RFC 6750 bearer token)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt hex>$<key hex>``: what a users file keeps instead of a token."""
    salt = os.urandom(16) if salt is None else salt
    key = _scrypt(token, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def token_matches(
    token: str, token_hash: str, derived: dict[tuple[str, ...], bytes] | None = None
) -> bool:
    """Whether ``token_hash`` is ``token``'s. ``derived`` keeps the keys already derived from
    ``token`` by cost and salt, so hashes that share them (the demo users') cost one scrypt."""
    parts = _TOKEN_HASH.fullmatch(token_hash)
    if parts is None:
        return False
    params = (parts["n"], parts["r"], parts["p"], parts["salt"])
    key = None if derived is None else derived.get(params)
    if key is None:
        key = _scrypt(token, bytes.fromhex(parts["salt"]), int(params[0]), int(params[1]),
                      int(params[2]))
        if derived is not None:
            derived[params] = key
    return hmac.compare_digest(key, bytes.fromhex(parts["key"]))


def _scrypt(token: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        token.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=130 * n * r * max(p, 1)
    )


class User(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    user_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    role: str
    token_hash: str = Field(description="scrypt$N$r$p$salt$key, from 'trialops users hash-token'")
    printed_name: str | None = Field(
        default=None, description="Name shown with the user's electronic signatures"
    )

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")
        return role

    @field_validator("token_hash")
    @classmethod
    def _salted_slow_hash(cls, value: str) -> str:
        parts = _TOKEN_HASH.fullmatch(value)
        if parts is None:
            raise ValueError("not scrypt$N$r$p$<salt hex>$<key hex>; write it with "
                             "'trialops users hash-token'")
        n, r, p = int(parts["n"]), int(parts["r"]), int(parts["p"])
        low, high = _SCRYPT_N_RANGE
        if n & (n - 1) or not low <= n <= high or not 8 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError(f"scrypt cost N={n} r={r} p={p} is outside N 2^14..2^20 (a power "
                             "of two), r 8..32, p 1..16")
        return value


class UserDirectory:
    """The users who may call, each found by its token. Refuses two users with one id and two
    users with one token (a copied hash line at load; a token that two salted hashes accept at
    its first use), naming the lines."""

    def __init__(self, users: list[User], lines: list[int] | None = None, source: str = "users"):
        self._users = users
        self._lines = lines or list(range(1, len(users) + 1))
        self._source = source
        for kind, key in (("user id", lambda u: u.user_id), ("token hash", lambda u: u.token_hash)):
            seen: dict[str, int] = {}
            for user, line in zip(users, self._lines, strict=True):
                if key(user) in seen:
                    raise ValueError(
                        f"{source} line {line}: the same {kind} as line {seen[key(user)]}"
                        + (f" ({user.user_id})" if kind == "user id" else "")
                    )
                seen[key(user)] = line
        # A token checked once is found again by a keyed digest, so only its first use pays for
        # scrypt; the key lives in this process only, so the cache says nothing if leaked.
        self._cache_key = os.urandom(32)
        self._known: dict[bytes, int] = {}
        self._misses: set[bytes] = set()

    @classmethod
    def from_file(cls, path: Path) -> UserDirectory:
        """One JSON object per line (``user_id``, ``role``, ``token_hash``, ``printed_name``);
        blank lines and lines starting with ``#`` are skipped. The file must be open to its
        owner only (a token hash is still a secret worth guarding)."""
        try:
            exposed = open_to_others(path)
        except OSError as exc:
            raise ValueError(f"users file {path}: {exc.strerror or exc}") from None
        if exposed:
            raise ValueError(f"users file {exposed}")
        users, lines = [], []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            users.append(_parse_line(path, number, line))
            lines.append(number)
        if not users:
            raise ValueError(f"users file {path} holds no user (one JSON object per line)")
        return cls(users, lines, source=f"users file {path}")

    @classmethod
    def from_env(cls, *, demo: bool = False) -> UserDirectory:
        """The users file named by ``TRIALOPS_USERS_FILE``, or the demo users when asked for;
        never the demo users by default."""
        path = os.environ.get(USERS_FILE_ENV)
        if demo and path:
            raise ValueError(f"--demo and {USERS_FILE_ENV} are both given: the demo tokens or "
                             "the users file, not both")
        if demo:
            return cls.demo()
        if not path:
            raise ValueError(
                f"no users: set {USERS_FILE_ENV} to a users file (lines from 'trialops users "
                "hash-token'), or pass --demo to accept the well-known demo-<role> tokens"
            )
        return cls.from_file(Path(path))

    @classmethod
    def seeds_from_env(cls, trial_ids: Iterable[str], *,
                       demo: bool = False) -> dict[str, UserDirectory]:
        """Per trial, the users its first start records: ``from_env``'s for every trial, or,
        when ``TRIALOPS_USERS_FILE`` names a folder, the file ``<trial id>.users`` there for
        each (decision 66). A trial without its file, or a file of a trial the deployment
        does not run, is refused, naming the file."""
        path = os.environ.get(USERS_FILE_ENV)
        if demo or not path or not Path(path).is_dir():
            one = cls.from_env(demo=demo)
            return {trial_id: one for trial_id in trial_ids}
        folder = Path(path)
        wanted = list(trial_ids)
        files = {trial_id: folder / f"{trial_id}{USERS_FILE_SUFFIX}" for trial_id in wanted}
        if missing := sorted(str(f) for f in files.values() if not f.is_file()):
            raise ValueError(
                f"{USERS_FILE_ENV}: {folder} is a folder of users files, one per trial "
                f"('<trial id>{USERS_FILE_SUFFIX}'), and lacks {', '.join(missing)}")
        strays = sorted(f.name for f in folder.glob(f"*{USERS_FILE_SUFFIX}")
                        if f.name[: -len(USERS_FILE_SUFFIX)] not in files)
        if strays:
            raise ValueError(
                f"{USERS_FILE_ENV}: {folder} holds users files of trials this deployment does "
                f"not run: {', '.join(strays)} (it runs {', '.join(wanted)})")
        return {trial_id: cls.from_file(file) for trial_id, file in files.items()}

    @classmethod
    def demo(cls) -> UserDirectory:
        """One user per role, token ``demo-<role>``: for the demo and tests, never production."""
        global _DEMO
        if _DEMO is None:
            _DEMO = cls(
                [
                    User(
                        user_id=f"demo-{role.replace('_', '-')}",
                        role=role,
                        token_hash=demo_token_hash(role),
                        printed_name=f"Demo {role.replace('_', ' ').title()}",
                    )
                    for role in ROLES
                ],
                source="demo users",
            )
        return _DEMO

    @property
    def users(self) -> tuple[User, ...]:
        return tuple(self._users)

    @property
    def source(self) -> str:
        return self._source

    def authenticate(self, token: str) -> Actor | None:
        user = self.user_for(token)
        return None if user is None else Actor(user_id=user.user_id, role=user.role)

    def user_for(self, token: str) -> User | None:
        seen = hmac.new(self._cache_key, token.encode(), hashlib.sha256).digest()
        if seen in self._known:
            return self._users[self._known[seen]]
        if seen in self._misses:
            return None
        # Every hash is checked, so a token two lines accept is found, not the first one used.
        derived: dict[tuple[str, ...], bytes] = {}
        matches = [i for i, user in enumerate(self._users)
                   if token_matches(token, user.token_hash, derived)]
        if len(matches) == 1:
            self._known[seen] = matches[0]
            return self._users[matches[0]]
        if len(matches) > 1:
            log.error("%s: one token is accepted by lines %s; it authenticates nobody",
                      self._source, ", ".join(str(self._lines[i]) for i in matches))
        if len(self._misses) >= _MISSES_KEPT:
            self._misses.clear()
        self._misses.add(seen)
        return None


_DEMO: UserDirectory | None = None

DEMO_SALT = "a4b8af6dc07e3cd0933b0a3766b708ff"
"""The demo users' one salt, the first 16 bytes of SHA-256("trialops demo users"): their tokens
are public, so their hashes protect nothing; kept here, they cost no scrypt at each start, and
one salt lets a token be checked against all of them with one scrypt (``token_matches``)."""
_DEMO_KEYS = {
    "site_coordinator": "a6b273ff72ba4dd8d2fa4d0743cf0b040971d54473a0bdb2fb4d903aa060425b",
    "investigator": "a011e33de86f7e48e9a6ce669831b86f40a1f130f30720e1e928b1e25b72120a",
    "manufacturing_qa": "e8690953b7cd6453ff35f53eef1d858d0f04162ca79aae93d6e6a7a6bd42e43c",
    "safety_officer": "b5c15f490e6851bc0ab264162b9686e1a4956ed8d89e676cfca9fc4b2a00b172",
    "sponsor": "6489397fd5f6743553f6b89c55ca75b6f63e7e66d141b1d4173722b9ddd89cf3",
    "auditor": "5153d04e188628be98ec591183260a44af2d32852a7f803db47c16de200b695e",
    "administrator": "7f563bd8aa8ebc454a753cc48576ef9935ebc5ab5f2ed7e925637aa5f37251fb",
    "notifier": "95b2210f328ee6f29f84811bb9990d450ced0b41f233d3b71399f019e97a0728",
}


def demo_token_hash(role: str) -> str:
    """The hash of the token ``demo-<role>`` (tests/unit/test_auth.py derives each again)."""
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${DEMO_SALT}${_DEMO_KEYS[role]}"


class LiveUsers:
    """The users of the access log as they are now: ``source()`` returns the access state
    (``services.access.decider.AccessState``, a new object after each change), and the directory
    is rebuilt when it changes. Until the log holds a user, ``seed`` (the users file or the demo
    users) answers: it is what the first start records."""

    def __init__(self, source, seed: UserDirectory | None = None):
        self._source = source
        self._seed = seed
        self._seen: object = None
        self._directory: UserDirectory | None = None

    def current(self) -> UserDirectory | None:
        state = self._source()
        if state is not self._seen:
            users = [
                User(user_id=u.user_id, role=u.role, token_hash=u.token_hash,
                     printed_name=u.printed_name)
                for u in state.values()
                if u.role is not None
            ]
            self._directory = UserDirectory(users, source="access log") if state else None
            self._seen = state
        return self._directory if self._directory is not None else self._seed

    def authenticate(self, token: str) -> Actor | None:
        directory = self.current()
        return None if directory is None else directory.authenticate(token)

    def user_for(self, token: str) -> User | None:
        directory = self.current()
        return None if directory is None else directory.user_for(token)

    def seed_users(self) -> list[User]:
        return [] if self._seed is None else list(self._seed.users)


def _parse_line(path: Path, number: int, line: str) -> User:
    where = f"users file {path} line {number}"
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ValueError(f"{where}: not a JSON object on one line") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: not a JSON object on one line")
    if "token_sha256" in entry:
        raise ValueError(f"{where}: token_sha256 (unsalted) is no longer accepted; write a "
                         "token_hash with 'trialops users hash-token'")
    try:
        return User.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "(line)"
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {field}: {message}") from None


def seeds_per_trial(
    users: UserDirectory | Mapping[str, UserDirectory], trial_ids: Iterable[str]
) -> dict[str, UserDirectory]:
    """The users each trial's access log starts from (decision 66): one directory for every
    trial, or one per trial. A trial without one is refused, naming it: the services and the
    worker read the same seeds and must agree."""
    wanted = list(trial_ids)
    seeds = ({trial_id: users for trial_id in wanted} if isinstance(users, UserDirectory)
             else {trial_id: users[trial_id] for trial_id in wanted if trial_id in users})
    if missing := sorted(set(wanted) - set(seeds)):
        raise ValueError(f"no users to seed the access log of {', '.join(missing)}")
    return seeds
