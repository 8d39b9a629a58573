"""The ``trialops`` command: run the system, replay projections, export schemas."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from infra.settings import KAFKA_UNREACHABLE, KafkaNotFound, Settings

EXIT_CODES = (
    "Exit codes: 0 done; 1 problems found (verify: tampering, gaps, topic settings) or a "
    f"service that failed; 2 bad arguments or configuration; {KAFKA_UNREACHABLE} no Kafka "
    "answers (KAFKA_BOOTSTRAP_SERVERS, else the broker ./scripts/up or 'trialops broker "
    "start' recorded)."
)


class _Cli(typer.Typer):
    """The root command: a Kafka that cannot be reached, from any command, is one line on
    stderr and its own exit code, not a client's traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except KafkaNotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(KAFKA_UNREACHABLE)
        except Exception as exc:
            if not type(exc).__module__.startswith(("kafka.", "aiokafka.")):
                raise
            typer.echo(f"error: Kafka: {type(exc).__name__}: {exc}", err=True)
            sys.exit(KAFKA_UNREACHABLE)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"trialops {version('trialops')}")
        raise typer.Exit()


app = _Cli(
    help="trialops: event-sourced operations backend for a phase I CAR T-cell trial.\n\n"
    + EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    _show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True,
                     help="Print the installed version and exit."),
    ] = False,
) -> None:
    """trialops: event-sourced operations backend for a phase I CAR T-cell trial."""
    from infra.settings import adopt_recorded_trials

    adopt_recorded_trials()  # beside 'up --trials': its trials
schemas_app = typer.Typer(
    help="JSON Schemas of every event type and version, and the topics' AsyncAPI document.",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="The Kafka topic catalogue.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")


def _mount_broker() -> None:
    from trialops.cli_broker import app as broker_app

    app.add_typer(
        broker_app, name="broker", help="A local Apache Kafka broker (KRaft) without Docker."
    )


_mount_broker()


def _mount_design() -> None:
    from trialops.cli_design import app as design_app
    from trialops.cli_grade import app as grade_app

    app.add_typer(design_app, name="design")
    app.add_typer(grade_app, name="grade")


_mount_design()


def _mount_audit() -> None:
    from trialops.cli_audit import audit_app, export

    app.add_typer(audit_app, name="audit", help="Audit trails for inspectors.")
    app.command("export")(export)
    from trialops.cli_show import app as show_app
    from trialops.cli_show import status

    app.add_typer(show_app, name="show")
    app.command("status")(status)
    from trialops.cli_inbox import inbox

    app.command("inbox")(inbox)
    from trialops.cli_simulate import simulate, walk

    app.command("simulate")(simulate)
    app.command("walk")(walk)
    from trialops.cli_users import app as users_app

    app.add_typer(users_app, name="users")


_mount_audit()


def _mount_trust() -> None:
    from trialops.cli_trust import checkpoint_command, keys_app

    app.add_typer(keys_app, name="keys")
    app.command("checkpoint")(checkpoint_command)


_mount_trust()


def _mount_report() -> None:
    from trialops.cli_report import app as report_app

    app.add_typer(report_app, name="report")


_mount_report()


