"""The Faust worker: one agent per context topic folds its events into one changelog-backed
table per projection, and the web server serves each projection as JSON.

An agent only reads each record through the reading rule every reader shares
(events/reading.py) and hands the event to ``projections.applying``, which calls the
projections' pure ``apply`` once per event whatever Kafka redelivers; events come in batches,
and each table key a batch touched is written once, at its end (decision 46). At an
unreadable record the agent of that topic halts: it sends the record to the dead-letter
topic once, reports it on ``/ready``, and goes on only once the record is quarantined, so no
projection moves past a record the services refused to move past (decision 17). The other
topics' agents go on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP

from events.keys import WriterKeyRotated
from events.reading import Halt, LogReader, Quarantine, Unreadable, Where, decode, digest
from events.registry import Recorded
from events.signing import Keyring
from events.topics import ACCESS, CONTEXTS, dead_letter_topic, event_topic
from infra.kafka_io import BrokerTimeout, load_quarantine, read_log, read_range
from infra.kafka_security import faust_credentials
from infra.keys import load_keyring
from infra.settings import Settings
from infra.topic_admin import worker_group
from projections.applying import Batch, count_dead_letter
from projections.base import of_trial
from projections.catalog import build_trials, fold_version
from projections.continuity import Missed, unseen
from projections.faust_kafka import (
    MARKERS,
    ReadCommittedTransport,
    current,
    read_by_the_worker,
    stops_the_worker,
    take_batches,
)
from projections.faust_lifecycle import PromptTableManager
from projections.faust_tables import CountedTable, InMemoryTable
from projections.live_inbox import LiveDesk, serve_inbox, serve_inboxes
from projections.metrics import applied_counter, read_past_the_consumer
from projections.notifier import start_alerts, start_trials_alerts
from projections.owner import HEARTBEAT_SECONDS, HOLDING_FILE, SESSION_TIMEOUT_SECONDS
from projections.views import (
    PositionsMoved,
    TrialReaders,
    _serve,
)
from projections.worker_status import watch_and_serve_status
from services.access.decider import EMPTY, AccessState
from services.access.decider import evolve as evolve_access
from services.auth import LiveUsers, UserDirectory, seeds_per_trial
from trial.config import TrialConfig, load_trials

log = logging.getLogger(__name__)

WORKER = "worker"
"""The worker's principal on a secured broker: reads the event topics, writes its own."""
NEW_KEY_KINDS = ("unknown-key", "bad-rotation")
"""Unreadable kinds that a keyring the deployment has extended since the worker started may
resolve: the worker reads the keyring file again before it halts."""
BROKEN_CHAIN = "broken-chain"
"""The unreadable kind that a record the consumer passed over also causes: the worker reads
the log before the record before it halts (decision 69)."""
ACCESS_REFRESH_SECONDS = 5.0
"""How often the worker reads the access log again: a revoked reader is refused within this."""
QUARANTINE_POLL_SECONDS = 2.0
"""How often a halted agent looks for the quarantine of the record it stopped at."""
BATCH_EVENTS = 1000
"""The most events an agent applies in one batch (decision 46): each key they touch is written
to its table's changelog once."""
BATCH_SECONDS = 0.02
"""How long an agent waits for more events before it applies the ones it has: a lone command's
event becomes visible at most this much later."""
CATCH_UP_LAG = BATCH_EVENTS
"""An agent this many records or more behind the end of its partition is catching up: it waits
up to ``CATCH_UP_SECONDS`` for a full batch (decision 56)."""
CATCH_UP_SECONDS = 0.5
"""The longest an agent that is catching up waits for a full batch. Its wait is not idle: the
stream fills the batch meanwhile, and a bigger batch writes each touched key once for more
events (at 20 ms, batches held 15 to 50 events while catching up)."""
PRODUCER_BUFFER_MESSAGES = 8 * BATCH_EVENTS
"""Changelog records Faust's producer may hold before the consumer waits for it to send them
(Faust's default, 100, is less than one batch's writes: the consumer then waited, message by
message, with a warning logged each time; decision 56)."""
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024 * 1024,
}
"""Each table's RocksDB (decision 46): small memtables and block cache, so the worker's memory
stays near a fixed size while its tables grow on disk (Faust's defaults are 64 MiB memtables
and a 2 GiB cache per table)."""
IN_MEMORY = frozenset({"positions", "dead-lettered", "retired-keys", "dose-escalation"})
"""Tables kept in memory: their keys are few (partitions, dose levels) and rewritten often,
which RocksDB pays for when it iterates (every old version and deleted key in its memtable).
The others (stream heads, subjects in screening, lots, adverse events) grow with the trial's
history and live on disk, where a view reads a range of keys with a seek (decision 85). A
worker keeps no standby copy of any table (see ``table_standby_replicas``): Faust's memory
store drops, when a recovery completes, the keys of every partition it does not hold
actively."""



