"""``trialops users``: write the lines of a users file (``TRIALOPS_USERS_FILE``).

The token is read from standard input, never from the command line, so it stays out of the
shell's history and the process list; only its salted scrypt hash goes into the line.
"""

from __future__ import annotations

import getpass
import secrets
import sys
from typing import Annotated

import orjson
import typer

app = typer.Typer(help="Users and their tokens (the users file).", no_args_is_help=True)


@app.command("hash-token")
def hash_token_line(
    user_id: Annotated[str, typer.Option(help="The user's id, as events record it.")],
    role: Annotated[str, typer.Option(help="One of the trial's roles.")],
    printed_name: Annotated[
        str | None, typer.Option(help="Name shown with the user's electronic signatures.")
    ] = None,
    generate: Annotated[
        bool,
        typer.Option("--generate", help="Make a new random token and print it once on stderr, "
                     "instead of reading one from stdin."),
    ] = False,
):
    """Print one users-file line for a user: the token (read from stdin, or --generate) is kept
    only as a salted scrypt hash. Append the line to the users file (mode 600)."""
    from pydantic import ValidationError

    from services.auth import MIN_TOKEN_LENGTH, User, bearer_token, hash_token

    if generate:
        token = secrets.token_urlsafe(32)
    elif sys.stdin.isatty():
        token = getpass.getpass(f"token for {user_id}: ")
    else:
        token = sys.stdin.readline().rstrip("\r\n")
    if len(token) < MIN_TOKEN_LENGTH:
        raise _fail(f"the token is shorter than {MIN_TOKEN_LENGTH} characters; use --generate")
    if bearer_token(f"Bearer {token}") != token:
        raise _fail("the token may hold only letters, digits and -._~+/ (RFC 6750 section 2.1)")
    try:
        user = User(user_id=user_id, role=role, token_hash=hash_token(token),
                    printed_name=printed_name)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise _fail(f"--{first['loc'][0]}: {first['msg'].removeprefix('Value error, ')}") from None
    if generate:
        typer.echo(f"token for {user_id} (shown once; give it to the user): {token}", err=True)
    typer.echo(orjson.dumps(user.model_dump(exclude_none=True)).decode())


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)