def report_reading(stats) -> None:
    """On stderr: where reading stopped at an unreadable record, quarantined records passed
    over, events a fold could not take (replay and audit; the live worker does the same)."""
    for halt in stats.halts:
        typer.echo(f"warning: halted: {halt.describe()}", err=True)
    if stats.quarantined:
        typer.echo(
            f"note: {len(stats.quarantined)} quarantined record(s) passed over: "
            + ", ".join(str(w) for w in stats.quarantined[:10]),
            err=True,
        )
    for error in stats.fold_errors[:10]:
        typer.echo(f"warning: {error}", err=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@schemas_app.command("export")
def schemas_export(directory: Annotated[Path, typer.Argument(help="Folder to write into.")]):
    """Write into DIRECTORY the JSON Schemas of the envelope, of every event type in every
    version a reader accepts (payload and record), of the signed checkpoint, and the AsyncAPI
    3.0 document of every topic (asyncapi.json), which refers to them."""
    from trialops.contracts import export

    for path in export(directory):
        typer.echo(str(path))


@topics_app.command("create")
def topics_create():
    """Create the event topics that are missing: kept forever, never compacted, on
    min(3, brokers) replicas (or TRIALOPS_REPLICATION_FACTOR), min.insync.replicas=2 when
    replicated. Exits 1 when an event topic, new or existing, could lose events."""
    from infra.topic_admin import (
        check_event_topics,
        configured_replication_factor,
        ensure_topics,
    )

    s = Settings.reachable()
    try:
        created = ensure_topics(s.bootstrap_servers, s.namespace, configured_replication_factor())
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created: {', '.join(created) or 'none (all present)'}")
    problems = check_event_topics(s.bootstrap_servers, s.namespace)
    for problem in problems:
        typer.echo(f"  could lose events: {problem}", err=True)
    if problems:
        raise fail(f"{len(problems)} event topic setting(s) could lose events", code=1)


@app.command()
def serve(
    contexts: Annotated[
        list[str] | None, typer.Argument(help="Services to run (default: all of them).")
    ] = None,
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8081,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    advertised_url: Annotated[
        str | None,
        typer.Option(help="The URL other instances of the services reach this one at "
                     "(default: http://HOST:PORT); needed when it binds 0.0.0.0."),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Accept the well-known demo-<role> tokens (never for a "
                     "real trial); without it TRIALOPS_USERS_FILE must name the users file."),
    ] = False,
):
    """Run the command services. Several instances share the work through Kafka's group
    protocol: the one the group gives the contexts' partitions writes them, the others pass
    it the commands they receive and take over if it dies."""
    from infra import logs
    from services import serving
    from services.app import build_app
    from services.auth import UserDirectory
    from trial.config import TrialConfigError, load_trials

    try:
        trials = load_trials()
        users = UserDirectory.seeds_from_env(trials, demo=demo)
        if advertised_url is None and host in WILDCARD_HOSTS:
            raise ValueError(f"--host {host} needs --advertised-url: the URL the other "
                             "instances of the services reach this one at")
        application = build_app(Settings.from_env(), users, trials, contexts,
                                url=advertised_url or f"http://{host}:{port}")
    except (TrialConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    logs.configure("info")  # JSON lines, or a console format on a terminal (infra/logs.py)
    if demo:
        typer.echo("services: demo tokens are active (demo-<role>): not for a real trial")
    serving.run(application, host=host, port=port, say=lambda msg: typer.echo(f"services: {msg}"))


WILDCARD_HOSTS = ("0.0.0.0", "::", "")
"""Interfaces that say where a worker listens, not where the others can reach it."""


@app.command()
def worker(
    web_port: Annotated[int, typer.Option(help="Port of the projections' HTTP views.")] = 6066,
    web_host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    advertised_url: Annotated[
        str | None,
        typer.Option(help="The URL other workers of the group reach this one at (default: "
                     "http://WEB_HOST:WEB_PORT); needed when it binds 0.0.0.0."),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Faust's local state.")] = Path(".trialops"),
    loglevel: Annotated[str, typer.Option(help="crit, error, warn, info or debug.")] = "warn",
    once: Annotated[
        bool, typer.Option("--once", help="Run the worker once; do not start it again if it dies.")
    ] = False,
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Let the demo-<role> tokens read the projections; without "
                     "it TRIALOPS_USERS_FILE must name the users file."),
    ] = False,
):
    """Run the Faust worker that folds events into the projections and serves them; it is
    started again if it dies (a broker that went away while it started, for example)."""
    from services.auth import UserDirectory
    from trial.config import TrialConfigError, load_trials

    try:
        # Checked before the worker starts: each trial's users (decision 66).
        users = UserDirectory.seeds_from_env(load_trials(), demo=demo)
    except (TrialConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    if advertised_url is None and web_host in WILDCARD_HOSTS:
        # The others would ask "0.0.0.0", that is themselves, on a reader's behalf (decision 58).
        raise fail(f"--web-host {web_host} needs --advertised-url: the URL the other workers "
                   "of the group reach this one at")
    if not once:
        from trialops.supervise import forked, supervise

        def rebuild() -> None:
            from trialops.projection_reset import reset_projections

            for item in reset_projections(Settings.from_env(), data_dir):
                if item.startswith("nothing"):  # other workers hold them (decision 58)
                    typer.echo(f"worker: deleted {item}; it joins them", err=True)
                else:
                    typer.echo(f"worker: deleted {item}; the projections are folded anew",
                               err=True)

        once_args = [
            "worker", "--once", "--web-port", str(web_port), "--web-host", web_host,
            "--data-dir", str(data_dir), "--loglevel", loglevel, *(["--demo"] if demo else []),
            *(["--advertised-url", advertised_url] if advertised_url else []),
        ]
        # Forked, the Faust worker starts from the modules this process imported already
        # (decision 80); it runs `trialops worker --once` as a new process would.
        raise typer.Exit(
            supervise(forked(lambda: app(args=once_args, prog_name="trialops")), on_crash=rebuild)
        )
    from infra import logs
    from infra.topic_admin import ensure_worker_topics
    from projections.faust_lifecycle import PromptWorker
    from projections.faust_tables import changelog_topics
    from projections.worker import create_app, event_partitions
    from trial.config import trial_partitions

    try:
        trials = load_trials()  # each event folded by its own trial's projections (decision 61)
    except TrialConfigError as exc:
        raise fail(str(exc)) from None
    from infra.alerts import AlertsConfigError
    from infra.keys import KeysError

    settings = Settings.from_env()
    brokers = _wait_for_broker(settings.bootstrap_servers)
    if brokers < settings.replication_factor:
        # The changelogs are derived state, folded again from the log when lost (decision 24):
        # a worker started while a broker is down creates them with the brokers there are,
        # rather than not starting at all.
        typer.echo(f"worker: {brokers} broker(s) up, fewer than the replication factor "
                   f"{settings.replication_factor}: new changelogs get {brokers}", err=True)
        settings = replace(settings, replication_factor=brokers)
    try:
        partitions = event_partitions(settings)
        trial_partitions(trials, partitions)  # two trials in one partition: refused
        faust_app = create_app(
            settings, trials=trials, users=users, web_port=web_port, web_host=web_host,
            data_dir=data_dir, advertised_url=advertised_url, partitions=partitions,
        )
        ensure_worker_topics(settings.bootstrap_servers, changelog_topics(faust_app))
    except (KeysError, AlertsConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    faust_worker = PromptWorker(faust_app, quiet=True, **logs.faust_options(loglevel))
    # Faust's terminal spinner sets the root logger to DEBUG so that it turns on every record:
    # every debug call of Faust and aiokafka then built its record (8% of the worker's time in
    # issue 12's profile). Without the spinner the root logger keeps --loglevel.
    faust_worker.spinner = None
    faust_worker.execute_from_commandline()


def _wait_for_broker(bootstrap_servers: str) -> int:
    """Faust exits when the broker does not answer at start; a worker started while the broker
    is down (after a power cut, or before it in a compose file) waits for it instead. Returns
    how many brokers the cluster has up."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from infra.kafka_security import kafka_python_settings

    while True:
        try:
            admin = KafkaAdminClient(
                **kafka_python_settings("worker"),
                bootstrap_servers=bootstrap_servers,
                bootstrap_timeout_ms=5_000,
            )
            try:
                return max(1, len(admin.describe_cluster().get("brokers", [])))
            except KafkaError:  # not allowed to describe the cluster: assume all are up
                return sys.maxsize
            finally:
                admin.close()
        except KafkaError as exc:
            typer.echo(f"worker: waiting for Kafka at {bootstrap_servers} ({exc!r})", err=True)


def _progress(events: int, seconds: float) -> None:
    """Progress of a long read, on stderr: events so far and the rate."""
    typer.echo(
        f"  ... {events:,} events read, {events / max(seconds, 1e-9):,.0f} events/s", err=True
    )


def _parse_time(value: str | None) -> datetime | None:
    from trialops.times import aware_time

    return None if value is None else aware_time("--as-of", value)


@app.command()
def replay(
    projection: Annotated[
        str | None, typer.Argument(help="Projection name, e.g. cohort-occupancy.")
    ] = None,
    all_projections: Annotated[
        bool, typer.Option("--all", help="Every projection, from one read of the topics.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="With --all: write each projection to OUT/<name>.json instead."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="ISO 8601 time with zone: state as of this moment.")
    ] = None,
    axis: Annotated[
        str, typer.Option(help="'recorded' (what the system knew) or 'occurred' (business time).")
    ] = "recorded",
    trial: Annotated[
        str | None,
        typer.Option("--trial", help="The trial's id (default: the deployment's only trial; "
                     "needed when TRIALOPS_TRIALS names several)."),
    ] = None,
):
    """Rebuild PROJECTION from the topics and print the JSON the live view serves; with
    --all, every projection from one read of the topics (an object by name, or one file each
    in --out, each the bytes 'replay NAME' prints)."""
    from audit.replay import ReplayStats, TimeAxis, replay_all
    from audit.replay import replay as run_replay
    from projections.base import to_json
    from projections.catalog import NAMES, TrialNotNamed, UnknownTrial, chosen_trial
    from trial.config import TrialConfigError, load_trials

    if all_projections == (projection is not None):
        raise fail("name one projection, or give --all")
    if projection is not None and projection not in NAMES:
        raise fail(f"unknown projection {projection!r}; known: {', '.join(sorted(NAMES))}")
    if out is not None and not all_projections:
        raise fail("--out goes with --all")
    axes: dict[str, TimeAxis] = {"recorded": "recorded", "occurred": "occurred"}
    if axis not in axes:
        raise fail(f"--axis must be 'recorded' or 'occurred', not {axis!r}")
    try:  # one trial's documents, never two trials' events in one (decision 61)
        trials = load_trials()
        trial = chosen_trial(trials, trial)
    except (TrialNotNamed, UnknownTrial) as exc:
        raise fail(f"--trial: {exc.args[0]}") from None
    except TrialConfigError as exc:
        raise fail(str(exc)) from None
    stats = ReplayStats(progress=_progress)
    try:
        if projection is not None:
            document = run_replay(
                Settings.reachable(), projection, as_of=_parse_time(as_of), axis=axes[axis],
                stats=stats, trial_id=trial, trials=trials,
            )
        else:
            documents = replay_all(
                Settings.reachable(), as_of=_parse_time(as_of), axis=axes[axis], stats=stats,
                trial_id=trial, trials=trials,
            )
    except LookupError as exc:
        raise fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:  # no keyring, or an unusable one
        raise fail(str(exc)) from None
    if projection is not None:
        sys.stdout.buffer.write(to_json(document))
    elif out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, each in documents.items():
            (out / f"{name}.json").write_bytes(to_json(each))
    else:
        sys.stdout.buffer.write(to_json(documents))
    seconds = stats.seconds
    done = (
        f"replayed {stats.applied} of {stats.events} events"
        if projection is not None
        else f"read {stats.events} events once; {len(documents)} projections folded "
        f"{stats.applied} of them in all"
    )
    typer.echo(
        f"{done} in {seconds:.2f}s ({stats.events / max(seconds, 1e-9):,.0f} events/s)",
        err=True,
    )
    report_reading(stats)


@app.command()
def verify(
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A checkpoint file: prove the log still holds it."),
    ] = None,
):
    """Check every event topic: hashes, writers' signatures, hash chains, gap-free sequences,
    duplicates, order and schemas, and the topic's configuration (kept forever, never
    compacted, replicated); with --checkpoint, that nothing the checkpoint covered was cut,
    wiped or rewritten since. Exits 1 when anything is wrong."""
    import orjson

    from audit.verify import verify as run_verify
    from infra.topic_admin import check_event_topics
    from trialops.cli_trust import read_checkpoint

    settings = Settings.reachable()
    try:
        report = run_verify(
            settings, progress=_progress, checkpoint=read_checkpoint(checkpoint)
        )
    except LookupError as exc:
        raise fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:  # no keyring, or an unusable one
        raise fail(str(exc)) from None
    topic_problems = check_event_topics(settings.bootstrap_servers, settings.namespace)
    if json_output:
        document = report.as_dict()
        document["ok"] = report.ok and not topic_problems
        document["topic_problems"] = [p.as_dict() for p in topic_problems]
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        rate = report.events / max(report.seconds, 1e-9)
        typer.echo(
            f"verified {report.events} events in {report.streams} streams "
            f"({report.seconds:.2f}s, {rate:,.0f} events/s)"
        )
        for topic, count in sorted(report.topics.items()):
            typer.echo(f"  {topic}: {count} events")
        for where in report.quarantined:
            typer.echo(f"  quarantined (readers pass over it): {where}")
        for halt in report.halts:
            typer.echo(
                f"  readers halt at {halt['topic']}@{halt['partition']}:{halt['offset']} "
                f"({halt['kind']}); record sha256 {halt['record_sha256']}"
            )
        if topic_problems:
            typer.echo(f"{len(topic_problems)} topic setting(s) could lose events:")
            for topic_problem in topic_problems:
                typer.echo(f"  [topic-config] {topic_problem}")
        if report.ok and not topic_problems:
            typer.echo("no problems found")
        elif not report.ok:
            typer.echo(
                f"{len(report.problems)} problem(s): "
                + ", ".join(f"{kind} {count}" for kind, count in report.by_kind().items())
            )
            for problem in report.problems:
                typer.echo(f"  [{problem.kind}] {problem.where}: {problem.detail}")
    if not report.ok or topic_problems:
        raise typer.Exit(1)


@app.command()
def up(
    service_port: Annotated[int, typer.Option(help="Enrollment service port.")] = 8081,
    web_port: Annotated[int, typer.Option(help="Projections' HTTP port.")] = 6066,
    demo: Annotated[bool, typer.Option(help="Run the simulated trial as a demo.")] = True,
    speed: Annotated[float, typer.Option(help="Demo: wall-clock seconds between commands.")] = 0.05,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete the kept trial (the broker's data) first.")
    ] = False,
    broker_name: Annotated[
        str, typer.Option(help="Name of the local broker it runs ('trialops broker status').")
    ] = "up",
    trials: Annotated[
        bool, typer.Option("--trials", help="Run every shipped trial side by side (trial/trials/: "
                           "NCT06623396 and NCT04577326) on topics of 4 partitions, the demo "
                           "in each; a broker kept from a one-trial run needs --fresh.")
    ] = False,
):
    """Run everything: a broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the topics, the
    enrollment service, the Faust worker, and a demo. Ctrl-C or SIGTERM stops it all, the
    broker last. The broker keeps the trial between runs; the demo is seeded only into an
    empty trial. The other commands (verify, replay, audit, export, checkpoint) find its
    broker and keyring by themselves while it runs."""
    from trialops.stack import run_stack

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_stack(
                service_port=service_port, web_port=web_port, demo=demo, speed=speed, fresh=fresh,
                broker_name=broker_name, trials=trials,
            )
    except (TimeoutError, RuntimeError) as exc:
        raise fail(str(exc), code=1) from None


def main() -> None:
    app()
