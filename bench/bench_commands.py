"""Commands per second through the command API (issue 12): 1, 16 and 64 concurrent clients
against raw transactional produce of the same events with kafka-python, in the same run.

The services run as ``trialops serve --demo`` does, in a child process on a fresh namespace.
Each client posts ``RegisterSubject`` commands (``POST /enrollment/subjects``, a new subject
each, so none is refused) one after another and times each answer; the clients run together.
A command is answered 201 only once its events are committed on the enrollment topic.

The raw figures write the same kind of event (``SubjectRegistered``, sealed, hash-chained and
signed as the service seals it) to the enrollment topic of a second fresh namespace with one
``KafkaProducer`` and one transaction per event, back to back: once with the client's defaults
and once with ``retry_backoff_ms=10`` (the setting the services' writers use, decision 39).
That is what one transaction per command would cost without the service around it. The
ratio that matters is commands/s against the first; the lone client's latency is the figure
that must not get worse.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from kafka import KafkaProducer

from bench.common import (
    ACTOR,
    START,
    TRIAL_ID,
    drop_namespace,
    free_port,
    fresh_settings,
    kafka_broker,
    percentile,
    print_block,
    ratio,
    run,
    say,
)
from bench.keys import enrollment_signer
from clients.http import wait_until_up
from events.enrollment import SubjectRegistered
from events.envelope import GENESIS_HASH, seal, to_bytes
from events.topics import event_topic
from infra.settings import Settings

TOKEN = "demo-site_coordinator"


@dataclass
class Measured:
    label: str
    commands: int
    seconds: float
    latencies: list[float]
    refused: int = 0
    per_batch: float = 0.0

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0

    def line(self, raw: float) -> str:
        lat = self.latencies
        p50 = percentile(lat, 50) * 1000 if lat else float("nan")
        p99 = percentile(lat, 99) * 1000 if lat else float("nan")
        refused = f", {self.refused} not 201" if self.refused else ""
        batch = f", {self.per_batch:.1f} a transaction" if self.per_batch else ""
        return (f"{self.label:<34} {self.rate:8,.1f} commands/s   p50 {p50:6.1f} ms   "
                f"p99 {p99:6.1f} ms   ratio to raw {ratio(self.rate, raw)}{refused}{batch}")


def _batches(url: str) -> tuple[float, float]:
    """The enrollment writer's commands appended and transactions so far, from ``/metrics``
    (``trialops_batch_commands``): a step's difference is its commands per transaction, the
    events one writer's signature covers (decision 70; one event per ``RegisterSubject``)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in found:
            if line.startswith(f"trialops_batch_commands_{part}{{") and "enrollment" in line:
                found[part] += float(line.rsplit(" ", 1)[1])
    return found["sum"], found["count"]


async def _clients(url: str, clients: int, per_client: int, tag: str) -> Measured:
    latencies: list[float] = []
    refused = [0]

    async def client(session: aiohttp.ClientSession, number: int) -> None:
        for i in range(per_client):
            body = {"subject_id": f"{tag}{number:02d}-{i:06d}", "site_id": "MSK"}
            began = time.perf_counter()
            async with session.post(f"{url}/enrollment/subjects", json=body,
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                await response.read()
                if response.status != 201:
                    refused[0] += 1
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session, n) for n in range(clients)))
        seconds = time.perf_counter() - began
    return Measured(f"service, {clients} concurrent client(s)", clients * per_client, seconds,
                    latencies, refused[0])


