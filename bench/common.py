"""What every benchmark needs: a broker, a namespace of its own, and N valid enrollment events.

Broker: the one at ``KAFKA_BOOTSTRAP_SERVERS`` when that is set, else the project's own KRaft
broker (``LocalKafka(name="bench")``), started for the run and stopped at its end.

Events: sealed, hash-chained envelopes written straight onto the enrollment topic (like
tests/integration/raw_events.py, but pipelined): ``cohorts`` cohorts opened (capacity
``capacity``), then subjects MSK-000001, MSK-000002, ... each ``SubjectRegistered`` then
``SubjectEnrolled`` into its round-robin cohort when that cohort has a free slot, else
``SubjectWaitlisted`` on the trial-wide waiting list. With a waiting-list cap K (the
benchmarks' default is 50), whenever more than K subjects wait the longest-waiting one withdraws
(``SubjectWithdrawn``), so the cohort-occupancy state stops growing with N; without it (K = 0)
the waiting list, and that projection's one per-trial state, grow with every subject. Beyond
999999 subjects the codes go on as B01-000000, B01-000001, ... (subject codes must match
``^[A-Z0-9]{2,10}-[0-9]{3,6}$``).
"""

from __future__ import annotations

import builtins
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from queue import Empty

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from bench.keys import enrollment_signer
from events.enrollment import (
    CohortOpened,
    Route,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.envelope import GENESIS_HASH, Actor, Envelope, seal, to_bytes
from events.registry import EventPayload
from events.topics import event_topic
from infra.settings import Settings
from infra.topic_admin import configured_replication_factor, ensure_topics

ACTOR = Actor(user_id="bench-writer", role="investigator")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TRIAL_ID = "NCT06623396"
ROUTES: tuple[Route, Route] = ("intraperitoneal", "intravenous")

_T0 = time.monotonic()


def say(message: str) -> None:
    """A progress line, stamped with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True)


# ---------------------------------------------------------------- process, broker, namespace


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what the run started."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def run(main: Callable[[], None]) -> None:
    stop_on_sigterm()
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; everything this run started has been stopped", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """Bootstrap servers of the broker to use; a broker started here is stopped on exit."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        say(f"using the Kafka at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
        yield bootstrap
        return
    from broker.cluster import LocalKafka

    say("KAFKA_BOOTSTRAP_SERVERS not set: starting the project's own broker 'bench'")
    broker = LocalKafka(name="bench")
    # The benchmark's own broker is throwaway: start it on new storage every run.
    for path, size in broker.wipe():
        say(f"deleted the previous run's {path} ({size / 1e6:.1f} MB)")
    try:
        yield broker.start()
    finally:
        broker.stop()


def fresh_settings(bootstrap_servers: str) -> Settings:
    """Settings with a namespace no other run uses; its event topics are created."""
    enrollment_signer()
    settings = Settings(
        bootstrap_servers=bootstrap_servers,
        namespace=f"bench-{uuid.uuid4().hex[:8]}",
        trial_id=TRIAL_ID,
    )
    ensure_topics(settings.bootstrap_servers, settings.namespace, configured_replication_factor())
    return settings


def drop_namespace(settings: Settings) -> None:
    """Delete every topic of the run's namespace (event topics, the worker's changelogs and
    dead-letter topic): a 1M-event run leaves hundreds of MB on a shared broker otherwise."""
    ns = settings.namespace
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, client_id="trialops-bench"
        )
    except Exception as exc:  # the broker may be gone already (Ctrl-C during start-up)
        say(f"could not delete the topics of {ns}: {exc!r}")
        return
    try:
        mine = [t for t in admin.list_topics() if t.startswith((f"{ns}.", f"{ns}-"))]
        if mine:
            admin.delete_topics(mine)
            say(f"deleted {len(mine)} topics of namespace {ns}")
    except Exception as exc:
        say(f"could not delete the topics of {ns}: {exc!r}")
    finally:
        admin.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def end_offset(settings: Settings, context: str = "enrollment", partition: int = 0) -> int:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="trialops-bench",
        isolation_level="read_committed",
    )
    try:
        tp = TopicPartition(event_topic(context, settings.namespace), partition)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def projection_catalog() -> dict:
    """Every projection the worker serves and replay rebuilds, by name (``PROJECTIONS`` in
    older trees, ``build()`` for the configured trial in newer ones)."""
    from projections import catalog

    if hasattr(catalog, "PROJECTIONS"):
        return dict(catalog.PROJECTIONS)
    return dict(catalog.build())


# ---------------------------------------------------------------- the workload


