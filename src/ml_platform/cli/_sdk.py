"""The user commands' one door to the SDK: connection options, the client, and exit codes.

Every SDK error becomes ONE line on stderr and an exit code that means something
(``EXIT_CODES_HELP`` is what ``mlp --help`` prints); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from ml_platform.cli._common import err_console

if TYPE_CHECKING:
    from ml_platform.client import Client

__all__ = [
    "EXIT_AUTH",
    "EXIT_CODES_HELP",
    "EXIT_CONFLICT",
    "EXIT_CONNECTION",
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "Connection",
    "connect",
    "current_connection",
    "error_line",
    "exit_code",
    "handle_errors",
    "set_connection",
]

EXIT_OK = 0
EXIT_FAILED = 1  # a job failed or was cancelled; any other error
EXIT_USAGE = 2  # Typer/Click's own code for bad arguments
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5  # conflict or validation
EXIT_CONNECTION = 6

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 job failed or cancelled, or another error; 2 usage error; "
    "3 authentication or permission (401/403); 4 not found (404); "
    "5 conflict or invalid request (409/412/400/422); 6 cannot reach the platform."
)

_META_KEY = "ml_platform.connection"


@dataclass(frozen=True)
class Connection:
    """What the global options said; None means: let the SDK resolve it (env, credentials)."""

    url: str | None = None
    api_key: str | None = None
    grpc_target: str | None = None
    debug: bool = False


def set_connection(ctx: typer.Context, connection: Connection) -> None:
    ctx.meta[_META_KEY] = connection


def current_connection(ctx: typer.Context | None) -> Connection:
    found = ctx.meta.get(_META_KEY) if ctx is not None else None
    return found if isinstance(found, Connection) else Connection()


def exit_code(exc: BaseException) -> int:
    """The one mapping from an error to the process's exit code."""
    from ml_platform.client import (
        APIConnectionError,
        AuthenticationError,
        ConflictError,
        PermissionDeniedError,
        ResourceNotFoundError,
        ValidationError,
    )

    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return EXIT_AUTH
    if isinstance(exc, ResourceNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConflictError | ValidationError | ValueError):
        return EXIT_CONFLICT
    if isinstance(exc, APIConnectionError):
        return EXIT_CONNECTION
    return EXIT_FAILED  # JobFailedError, 429 after retries, 5xx, timeouts, local I/O


def error_line(exc: BaseException) -> str:
    """One line a person can act on: the server's detail, its field errors, status and id."""
    from ml_platform.client import APIConnectionError, APIStatusError, AuthenticationError

    if isinstance(exc, APIStatusError):
        text = exc.detail or exc.message
        extra = [e for e in exc.errors if e.message and e.message not in text]
        if extra:
            text += ": " + "; ".join(
                f"{e.path}: {e.message}" if e.path else e.message for e in extra
            )
        where = f"{exc.status_code}" + (f", request {exc.request_id}" if exc.request_id else "")
        if isinstance(exc, AuthenticationError):
            text += " (check --api-key, ML_PLATFORM_API_KEY or `mlp login`)"
        return f"{text} ({where})"
    if isinstance(exc, APIConnectionError):
        return exc.message  # the SDK's: what it could not reach, and why
    if isinstance(exc, FileNotFoundError) and exc.filename is None:
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def fail_with(exc: BaseException, debug: bool) -> typer.Exit:
    """Print ``exc`` as one line (plus the traceback under ``--debug``); the Exit to raise."""
    if debug:
        err_console.print(
            "".join(traceback.format_exception(exc)), markup=False, highlight=False, end=""
        )
    err_console.print(f"[bold red]error:[/] {_escape(error_line(exc))}", soft_wrap=True)
    return typer.Exit(exit_code(exc))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(text.split()))


@contextmanager
def handle_errors(ctx: typer.Context | None) -> Iterator[None]:
    """Turn the SDK's (and local I/O's) errors into one line and an exit code."""
    from ml_platform.client import MLPlatformError

    try:
        yield
    except (MLPlatformError, ValueError, OSError, TimeoutError) as exc:
        raise fail_with(exc, current_connection(ctx).debug) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


@contextmanager
def connect(ctx: typer.Context, *, max_retries: int | None = None) -> Iterator[Client]:
    """A ``Client`` from the global options (else env, else the credentials file)."""
    from ml_platform.client import Client

    options = current_connection(ctx)
    with handle_errors(ctx):
        extra: dict[str, Any] = {} if max_retries is None else {"max_retries": max_retries}
        with Client(
            base_url=options.url,
            api_key=options.api_key,
            grpc_target=options.grpc_target,
            **extra,
        ) as client:
            yield client