def _raw(settings: Settings, count: int, **producer_settings) -> Measured:
    """``count`` SubjectRegistered events, one transaction each, back to back."""
    signer = enrollment_signer()
    envelopes = [
        to_bytes(signer.sign(seal(
            event_id=uuid.uuid4(), event_type="SubjectRegistered", schema_version=1,
            trial_id=TRIAL_ID, stream_id=f"subject-RAW-{n:06d}", stream_seq=1,
            occurred_at=START, recorded_at=START, actor=ACTOR, reason=None,
            correlation_id=uuid.uuid4(), causation_id=None, prev_hash=GENESIS_HASH,
            payload=SubjectRegistered(subject_id=f"RAW-{n:06d}", site_id="MSK").model_dump(
                mode="json"),
        )))
        for n in range(count)
    ]
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        transactional_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        enable_idempotence=True, acks="all", linger_ms=0, **producer_settings,
    )
    topic = event_topic("enrollment", settings.namespace)
    try:
        producer.init_transactions()
        latencies = []
        began = time.perf_counter()
        for n, value in enumerate(envelopes):
            one = time.perf_counter()
            producer.begin_transaction()
            producer.send(topic, key=f"subject-RAW-{n:06d}".encode(), value=value)
            producer.commit_transaction()
            latencies.append(time.perf_counter() - one)
        seconds = time.perf_counter() - began
    finally:
        producer.close(timeout=5)
    label = "raw kafka-python, 1 transaction/event" + (
        f" ({', '.join(f'{k}={v}' for k, v in producer_settings.items())})"
        if producer_settings else "")
    return Measured(label, count, seconds, latencies)


def _serve(settings: Settings, port: int, work_dir: Path) -> subprocess.Popen:
    log = open(work_dir / "services.log", "ab")  # noqa: SIM115 (lives as long as the child)
    return subprocess.Popen(
        [sys.executable, "-m", "trialops", "serve", "--demo", "--port", str(port)],
        env={**os.environ, **settings.env()}, stdout=log, stderr=subprocess.STDOUT,
        cwd=work_dir, start_new_session=True,
    )


def main() -> None:
    args = parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    with kafka_broker() as bootstrap:
        settings = fresh_settings(bootstrap)
        raw_settings = fresh_settings(bootstrap)
        work_dir = Path(tempfile.mkdtemp(prefix="trialops-bench-commands-"))
        port = free_port()
        service = _serve(settings, port, work_dir)
        results: list[Measured] = []
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(f"{url}/ready", 120, "the command services")
            say(f"services ready at {url} (namespace {settings.namespace})")
            asyncio.run(_clients(url, 1, 20, "W"))  # warm-up: connections, token cache
            for number, count in enumerate(clients):
                per_client = max(1, args.commands // count) if count > 1 else args.lone
                say(f"{count} client(s), {per_client} command(s) each ...")
                before = _batches(url)
                results.append(asyncio.run(
                    _clients(url, count, per_client, f"C{number}")))
                after = _batches(url)
                batches = after[1] - before[1]
                results[-1].per_batch = (after[0] - before[0]) / batches if batches else 0.0
                say(f"  {results[-1].rate:,.1f} commands/s, "
                    f"{results[-1].per_batch:.1f} commands a transaction")
            say(f"raw kafka-python, {args.raw} transactions ...")
            raw_default = _raw(raw_settings, args.raw)
            raw_fast = _raw(raw_settings, args.raw, retry_backoff_ms=10)
        finally:
            service.terminate()
            try:
                service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.kill()
            if not args.keep_topics:
                drop_namespace(settings)
                drop_namespace(raw_settings)
        base = raw_default.rate
        print_block(
            "commands/s through the command API against raw kafka-python transactions",
            [
                f"broker {bootstrap}; {os.cpu_count()} CPU(s); services log in {work_dir}",
                raw_default.line(base),
                raw_fast.line(base),
                *(r.line(base) for r in results),
            ],
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,16,64",
                        help="concurrent clients, one run each (default 1,16,64)")
    parser.add_argument("--commands", type=int, default=3200,
                        help="commands per run with several clients, split among them")
    parser.add_argument("--lone", type=int, default=200, help="commands of the lone client")
    parser.add_argument("--raw", type=int, default=200,
                        help="raw transactions per raw measurement")
    parser.add_argument("--keep-topics", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    run(main)
