"""Where a trial's events are: Kafka's default partitioner for the trial id (decision 60), and
the deployment's folder of trial files."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import orjson
import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from events.topics import murmur2, partition_of
from trial.config import SHIPPED, TrialConfigError, load_trials, trial_partitions

# Apache Kafka's own test of Utils.murmur2 (clients/src/test/java/org/apache/kafka/common/
# utils/UtilsTest.java, testMurmur2), signed 32-bit results as Java gives them.
KAFKA_UTILS_TEST = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST.items())
def test_the_hash_is_kafkas(key, expected):
    assert murmur2(key.encode()) == expected & 0xFFFFFFFF


def test_the_hash_agrees_with_kafka_pythons_port_on_any_bytes():
    rng = random.Random(60)
    for _ in range(3000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 37)))
        assert murmur2(data) == kafka_python_murmur2(data) & 0xFFFFFFFF


def test_a_trials_partition_is_the_default_partitioners_for_its_id():
    # Kafka's DefaultPartitioner: toPositive(murmur2(key)) % numPartitions
    for n in (1, 2, 3, 8, 12):
        expected = (kafka_python_murmur2(b"NCT06623396") & 0x7FFFFFFF) % n
        assert partition_of("NCT06623396", n) == expected
    with pytest.raises(ValueError):
        partition_of("NCT06623396", 0)


def test_two_trials_on_one_partition_are_refused_naming_both():
    with pytest.raises(TrialConfigError, match=r"NCT04577326 and NCT06623396.*partition 0 of 1"):
        trial_partitions(["NCT06623396", "NCT04577326"], 1)
    placed = trial_partitions(["NCT06623396"], 1)
    assert placed == {"NCT06623396": 0}


def write_trial(folder: Path, name: str, trial_id: str) -> None:
    data = orjson.loads(SHIPPED.read_bytes())
    data["trial_id"] = trial_id
    (folder / name).write_bytes(orjson.dumps(data))


def test_a_folder_of_trial_files_gives_each_trial_by_id(tmp_path):
    write_trial(tmp_path, "b.json", "NCT00000002")
    write_trial(tmp_path, "a.json", "NCT00000001")
    assert list(load_trials(tmp_path)) == ["NCT00000001", "NCT00000002"]


def test_a_folder_with_one_trial_twice_or_none_is_refused(tmp_path):
    with pytest.raises(TrialConfigError, match="holds no trial file"):
        load_trials(tmp_path)
    shutil.copy(SHIPPED, tmp_path / "one.json")
    shutil.copy(SHIPPED, tmp_path / "two.json")
    with pytest.raises(TrialConfigError, match=r"one\.json and .*two\.json are both trial"):
        load_trials(tmp_path)


def test_without_a_folder_the_deployment_runs_the_one_trial_file(monkeypatch):
    monkeypatch.delenv("TRIALOPS_TRIALS", raising=False)
    assert list(load_trials()) == ["NCT06623396"]
