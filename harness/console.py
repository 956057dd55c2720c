"""How the command line meets the terminal: warnings as one line, and Ctrl-C as one line
and exit code 130 however early it comes (while options are read, or inside an import).

Light on purpose, like :mod:`harness.cli`: click and the standard library only.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

EXIT_SIGINT = 128 + signal.SIGINT
"""The exit code of a run stopped by Ctrl-C (the shell's convention, 128 + the signal)."""


class _EarlyInterrupt(BaseException):
    """A Ctrl-C that reached the command line (not a KeyboardInterrupt, so click does not
    turn it into a blank line, ``Aborted!`` and exit code 1)."""


class InterruptibleGroup(click.Group):
    """click's group, but a Ctrl-C anywhere (even while the command is still importing)
    is one line and exit code 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _EarlyInterrupt from None

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        interrupted: list[int] = []

        def note(signum: int, frame: Any) -> None:
            interrupted.append(signum)
            raise KeyboardInterrupt

        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, note) if main_thread else None
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except (click.exceptions.Abort, _EarlyInterrupt):
            click.echo("interrupted by SIGINT", err=True)
            sys.exit(EXIT_SIGINT)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except Exception:
            # Ctrl-C inside an import can surface as another error (a module left half
            # imported): when one came, that is what happened
            if interrupted:
                click.echo("interrupted by SIGINT", err=True)
                sys.exit(EXIT_SIGINT)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        sys.exit(code if isinstance(code, int) else 0)


def one_line_warning(message: Warning | str, *where: Any) -> str:
    """``warnings.formatwarning`` that writes a warning as one line on stderr (Python's
    default adds the source file and line: ``where``, which this leaves out)."""
    text = str(message).replace("\n", "\\n")
    return f"harness: warning: {text}\n"