class TrialopsApp(faust.App):
    def _new_transport(self):
        return ReadCommittedTransport(self.conf.broker_consumer, self)


def create_app(
    settings: Settings,
    *,
    trial: TrialConfig | None = None,
    web_port: int = 6066,
    web_host: str = "127.0.0.1",
    data_dir: Path = Path(".trialops"),
    store: str = "rocksdb://",
    users: UserDirectory | Mapping[str, UserDirectory],
    advertised_url: str | None = None,
    trials: dict[str, TrialConfig] | None = None,
    partitions: int = 1,
) -> TrialopsApp:
    # The deployment's trials (decision 61): each event is folded by its own trial's
    # projections into keys scoped by its trial. ``partitions``: the event topics' count, which
    # the tables' changelogs share so that they stay co-partitioned with them.
    if trials is None:
        trials = {trial.trial_id: trial} if trial is not None else load_trials()
    # The group and its changelogs carry the folds' version (decision 55): changed folds or a
    # changed trial file fold the log again into new tables.
    group = worker_group(settings.namespace, fold_version(trials))
    # The tables' local copies are rebuilt from their changelogs at every start (decision 46):
    # what a previous worker left on disk may be ahead of its changelogs, or of another log.
    shutil.rmtree(data_dir / "faust", ignore_errors=True)
    (data_dir / HOLDING_FILE).unlink(missing_ok=True)  # it holds nothing until assigned
    (data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = TrialopsApp(
        group,
        broker=[f"kafka://{hp.strip()}" for hp in settings.bootstrap_servers.split(",")],
        # On a secured broker the worker reads as "worker" (infra/kafka_security.py).
        broker_credentials=faust_credentials(WORKER),
        store=store,
        datadir=str(data_dir / "faust"),
        web_host=web_host,
        web_port=web_port,
        web_bind=web_host,
        # The URL the other workers of the group reach this one at, to ask it for the views
        # it holds (decision 58); by default the interface and port it listens on.
        canonical_url=advertised_url or f"http://{web_host}:{web_port}",
        # Faust's own views would serve every table's raw data and the cluster's layout to
        # anyone who asks, with no token: only the views below are served (decision 22).
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        producer_acks=-1,
        # A worker that dies without leaving its group holds its partitions until the session
        # times out; Faust's default of 60 s would keep the projections still for a minute
        # after a crash. Heartbeats go at least three times a session, so a few missed ones
        # are tolerated.
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_heartbeat_interval=HEARTBEAT_SECONDS,
        # No standby copies of the tables: a worker that takes partitions over reads their
        # changelogs from the start, rather than going on from a copy it kept as a standby,
        # which was found lacking what the dead holder had written (the scale-out test,
        # decision 60: Faust's memory store drops a standby's keys when a recovery completes).
        # A slower takeover, whole tables.
        table_standby_replicas=0,
        # On shutdown and rebalance Faust waits by default until every event in flight is
        # processed; an agent halted at an unreadable record never finishes its event, so a
        # halted worker took its whole stop timeout to stop. Events in flight are redelivered
        # instead, and applied once (projections/applying.py).
        stream_wait_empty=False,
        # A batch writes its changed keys together (decision 46): produce requests of up to
        # 512 KiB per changelog partition, not aiokafka's 16 KiB, carry them in fewer trips.
        producer_max_batch_size=512 * 1024,
        TableManager=PromptTableManager,
    )
    dead_letters = app.topic(
        # One dead-letter topic whatever the folds' version: what was set aside stays in view.
        dead_letter_topic(worker_group(settings.namespace), settings.namespace),
        key_serializer="raw",
        value_serializer="raw",
        partitions=1,
    )
    def table(name: str, **kwargs):
        kind: type[faust.Table] = InMemoryTable
        if name not in IN_MEMORY and store.startswith("rocksdb"):
            kind, kwargs = CountedTable, {**kwargs, "options": dict(ROCKSDB_OPTIONS)}
        return app.tables.add(
            kind(app, name=name, beacon=app.tables.beacon, partitions=partitions, key_type=str,
                 **kwargs)
        )

    # Last stream_seq applied per (topic, stream), with its offset: Kafka delivers at least
    # once, the worker applies each event once (projections/applying.py).
    applied = table("applied-seq")
    # Next offset to apply per topic:partition: read-your-writes waits on it.
    positions = table("positions", default=int)
    # Per source partition: how many events went to the dead-letter topic, and the offset of
    # the last one, in one value, so a poison event redelivered after a crash counts once.
    dead_lettered = table("dead-lettered")
    by_trial = build_trials(trials)
    projections = next(iter(by_trial.values()))  # every trial has the same projections
    tables = {name: table(name) for name in projections}
    # Per event topic, per trial id: that trial's projections that fold the topic.
    readers = {
        event_topic(context, settings.namespace): {
            trial_id: [p for p in built.values() if context in p.contexts]
            for trial_id, built in by_trial.items()
        }
        for context in CONTEXTS
    }
    keyring = load_keyring(settings.keyring)
    base_keyring = [keyring]
    # Per event topic, the keys a WriterKeyRotated retired and the offset of that rotation:
    # a record is read with the keys retired before it, whatever offset the worker resumes at.
    retired_at = table("retired-keys")

    def keyring_at(topic: str, offset: int) -> Keyring:
        rotations = retired_at.get(topic)
        retired = frozenset(k for k, at in rotations.items() if at < offset) if rotations else ()
        if not retired:
            return base_keyring[0]
        return base_keyring[0].model_copy(update={"retired": retired})

    def note_rotation(topic: str, offset: int, recorded) -> None:
        if isinstance(recorded.payload, WriterKeyRotated):
            known = dict(retired_at.get(topic) or {})
            known.setdefault(recorded.payload.retired_key_id, offset)
            retired_at[topic] = known

    async def keyring_reloaded() -> bool:
        """A key the keyring does not list (an event signed by it, or a rotation naming it as
        the next key): the deployment may have added it since; read the keyring file again."""
        try:
            fresh = await asyncio.to_thread(load_keyring, settings.keyring)
        except Exception as exc:
            log.warning("cannot read the keyring again: %r", exc)
            return False
        if fresh.keys == base_keyring[0].keys:
            return False
        base_keyring[0] = fresh
        return True

    # Readers are authenticated against the access log, as the services authenticate commands:
    # each trial's readers against that trial's access events (decision 65); ``users`` (the
    # users file or the demo users) answers for a trial until its log holds a user.
    access: list[dict[str, AccessState]] = [{}]
    seeds = seeds_per_trial(users, trials)
    readers_now = TrialReaders({
        trial_id: LiveUsers(lambda trial_id=trial_id: access[0].get(trial_id, EMPTY),
                            seed=seeds[trial_id])
        for trial_id in trials
    })
    demo_users = all(seed is UserDirectory.demo() for seed in seeds.values())

    @app.timer(interval=ACCESS_REFRESH_SECONDS)
    async def refresh_access():
        try:
            access[0] = await asyncio.to_thread(load_access, settings, keyring)
        except Exception as exc:  # the broker away: keep the access known so far
            log.warning("cannot read the access log yet: %r", exc)

    halts: dict[str, Halt] = {}
    """Per source partition: the unreadable record its agent stands at."""
    quarantine = [Quarantine()]

    async def quarantined(where: Where, value: bytes | None) -> bool:
        if not quarantine[0].covers(where, value):
            try:
                quarantine[0] = await asyncio.to_thread(
                    load_quarantine, settings.bootstrap_servers, settings.namespace, keyring,
                    WORKER,
                )
            except Exception as exc:  # the broker away: stay halted, look again later
                log.warning("cannot read the quarantine yet: %r", exc)
        return quarantine[0].covers(where, value)

    async def read_gap(start: Where, end: int) -> list[Missed]:
        """The committed records of ``start``'s partition from its offset up to ``end``, read
        past Faust's consumer, which delivered the record at ``end`` (decision 69)."""
        while True:
            try:
                found = await asyncio.to_thread(lambda: list(read_range(
                    settings.bootstrap_servers, start, end, client_id="trialops-worker-gap",
                    principal=WORKER,
                )))
                break
            except BrokerTimeout as exc:  # the broker away: nothing is applied meanwhile
                log.warning("cannot read %s:%d from %d to %d yet: %s", start.topic,
                            start.partition, start.offset, end, exc)
                await asyncio.sleep(QUARANTINE_POLL_SECONDS)
        if found:
            read_past_the_consumer(start.topic, len(found))
            log.warning("%s:%d: the consumer passed over %d committed record(s) between %d "
                        "and %d; read and applied first", start.topic, start.partition,
                        len(found), start.offset, end)
        else:  # an aborted transaction's records, or a marker the fetcher did not pass
            log.info("%s:%d: no committed record between %d and %d", start.topic,
                     start.partition, start.offset, end)
        return [Missed(w.topic, w.partition, w.offset, value) for w, value in found]

    started_up: list[bool] = []
    """Set by the first agent to start: the start-up objects are frozen (once)."""

    def agent_for(topic: str):
        count_applied = applied_counter(topic)

        rechecked: set[tuple[int, int]] = set()
        """Partitions and offsets at which a broken chain sent the agent to read the log
        before it."""
        latest: dict[str, Any] = {}
        """Per source partition, the consumer's last event of it made current: a table write
        goes to the changelog partition of the current event."""

        async def settle(batch: Batch) -> None:
            """Write the batch's keys and heads, wait until the broker holds them (and every
            changelog write before them), then write the positions they cover (decision 76):
            a position never survives a crash that lost what lies below it."""
            batch.flush()
            await app.producer.flush()
            read_in = [latest[source] for source in batch.passed]
            if len(current(read_in, app.consumer_generation_id)) < len(read_in):
                # The group rebalanced meanwhile: the partitions may be another worker's now,
                # and the consumer reads them again from the committed offsets. A position
                # left behind only makes copies that are skipped.
                batch.passed.clear()
                return
            now = _current_event.get(None)
            batch.advance(lambda source: _as_current_event(latest[source]))
            _current_event.set(now)

        async def take_in(batch: Batch, event: Any) -> None:
            """Read one record through the reading rule and apply it to the batch; at an
            unreadable record, halt until it is quarantined (decision 17)."""
            message = event.message
            source = f"{message.topic}:{message.partition}"
            where = Where(message.topic, message.partition, message.offset)
            while True:
                errors: list[str] = []
                try:
                    recorded = decode(event.value, keyring_at(topic, message.offset), topic)
                    own = of_trial(readers[topic], recorded, errors) or ()
                    if batch.apply(own, source, message.offset, recorded, errors):
                        count_applied()
                    else:
                        log.info("skipping a copy %s", where)
                    note_rotation(topic, message.offset, recorded)
                except Unreadable as exc:
                    # What came before the record reaches the tables; the position stays at
                    # the record.
                    await settle(batch)
                    if exc.kind in NEW_KEY_KINDS and await keyring_reloaded():
                        continue
                    at = (message.partition, message.offset)
                    if exc.kind == BROKEN_CHAIN and at not in rechecked:
                        # A record the consumer passed over breaks the chain too, one
                        # offset away where no commit marker stands between (an append
                        # without a transaction): the log is read first (decision 69).
                        rechecked.add(at)
                        position = batch.position(source)
                        if position < message.offset:
                            await apply_gap(batch, message, position)
                            continue
                    if await quarantined(where, event.value):
                        log.warning("passing over quarantined record %s", where)
                        break
                    if source not in halts:
                        halts[source] = Halt(where, exc.kind, exc.detail, digest(event.value))
                        log.error("halted: %s", halts[source].describe())
                        await _dead_letter(dead_letters, dead_lettered, event, exc)
                    await asyncio.sleep(QUARANTINE_POLL_SECONDS)
                    continue
                if errors:
                    batch.flush()
                    await _dead_letter(dead_letters, dead_lettered, event,
                                       RuntimeError("; ".join(errors)))
                break
            halts.pop(source, None)
            batch.pass_over(source, message.offset)

        async def apply_gap(batch: Batch, message: Any, start: int) -> None:
            """Read the committed records of ``message``'s partition from ``start`` up to
            ``message``, which the consumer passed over, apply them first, and tell Faust's
            consumer they are done (decisions 69 and 77)."""
            for missed in await read_gap(Where(topic, message.partition, start), message.offset):
                await take_in(batch, missed)
            await read_by_the_worker(app, TP(message.topic, message.partition), start,
                                     message.offset)

        async def fold(stream):
            """Each event is decoded once and applied to every projection that reads its
            topic. Events come in batches (decision 46): a batch applies them to overlays of
            the tables and writes each touched key once, at its end. An agent far behind its
            partition waits longer for a full batch (decision 56). A batch never holds
            unwritten changes across an ``await``: the agents of the other topics write the
            same tables (patient-timeline folds every topic) while this one waits, so it
            writes what it changed before it waits on anything (the keyring, the quarantine,
            a dead letter). Only its positions wait, for the broker to hold what they cover
            (decision 76): no other agent writes them."""
            app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
            if not started_up:
                # What the worker built to start (Faust, the tables, the folds, pydantic's
                # models) lives as long as it does: left out of the garbage collector's
                # scans, whose full passes over it took about 7 % of the applying (decision
                # 56). Start-up's own garbage is collected first, or it would stay for good.
                started_up.append(True)
                gc.collect()
                gc.freeze()
            behind = [False]

            def within() -> float:
                return CATCH_UP_SECONDS if behind[0] else BATCH_SECONDS

            async for taken in take_batches(stream, BATCH_EVENTS, within):
                # What a rebalance left in hand is read again from the committed offsets.
                events = current(taken, app.consumer_generation_id)
                if len(events) < len(taken):
                    log.info("passing over %d event(s) read before a rebalance",
                             len(taken) - len(events))
                if not events:
                    continue
                batch = Batch(tables, applied, positions)
                previous = None
                for event in events:
                    message = event.message
                    if previous is not None and previous.message.partition != message.partition:
                        # A table write goes to the partition of the event current when it is
                        # made (its changelog partition, its RocksDB store): what one source
                        # partition (one trial, decision 60) changed is written while one of its
                        # events is current, before the next partition's event becomes so.
                        batch.flush()
                    _as_current_event(event)
                    previous = event
                    source = f"{message.topic}:{message.partition}"
                    latest[source] = event
                    if gap := unseen(batch.position(source), message.offset, MARKERS, source):
                        # Records the consumer passed over are read here, and applied first
                        # (decision 69).
                        batch.flush()
                        await apply_gap(batch, message, gap.start)
                    await take_in(batch, event)
                await settle(batch)
                moved.notify()
                behind[0] = _behind(app, events[-1].message)

        return fold

    moved = PositionsMoved()
    """Wakes the views' ``wait_for`` queries at the end of every batch."""

    for context in CONTEXTS:
        topic = event_topic(context, settings.namespace)
        source = app.topic(topic, key_serializer="raw", value_serializer="raw")
        app.agent(source, name=f"fold-{context}")(stops_the_worker(agent_for(topic), topic))
    # Any worker of the group answers; only the one holding the event topics from its tables.
    sources = tuple(readers)
    holding = data_dir / HOLDING_FILE

    def note_holding(_sender: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        """After every rebalance: whether this worker now holds event partitions (any: with
        partitioned topics each member holds some, decision 61), for the supervisor to know
        what a crash of it left (trialops/projection_reset.py)."""
        if any(tp.topic in sources for tp in app.consumer.assignment()):
            holding.touch()
        else:
            holding.unlink(missing_ok=True)

    app.on_partitions_assigned.connect(note_holding)
    for name in projections:
        _serve(app, projections[name], tables[name], positions, readers_now, moved,
               sources=sources, partitions=partitions,
               trials={trial_id: built[name] for trial_id, built in by_trial.items()})
    if len(trials) == 1:
        [trial] = trials.values()
        # The inbox is read at a moment over several contexts' states: a desk in memory fed
        # by a tail of the log, not a table (projections/live_inbox.py, decision 51).
        live_inbox = LiveDesk(settings)
        serve_inbox(app, live_inbox, trial, readers_now)
        # Alerts before an inbox item's deadline, when an alerts file is configured (decision
        # 52). An unusable alerts configuration turns the alerts off (said on /ready).
        alerts = start_alerts(app, live_inbox, trial, demo=demo_users)
    else:
        # One desk per trial, each folding its trial's events only (decision 61), and one
        # notifier per trial over it (decision 64).
        desks = {trial_id: (LiveDesk(settings, trial_id=trial_id), trial)
                 for trial_id, trial in trials.items()}
        serve_inboxes(app, desks, readers_now)
        alerts = start_trials_alerts(app, desks, demo=demo_users)

    # The worker's watch over its partitions, and its status pages.
    watch_and_serve_status(
        app, readers=readers, positions=positions, halts=halts, dead_lettered=dead_lettered,
        alerts=alerts, readers_now=readers_now, trials=trials, sources=sources,
        partitions=partitions, names=sorted(projections),
    )

    return app


def event_partitions(settings: Settings) -> int:
    """How many partitions the event topics have (one count for all: a trial's partition is
    the same number in each, decision 61); 1 while they do not exist yet. The worker's tables
    get as many, so that Faust's assignor keeps them co-partitioned with the event topics."""
    from kafka import KafkaConsumer

    from infra.kafka_security import kafka_python_settings

    consumer = KafkaConsumer(**kafka_python_settings(WORKER),
                             bootstrap_servers=settings.bootstrap_servers,
                             client_id="trialops-worker-partitions")
    try:
        counts = {
            topic: len(consumer.partitions_for_topic(topic) or ())
            for topic in (event_topic(context, settings.namespace) for context in CONTEXTS)
        }
    finally:
        consumer.close()
    found = {count for count in counts.values() if count}
    if len(found) > 1:
        raise ValueError(f"the event topics have different partition counts ({counts}): a "
                         "trial's events must sit in the same partition of every topic")
    return found.pop() if found else 1


def load_access(settings: Settings, keyring) -> dict[str, AccessState]:
    """Who may read now, per trial: each trial's access events folded by the access service's
    own ``evolve`` (every trial's log shares the access topic, decision 60)."""
    try:
        return access_by_trial(recorded for _where, recorded in read_log(
            settings.bootstrap_servers, [event_topic(ACCESS, settings.namespace)],
            LogReader(keyring), client_id="trialops-worker-access", principal=WORKER,
        ))
    except LookupError:  # no access topic yet
        return {}


def access_by_trial(log: Iterable[Recorded]) -> dict[str, AccessState]:
    """Access events folded per trial (the envelope's ``trial_id``): one trial's user is
    nobody in another's state, whatever ids the two share."""
    states: dict[str, AccessState] = {}
    for recorded in log:
        trial_id = recorded.envelope.trial_id
        states[trial_id] = evolve_access(states.get(trial_id, EMPTY), recorded.payload)
    return states


def _behind(app, message) -> bool:
    """Whether the partition of ``message`` holds ``CATCH_UP_LAG`` records or more after it."""
    try:
        end = app.consumer.highwater(message.tp)
    except Exception:  # no highwater known yet
        return False
    return end is not None and end - message.offset - 1 >= CATCH_UP_LAG


def _as_current_event(event) -> None:
    """Make ``event`` the one Faust's tables attribute a write to (its partition is the
    changelog's, and the RocksDB store files the key under it). An agent that takes events in
    batches reads them outside Faust's own iteration, which sets this per event."""
    _current_event.set(weakref.ref(event))


async def _dead_letter(dead_letters, dead_lettered, event, exc: Exception) -> None:
    message = event.message
    if not count_dead_letter(dead_lettered, f"{message.topic}:{message.partition}",
                             message.offset):
        log.info("already dead-lettered %s@%s", message.topic, message.offset)
        return
    reason = f"{type(exc).__name__}: {exc}"[:1000]
    log.error("dead-lettering %s@%s: %s", message.topic, message.offset, reason)
    await dead_letters.send(
        key=message.key,
        value=message.value,
        headers=[
            ("reason", reason.encode()),
            ("source", f"{message.topic}:{message.partition}:{message.offset}".encode()),
        ],
    )