def subject_code(number: int) -> str:
    """1 -> MSK-000001, ..., 999999 -> MSK-999999, 1000000 -> B01-000000, ..."""
    if number < 1_000_000:
        return f"MSK-{number:06d}"
    return f"B{number // 1_000_000:02d}-{number % 1_000_000:06d}"


def cohort_code(number: int) -> str:
    return f"C{number:03d}"


@dataclass
class Workload:
    """N events of one trial's enrollment; counts what it generated."""

    trial_id: str = TRIAL_ID
    cohorts: int = 100
    capacity: int = 18
    waitlist_cap: int = 0
    """0: the waiting list grows without end; K > 0: once K subjects wait, the longest-waiting
    one withdraws (``SubjectWithdrawn``) each time another joins, so the list stays at K."""
    signed_batch: int = 1
    """Events signed together, as one transaction of a writer's group commit is (decision 70);
    1: each event signed alone, as a writer of lone commands signs them."""
    events: int = 0
    subjects: int = 0
    enrolled: int = 0
    waitlisted: int = 0
    withdrawn: int = 0

    def envelopes(self, n: int) -> Iterator[Envelope]:
        sealed = self._sealed(n)
        if self.signed_batch <= 1:
            yield from sealed
            return
        signer = enrollment_signer()
        while group := list(islice(sealed, self.signed_batch)):
            yield from signer.sign_batch(group)

    def _sealed(self, n: int) -> Iterator[Envelope]:
        for number in range(1, self.cohorts + 1):
            if self.events >= n:
                return
            level = (number - 1) % 5 + 1
            opened = CohortOpened(
                cohort_id=cohort_code(number),
                dose_level=f"DL{level}",
                dose_cells_per_kg=level * 1e6,
                route=ROUTES[number % 2],
                capacity=self.capacity,
                recommendation_id=f"REC-{number:04d}",
            )
            yield self._seal(f"cohort-{cohort_code(number)}", 1, GENESIS_HASH, opened)
        taken = [0] * self.cohorts
        waiting: deque[tuple[str, str]] = deque()  # (subject, hash of its last event)
        while self.events < n:
            if self.waitlist_cap and len(waiting) > self.waitlist_cap:
                leaving, head = waiting.popleft()
                self.withdrawn += 1
                yield self._seal(
                    f"subject-{leaving}",
                    3,
                    head,
                    SubjectWithdrawn(subject_id=leaving, reason_code="left-waiting-list"),
                    reason="left the waiting list (benchmark workload)",
                )
                continue
            self.subjects += 1
            subject = subject_code(self.subjects)
            stream = f"subject-{subject}"
            registered = self._seal(
                stream, 1, GENESIS_HASH, SubjectRegistered(subject_id=subject, site_id="MSK")
            )
            yield registered
            if self.events >= n:
                return
            index = (self.subjects - 1) % self.cohorts
            cohort = cohort_code(index + 1)
            placed: EventPayload
            if taken[index] < self.capacity:
                taken[index] += 1
                self.enrolled += 1
                placed = SubjectEnrolled(subject_id=subject, cohort_id=cohort, slot=taken[index])
            else:
                self.waitlisted += 1
                # Its place on the trial-wide list: everyone still waiting, plus itself.
                position = len(waiting) + 1 if self.waitlist_cap else self.waitlisted
                placed = SubjectWaitlisted(subject_id=subject, cohort_id=cohort, position=position)
            last = self._seal(stream, 2, registered.hash, placed)
            if self.waitlist_cap and isinstance(placed, SubjectWaitlisted):
                waiting.append((subject, last.hash))
            yield last

    def _seal(
        self,
        stream_id: str,
        seq: int,
        prev_hash: str,
        event: EventPayload,
        reason: str | None = None,
    ) -> Envelope:
        moment = START + timedelta(seconds=self.events)
        self.events += 1
        envelope = seal(
            event_id=uuid.uuid4(),
            event_type=event.event_type,
            schema_version=event.schema_version,
            trial_id=self.trial_id,
            stream_id=stream_id,
            stream_seq=seq,
            occurred_at=moment,
            recorded_at=moment,
            actor=ACTOR,
            reason=reason,
            correlation_id=uuid.uuid4(),
            causation_id=None,
            prev_hash=prev_hash,
            payload=event.model_dump(mode="json"),
        )
        return envelope if self.signed_batch > 1 else enrollment_signer().sign(envelope)

    @property
    def sample_cohort(self) -> str:
        return cohort_code(max(1, self.cohorts // 2))

    @property
    def sample_subject(self) -> str:
        return subject_code(max(1, self.subjects // 2))

    def describe(self) -> str:
        return (
            f"{self.subjects:,} subjects "
            f"({self.enrolled:,} enrolled, {self.waitlisted:,} waitlisted"
            + (f", {self.withdrawn:,} withdrew from the waiting list" if self.withdrawn else "")
            + ")"
        )


@dataclass
class Produced:
    topic: str
    workload: Workload
    events: int = 0
    bytes: int = 0
    generate_seconds: float = 0.0
    """Time the generator process spent building envelopes (pydantic + sha256)."""
    seconds: float = 0.0
    """Wall time from the first event generated to the producer's final flush."""
    end_offset: int = 0
    samples: list[builtins.bytes] = field(default_factory=list)

    @property
    def generate_rate(self) -> float:
        return self.events / max(self.generate_seconds, 1e-9)

    @property
    def rate(self) -> float:
        return self.events / max(self.seconds, 1e-9)


_CHUNK = 2000


def _generate(queue, n: int, workload: Workload) -> None:
    """In a child process: put chunks of ``(key, value)`` on ``queue``, then the workload
    (with its counts) and the seconds spent generating; an exception's text on failure."""
    try:
        envelopes = workload.envelopes(n)
        busy = 0.0
        while True:
            t = time.perf_counter()
            chunk = [(e.stream_id.encode(), to_bytes(e)) for e in islice(envelopes, _CHUNK)]
            busy += time.perf_counter() - t
            if not chunk:
                break
            queue.put(chunk)
        queue.put(("done", workload, busy))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        queue.put(("failed", f"{type(exc).__name__}: {exc}"))


def produce(
    settings: Settings,
    n: int,
    *,
    cohorts: int = 100,
    capacity: int = 18,
    waitlist_cap: int = 0,
    signed_batch: int = 1,
    samples: int = 5000,
    trial_id: str | None = None,
    partition: int | None = None,
) -> Produced:
    """Generate and write ``n`` events onto the (fresh) enrollment topic of ``settings``.

    A child process generates and seals the events while this one sends them with kafka-python
    (``acks="all"``, ``linger_ms=20``, 512 KiB batches, no compression): on two cores the two
    costs overlap instead of adding up, and each is measured on its own.

    The events are of ``trial_id`` (default the settings' trial). With ``partition`` they all go
    to that partition of a topic of several, as the services put every event of a trial in the
    trial's partition (decision 60); the keys stay the stream ids, which Kafka's partitioner
    would spread over the partitions."""
    workload = Workload(
        trial_id=trial_id or settings.trial_id,
        cohorts=cohorts,
        capacity=capacity,
        waitlist_cap=waitlist_cap,
        signed_batch=signed_batch,
    )
    topic = event_topic("enrollment", settings.namespace)
    result = Produced(topic=topic, workload=workload)
    failures: list[BaseException] = []
    context = multiprocessing.get_context("spawn")
    queue = context.Queue(maxsize=64)
    generator = context.Process(target=_generate, args=(queue, n, workload), daemon=True)
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="trialops-bench-writer",
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        compression_type=None,
    )
    every_sample = max(1, n // samples)
    report_every = n // 10 if n >= 100_000 else 0
    next_report = report_every
    started = time.perf_counter()
    generator.start()
    try:
        while True:
            try:
                item = queue.get(timeout=1.0)
            except Empty:
                if not generator.is_alive():
                    raise RuntimeError(
                        f"the event generator exited with code {generator.exitcode}"
                    ) from None
                continue
            if isinstance(item, tuple):
                if item[0] == "failed":
                    raise RuntimeError(f"generating events failed: {item[1]}")
                _, result.workload, result.generate_seconds = item
                break
            for key, value in item:
                if result.events % every_sample == 0 and len(result.samples) < samples:
                    result.samples.append(value)
                sent = producer.send(topic, key=key, value=value, partition=partition)
                sent.add_errback(failures.append)
                result.events += 1
                result.bytes += len(value)
            if failures:
                raise RuntimeError(f"producing failed: {failures[0]!r}")
            if report_every and result.events >= next_report:
                elapsed = time.perf_counter() - started
                say(
                    f"  produced {result.events:,}/{n:,} ({100 * result.events // n}%), "
                    f"{result.events / elapsed:,.0f} events/s"
                )
                next_report += report_every
        producer.flush()
        result.seconds = time.perf_counter() - started
    finally:
        producer.close()
        if generator.is_alive():
            generator.terminate()
        generator.join(10)
        queue.close()
    if failures:
        raise RuntimeError(f"producing failed: {failures[0]!r}")
    result.end_offset = end_offset(settings, partition=partition or 0)
    if result.end_offset != n or result.events != n:
        where = topic if partition is None else f"{topic}:{partition}"
        raise RuntimeError(
            f"{where}: {result.events} events sent, end offset {result.end_offset}, expected {n}"
        )
    return result


@dataclass(frozen=True)
class WorkloadOptions:
    cohorts: int = 100
    capacity: int = 18
    waitlist_cap: int = 50
    signed_batch: int = 1

    @classmethod
    def add_arguments(cls, parser) -> None:
        group = parser.add_argument_group("workload")
        group.add_argument(
            "--cohorts", type=int, default=100, help="cohorts opened first (default 100)"
        )
        group.add_argument(
            "--capacity", type=int, default=18, help="slots per cohort, 1..18 (default 18)"
        )
        group.add_argument(
            "--waitlist-cap",
            type=int,
            default=50,
            metavar="K",
            help="once more than K subjects wait, the longest-waiting one withdraws "
            "(SubjectWithdrawn), so the cohort-occupancy state stops growing with N "
            "(default 50); 0: everyone without a slot stays on the waiting list, which then "
            "grows with N (the Faust worker crashes near 44k events: see bench/README.md)",
        )
        group.add_argument(
            "--signed-batch",
            type=int,
            default=1,
            metavar="B",
            help="events signed together, as a writer signs one transaction of its group "
            "commit (decision 70); 1: each event alone, as lone commands are (default 1)",
        )

    @classmethod
    def from_args(cls, args) -> WorkloadOptions:
        if not 1 <= args.capacity <= 18:
            raise SystemExit("--capacity must be within 1..18 (the CohortOpened schema)")
        if args.cohorts < 1 or args.waitlist_cap < 0 or args.signed_batch < 1:
            raise SystemExit("--cohorts and --signed-batch must be >= 1, --waitlist-cap >= 0")
        return cls(args.cohorts, args.capacity, args.waitlist_cap, args.signed_batch)

    def describe(self) -> str:
        cap = (
            f"waiting list capped at {self.waitlist_cap}"
            if self.waitlist_cap
            else "unbounded waiting list"
        )
        signed = f"signed {self.signed_batch} events at a time" if self.signed_batch > 1 else \
            "each event signed alone"
        return f"{self.cohorts} cohorts x {self.capacity} slots, {cap}, {signed}"


def produce_and_say(
    settings: Settings,
    n: int,
    options: WorkloadOptions,
    trial_id: str | None = None,
    partition: int | None = None,
) -> Produced:
    """``produce`` with progress lines; ``trial_id`` and ``partition`` as ``produce`` takes
    them (the settings' trial, the partitioner's choice, when absent)."""
    where = f" (trial {trial_id}, partition {partition})" if partition is not None else ""
    say(f"producing {n:,} enrollment events into namespace {settings.namespace}{where} ...")
    produced = produce(
        settings,
        n,
        cohorts=options.cohorts,
        capacity=options.capacity,
        waitlist_cap=options.waitlist_cap,
        signed_batch=options.signed_batch,
        trial_id=trial_id,
        partition=partition,
    )
    say(
        f"  done: {produced.events:,} events, {produced.bytes / 1e6:,.1f} MB in "
        f"{produced.seconds:.1f}s ({produced.rate:,.0f} events/s); generation alone "
        f"{produced.generate_rate:,.0f} events/s; {produced.workload.describe()}"
    )
    return produced


# ---------------------------------------------------------------- progress and output


class Ticker:
    """Prints ``count()`` every ``every`` seconds from a thread while a long step runs."""

    def __init__(self, label: str, count: Callable[[], int], total: int, every: float = 5.0):
        self.label, self.count, self.total, self.every = label, count, total, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            done = self.count()
            elapsed = time.monotonic() - self._started
            share = f" ({100 * done // self.total}%)" if self.total else ""
            say(f"  {self.label}: {done:,}{share} read, {done / elapsed:,.0f} events/s")

    def __enter__(self) -> Ticker:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"sizes must be positive integers separated by commas, not {text!r}")
    return sizes


def rate(events: float, seconds: float) -> str:
    return f"{events / seconds:,.0f} events/s" if seconds > 0 else "n/a"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def print_block(title: str, lines: list[str]) -> None:
    width = min(100, max([len(title) + 8, *(len(line) for line in lines)]))
    print("\n" + "=" * width)
    print(f"== {title}")
    print("=" * width)
    for line in lines:
        print(line)
    print("=" * width, flush=True)
