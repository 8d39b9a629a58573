"""A users file per trial (decision 66): with ``TRIALOPS_USERS_FILE`` naming a folder, each
trial's first start records the users of ``<trial id>.users`` there, so an investigator of one
trial is nobody in another from the first start on, not only once an administrator has
removed them. A file, or the demo users, still seeds every trial."""

from __future__ import annotations

import pytest

from events.envelope import Actor
from infra.settings import Settings
from services.app import build_app
from services.auth import User, UserDirectory, hash_token
from trial.config import load_trial

FIRST = load_trial()
SECOND = FIRST.model_copy(update={"trial_id": "NCT00000001"})
TRIALS = {FIRST.trial_id: FIRST, SECOND.trial_id: SECOND}


def users_line(user_id: str, role: str, token: str) -> str:
    return User(user_id=user_id, role=role, token_hash=hash_token(token)).model_dump_json(
        exclude_none=True)


def write(path, *lines: str, mode: int = 0o600):
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(mode)
    return path


@pytest.fixture
def folder(tmp_path, monkeypatch):
    write(tmp_path / f"{FIRST.trial_id}.users",
          users_line("dr-ortega", "investigator", "token-ortega-first"))
    write(tmp_path / f"{SECOND.trial_id}.users",
          users_line("dr-lind", "investigator", "token-lind-second"),
          users_line("aud-kim", "auditor", "token-kim-second"))
    monkeypatch.setenv("TRIALOPS_USERS_FILE", str(tmp_path))
    return tmp_path


def test_a_folder_of_users_files_seeds_each_trial_with_its_own_users(folder):
    seeds = UserDirectory.seeds_from_env(TRIALS)
    first, second = seeds[FIRST.trial_id], seeds[SECOND.trial_id]
    assert first.authenticate("token-ortega-first") == Actor(user_id="dr-ortega",
                                                             role="investigator")
    assert second.authenticate("token-ortega-first") is None
    assert second.authenticate("token-kim-second") == Actor(user_id="aud-kim", role="auditor")
    assert first.authenticate("token-kim-second") is None


def test_a_trial_without_its_users_file_is_refused_naming_the_file(folder):
    (folder / f"{SECOND.trial_id}.users").unlink()
    with pytest.raises(ValueError, match=rf"lacks .*{SECOND.trial_id}\.users"):
        UserDirectory.seeds_from_env(TRIALS)


def test_a_users_file_of_a_trial_not_run_is_refused(folder):
    write(folder / "NCT99999999.users", users_line("x", "auditor", "token-x-somewhere"))
    with pytest.raises(ValueError, match=r"not run: NCT99999999\.users"):
        UserDirectory.seeds_from_env(TRIALS)


def test_each_trials_file_is_held_to_the_users_files_rules(folder):
    write(folder / f"{FIRST.trial_id}.users", users_line("a", "auditor", "token-a"),
          mode=0o644)
    with pytest.raises(ValueError, match=f"users file .*{FIRST.trial_id}.users"):
        UserDirectory.seeds_from_env(TRIALS)


def test_one_users_file_or_the_demo_seeds_every_trial(tmp_path, monkeypatch):
    path = write(tmp_path / "users.jsonl", users_line("aud-kim", "auditor", "token-kim"))
    monkeypatch.setenv("TRIALOPS_USERS_FILE", str(path))
    seeds = UserDirectory.seeds_from_env(TRIALS)
    assert seeds[FIRST.trial_id] is seeds[SECOND.trial_id]
    assert seeds[SECOND.trial_id].authenticate("token-kim") is not None
    monkeypatch.delenv("TRIALOPS_USERS_FILE")
    demo = UserDirectory.seeds_from_env(TRIALS, demo=True)
    assert set(demo.values()) == {UserDirectory.demo()}


def test_the_services_refuse_a_trial_without_users_to_seed_it():
    settings = Settings(bootstrap_servers="127.0.0.1:9")
    with pytest.raises(ValueError, match=f"no users to seed the access log of {SECOND.trial_id}"):
        build_app(settings, {FIRST.trial_id: UserDirectory.demo()}, TRIALS)


def test_the_worker_refuses_a_trial_without_users_to_seed_it_as_the_services_do(tmp_path):
    from infra.keys import init_keys
    from projections.worker import create_app

    keyring, writers = init_keys(tmp_path / "keys")
    settings = Settings(bootstrap_servers="127.0.0.1:9", namespace="tseeds",
                        keyring=str(keyring), writer_keys=str(writers))
    with pytest.raises(ValueError, match=f"no users to seed the access log of {SECOND.trial_id}"):
        create_app(settings, users={FIRST.trial_id: UserDirectory.demo()}, trials=TRIALS,
                   data_dir=tmp_path / "data", partitions=4)
