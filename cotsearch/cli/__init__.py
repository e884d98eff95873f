"""The `cotsearch` command line: a thin layer over the Python API, a module per group of
commands (model, search, runs, convert) on one Typer app (app.py). Every command imports
torch, timm or Ray only in its body, so `cotsearch --help` and the torch-free commands start fast."""

from __future__ import annotations

import os
import sys

import typer

# each registers its commands on the app
from cotsearch.cli import convert, model, runs, search  # noqa: F401
from cotsearch.cli.app import app, err_console
from cotsearch.errors import CotsearchError
from cotsearch.process.signals import StopSignals


def main() -> None:
    """Entry point: user mistakes print one line and exit 2, never a traceback; Ctrl-C, SIGTERM
    and SIGHUP stop every command alike, which exits with the signal's code (cotsearch.process.signals)."""
    stop = StopSignals()
    try:
        with stop.handling():
            code = app(standalone_mode=False)
            sys.stdout.flush()  # here, where a closed pipe is caught below, not at exit
    except CotsearchError as e:
        _fail(str(e), stop.exit_code if stop.pressed.is_set() else 2)  # a stopped command: its signal's code
    except typer.TyperException as e:  # click's usage errors: a bad option, a missing argument
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        if type(e).__name__ == "NoArgsIsHelpError":
            print(message)
            sys.exit(0)
        command = getattr(getattr(e, "ctx", None), "command_path", "cotsearch")
        _fail(f"{message} (see '{command} --help')", getattr(e, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", stop.exit_code)
    except BrokenPipeError:  # `cotsearch presets | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    if stop.pressed.is_set():  # typer returns 130 for a KeyboardInterrupt, whichever signal raised it
        _fail("interrupted", stop.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err_console.print(f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)

