"""``trialops keys`` and ``trialops checkpoint``: the writers' keys and the auditor's signed
checkpoints of the log (events/signing.py, audit/checkpoint.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from infra.settings import Settings

keys_app = typer.Typer(help="The writers' signing keys and the keyring.", no_args_is_help=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@keys_app.command("init")
def keys_init(directory: Annotated[Path, typer.Argument(help="Folder to keep them in.")]):
    """Make a signing key per writer (kept if present) and the keyring listing them; print the
    two settings that point at them. For a demo or a test: a real trial's keys come from its
    deployment, the private ones readable by the services only."""
    from infra.keys import init_keys

    keyring, writers = init_keys(directory.resolve())
    typer.echo(f"export TRIALOPS_KEYRING={keyring}")
    typer.echo(f"export TRIALOPS_WRITER_KEYS={writers}")


@keys_app.command("rotate")
def keys_rotate(
    writer: Annotated[str, typer.Argument(help="The writer (context) whose key to rotate.")],
):
    """Make a writer's next signing key and add its public key to the keyring
    (TRIALOPS_KEYRING, TRIALOPS_WRITER_KEYS). Give every reader the new keyring; the writer
    rotates when it next opens its topic (restart the services): it appends WriterKeyRotated,
    signed with the old key, and signs everything after it with the new one. The old key
    stays in the keyring: the events it signed keep verifying."""
    from events.topics import WRITERS
    from infra.keys import KeysError, rotate_key

    if writer not in WRITERS:
        raise fail(f"no writer {writer!r}; writers: {', '.join(WRITERS)}")
    settings = Settings.from_env()
    if not settings.keyring or not settings.writer_keys:
        raise fail("set TRIALOPS_KEYRING and TRIALOPS_WRITER_KEYS to the keys to rotate")
    try:
        key_id = rotate_key(Path(settings.keyring), Path(settings.writer_keys), writer)
    except KeysError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{writer}: next key {key_id} added to {settings.keyring}; the writer rotates to "
               "it when the services next start")


def read_checkpoint(path: Path | None):
    from pydantic import ValidationError

    from audit.checkpoint import SignedCheckpoint

    if path is None:
        return None
    try:
        return SignedCheckpoint.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise fail(f"--checkpoint {path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise fail(f"--checkpoint {path}: not a checkpoint ({str(exc).splitlines()[0]})") from None


def checkpoint_command(
    output: Annotated[
        Path | None, typer.Option("--output", help="The file the auditor keeps (one checkpoint).")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="Take one on a schedule (30s, 10m, 1h, 1d), until stopped."),
    ] = None,
    into: Annotated[
        Path | None,
        typer.Option("--into", help="With --every: the folder of the files, one per checkpoint."),
    ] = None,
):
    """Sign every stream's head and every topic's end offset with the auditor's key; write it
    to --output and append it to the checkpoint topic. 'trialops verify --checkpoint FILE'
    later proves the log still holds all of it. With --every and --into, a running system
    takes one on that schedule (checkpoint-<UTC time>.json each), the first at once; a failed
    one is reported and the next is taken on time."""
    if every is None:
        if output is None or into is not None:
            raise fail("give --output FILE for one checkpoint, or --every DURATION --into DIR")
        _checkpoint_to(output)
        return
    if output is not None or into is None:
        raise fail("--every takes --into DIR (one file per checkpoint), not --output")
    seconds = parse_duration(every)
    into.mkdir(parents=True, exist_ok=True)
    typer.echo(f"checkpoints every {every} into {into} (Ctrl-C to stop)")
    while True:
        started = time.monotonic()
        from datetime import UTC, datetime

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            _checkpoint_to(into / f"checkpoint-{stamp}.json")
        except typer.Exit:
            pass  # reported on stderr; the schedule goes on
        except Exception as exc:  # the broker away: report, try again at the next tick
            typer.echo(f"error: checkpoint at {stamp} not taken: {exc!r}", err=True)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``1h``, ``1d`` or plain seconds; at least one second."""
    value, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(value) * _UNITS[unit]
    except ValueError:
        raise fail(f"--every {text!r}: not a duration (30s, 10m, 1h, 1d)") from None
    if not seconds >= 1:
        raise fail(f"--every {text!r}: at least one second")
    return seconds


def _checkpoint_to(output: Path) -> None:
    from datetime import UTC, datetime

    import orjson

    from audit.checkpoint import SIGNER, publish, take
    from infra.keys import load_keyring, load_signer
    from trialops.cli import _progress

    settings = Settings.reachable()
    started = time.monotonic()
    try:
        signer = load_signer(settings.writer_keys, SIGNER, load_keyring(settings.keyring))
        signed = take(settings, signer, datetime.now(UTC), progress=_progress)
    except LookupError as exc:
        raise fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    document = orjson.dumps(signed.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(document)
    partial.replace(output)
    publish(settings, signed)
    streams = sum(len(t.streams) for t in signed.statement.topics.values())
    typer.echo(
        f"checkpoint of {streams} streams in {len(signed.statement.topics)} topics written to "
        f"{output} and appended to the checkpoint topic ({time.monotonic() - started:.2f}s)"
    )
