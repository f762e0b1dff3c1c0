"""How a `near-failover` command ends when something goes wrong: one line, never a traceback.

An input error (a flag click refuses, or a file, field or node the operator named: config.json,
a key file, the inventory) exits 2 with one line naming it and the fix. Any other exception is a
bug: it exits 1 with one line saying where its full traceback was written
(``$XDG_STATE_HOME/near-failover/crash-<UTC>.log``, by default under ``~/.local/state``; mode
0600, redacted like every other output).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

import typer
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click, and raises its exceptions
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from near_failover.console import console, plain
from near_failover.redact import redact_text

EXIT_REFUSED: Final = 1
EXIT_CRASH: Final = 1  # a bug: the crash log says where
EXIT_INPUT: Final = 2
CRASH_LOG_MODE: Final = 0o600
_MESSAGE_LIMIT: Final = 300
_ABORTS: Final = tuple({typer.Abort, getattr(click_exceptions, "Abort", typer.Abort)})


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the message printed exactly as given (no markup), redacted."""
    console(stderr=True).print(Text.assemble(("error:", "bold red"), " ", plain(message)), highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    """Print ``error: <message>`` and end the command with ``code``."""
    print_error(message)
    raise typer.Exit(code)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def input_error_types() -> tuple[type[Exception], ...]:
    """Exceptions that mean the operator's input is wrong; their message names the file or field,
    what is expected and the fix. Imported late: the CLI loads these modules only when used."""
    from near_failover.inventory import InventoryError
    from near_failover.neard.config import ConfigError
    from near_failover.neard.jsonc import JsoncError
    from near_failover.neard.keys import KeyFileError

    return (ConfigError, KeyFileError, JsoncError, InventoryError)


def crash_log_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where crash logs go: ``$XDG_STATE_HOME/near-failover``, or ``~/.local/state/near-failover``
    (the XDG base directory spec ignores a relative XDG_STATE_HOME)."""
    state = environ.get("XDG_STATE_HOME", "")
    root = Path(state) if state and Path(state).is_absolute() else Path(environ.get("HOME") or Path.home()) / ".local" / "state"
    return root / "near-failover"


def write_crash_log(exc: BaseException, argv: Sequence[str], directory: Path) -> Path:
    """The exception's full traceback, redacted, in a new 0600 file; raises OSError if it cannot."""
    from near_failover import __version__

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"crash-{stamp}.log"
    report = (
        f"near-failover {__version__} crashed at {stamp}\n"
        f"command: {' '.join(argv)}\n\n" + "".join(traceback.format_exception(exc))
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), CRASH_LOG_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(redact_text(report))
    return path


def crash_line(exc: BaseException, argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> str:
    """The one line an unexpected exception gets; writes its traceback to the crash log."""
    what = one_line(f"{type(exc).__name__}: {exc}")[:_MESSAGE_LIMIT]
    try:
        directory = crash_log_dir(environ)
        path = write_crash_log(exc, argv, directory)
    except (OSError, RuntimeError) as write_error:
        reason = getattr(write_error, "strerror", None) or str(write_error)
        return f"unexpected {what}; its traceback could not be written ({reason}); set XDG_STATE_HOME to a writable directory and run it again to get one"
    return f"unexpected {what}; this is a bug: the full traceback is in {path}, please report it"


def usage_error_line(exc: click_exceptions.UsageError) -> str:
    where = exc.ctx.command_path if exc.ctx is not None else "near-failover"
    return f"{one_line(exc.format_message())} (see `{where} --help`)"


class SafeTyperGroup(TyperGroup):
    """The top-level command group: runs a command and turns every way it can fail into one line
    and an exit code (0 ok, 1 refused or a bug, 2 an input error)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name, complete_var, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: Sequence[str] | None, prog_name: str | None, complete_var: str | None, extra: dict[str, Any]) -> int:
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            return result if isinstance(result, int) else 0
        except click_exceptions.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # the help text, as click prints it for a bare command
                return exc.exit_code
            print_error(usage_error_line(exc))
            return EXIT_INPUT
        except click_exceptions.ClickException as exc:
            print_error(one_line(exc.format_message()))
            return exc.exit_code
        except _ABORTS:  # the operator answered no, or closed the prompt
            print_error("aborted")
            return EXIT_REFUSED
        except Exception as exc:  # the last resort: no traceback on the terminal, ever
            if isinstance(exc, input_error_types()):
                print_error(one_line(str(exc)))
                return EXIT_INPUT
            print_error(crash_line(exc, [prog_name or "near-failover", *(args if args is not None else sys.argv[1:])]))
            return EXIT_CRASH
