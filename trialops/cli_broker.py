"""``trialops broker ...``: run a local Kafka cluster (KRaft, no Docker) for development.

``stop`` and ``start`` keep the data; only ``wipe`` or ``start --fresh`` delete it, and they
print what they deleted."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import typer

from broker.cluster import KAFKA_VERSION, BrokerError, LocalKafka, default_home, fetch_jars

app = typer.Typer(
    help=(
        f"Local Apache Kafka {KAFKA_VERSION} brokers on this machine (KRaft mode, no Docker). "
        f"Jars are fetched once from Maven Central with mvn into {default_home().name}/ "
        "(or $TRIALOPS_KAFKA_HOME); brokers need java."
    ),
    no_args_is_help=True,
)

NameOption = Annotated[str, typer.Option("--name", help="Cluster name (one per name).")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _run(action: Callable[[], Any]) -> Any:
    """Run ``action``; report its failure on stderr, without a traceback, and exit 2."""
    try:
        return action()
    except (BrokerError, ValueError) as exc:
        _err(f"error: {exc}")
        raise typer.Exit(2) from None


@app.command()
def fetch(
    version: Annotated[str, typer.Option(help="Kafka version.")] = KAFKA_VERSION,
) -> None:
    """Download the broker jars (once; later calls are no-ops)."""
    libs = _run(lambda: fetch_jars(version=version, progress=_err))
    typer.echo(str(libs))


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _wipe(kafka: LocalKafka) -> None:
    deleted = _run(kafka.wipe)
    if not deleted:
        _err(f"broker '{kafka.name}' has no data to delete")
        return
    for path, size in deleted:
        _err(f"deleted {path} ({_size(size)})")
    _err(f"broker '{kafka.name}': all its data is deleted; its next start formats new storage")


@app.command()
def start(
    name: NameOption = "default",
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            min=1,
            help="1, or 3 for a replicated cluster (default: as many as its kept data has, "
            "else 1).",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 90.0,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Delete the cluster's kept data first (prints what)."),
    ] = False,
    secure: Annotated[
        bool | None,
        typer.Option(
            "--secure/--plain",
            help="New storage: TLS with the cluster's own CA, SASL/SCRAM authentication and "
            "ACLs (--secure), or none of them (the default). Kept storage starts as it was "
            "formatted.",
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            help="Secure cluster: the namespace whose ACLs are granted at start "
            "(default: $TRIALOPS_NAMESPACE, else trialops)."
        ),
    ] = None,
) -> None:
    """Start a cluster in the background and print its bootstrap servers.

    A cluster keeps its data between stop and start; only new storage is formatted."""
    kafka = _run(lambda: LocalKafka(name=name, nodes=nodes, secure=secure, progress=_err))
    if fresh:
        _wipe(kafka)
    bootstrap = _run(lambda: kafka.start(timeout=timeout))
    typer.echo(bootstrap)
    record(kafka, "trialops broker start")
    hint = f"use it with:  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}\n"
    if kafka.status().get("secure"):
        from infra.settings import Settings
        from infra.topic_admin import grant

        ns = namespace or Settings.from_env(bootstrap_servers=bootstrap).namespace
        def granted() -> int:
            try:
                return grant(bootstrap, ns, kafka.client_config)
            except Exception as exc:  # a refused ACL or a broker gone: one line, not a trace
                raise BrokerError(f"granting the ACLs of '{ns}' failed: {exc!r}") from exc

        count = _run(granted)
        _err(
            f"broker '{name}': TLS (CA {kafka.status()['ca_cert']}), SASL/SCRAM and ACLs on; "
            f"{count} ACLs of namespace '{ns}' in place"
        )
        hint += f"              export TRIALOPS_KAFKA_CONFIG={kafka.client_config}\n"
    _err(hint + f"stop it with: trialops broker stop --name {name}")


@app.command()
def stop(
    name: NameOption = "default",
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
) -> None:
    """Stop a cluster (started by any process); its data is kept for the next start."""
    kafka = _run(lambda: LocalKafka(name=name, progress=_err))
    if not kafka.status()["running"]:
        _err(f"broker '{name}' is not running")
    _run(lambda: kafka.stop(timeout=timeout))


@app.command()
def wipe(
    name: NameOption = "default",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stopped cluster's data: every event on it is gone for good."""
    kafka = _run(lambda: LocalKafka(name=name, progress=_err))
    if not yes:
        typer.confirm(
            f"Delete every topic and event of broker '{name}' ({kafka.cluster_dir})?", abort=True
        )
    _wipe(kafka)


def _status_of(name: str) -> dict[str, Any]:
    return LocalKafka(name=name).status()


def record(kafka: LocalKafka, started_by: str, **keys: str | None) -> None:
    """Record the running cluster as the system the other commands talk to (infra.settings).
    The keys an earlier ``trialops up`` recorded for this same cluster stay with it, so that
    its kept trial can be read again after ``trialops broker start --name up``."""
    from infra.settings import read_system, record_system

    earlier = read_system()
    if earlier is not None and earlier.get("broker") == kafka.name:
        for key in ("keyring", "writer_keys", "namespace"):
            keys.setdefault(key, earlier.get(key))
    info = kafka.status()
    record_system(
        info["bootstrap_servers"],
        started_by=started_by,
        broker=kafka.name,
        pids=[n["pid"] for n in info["nodes"] if n.get("pid")],
        **keys,
    )


@app.command()
def status(
    name: Annotated[
        str | None, typer.Option("--name", help="One cluster (default: every local cluster).")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Without --name: every cluster's state as JSON.")
    ] = False,
) -> None:
    """Print the cluster's state as JSON; without --name, a line per local cluster (running
    or stopped, its bootstrap servers and pids; './scripts/up' runs the one named 'up'), or
    with --json a list of their states. Exit code 1 if it (or every one) is not running.
    A secure cluster's ``client_config`` is the file for ``TRIALOPS_KAFKA_CONFIG``, and
    ``ca_cert`` the CA its brokers' certificates chain to."""
    if name is not None:
        info = _run(lambda: LocalKafka(name=name).status())
        typer.echo(json.dumps(info, indent=2))
        if not info["running"]:
            raise typer.Exit(1)
        return
    folder = default_home() / "clusters"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    every = [_run(partial(_status_of, n)) for n in names]
    if json_output:
        typer.echo(json.dumps(every, indent=2))
    else:
        _say_each(every)
    if not any(info["running"] for info in every):
        _err(f"no local cluster is running ({len(every)} kept in {folder})")
        raise typer.Exit(1)


def _say_each(every: list[dict[str, Any]]) -> None:
    """A line per cluster: running (where, its pids and how to stop it) or stopped."""
    for info in every:
        if info["running"]:
            pids = ", ".join(str(n["pid"]) for n in info["nodes"] if n["alive"])
            typer.echo(f"{info['name']:<22} running  {info['bootstrap_servers']}  (pids {pids}; "
                       f"'trialops broker stop --name {info['name']}' stops it)")
        else:
            kept = "its data kept" if info.get("storage") else "no data"
            typer.echo(f"{info['name']:<22} stopped  ({kept})")
