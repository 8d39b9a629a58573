"""``trialops keys`` and ``trialops checkpoint``: the writers' keys and the auditor's signed
checkpoints of the log (events/signing.py, audit/checkpoint.py)."""

from __future__ import annotations

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
    output: Annotated[Path, typer.Option("--output", help="The file the auditor keeps.")],
):
    """Sign every stream's head and every topic's end offset with the auditor's key; write it
    to --output and append it to the checkpoint topic. 'trialops verify --checkpoint FILE'
    later proves the log still holds all of it."""
    from datetime import UTC, datetime

    import orjson

    from audit.checkpoint import SIGNER, publish, take
    from infra.keys import load_keyring, load_signer

    settings = Settings.from_env()
    try:
        signer = load_signer(settings.writer_keys, SIGNER, load_keyring(settings.keyring))
        signed = take(settings, signer, datetime.now(UTC))
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
        f"{output} and appended to the checkpoint topic"
    )
