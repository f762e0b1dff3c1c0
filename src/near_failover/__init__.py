"""near-failover: fenced, verified, journaled failover for NEAR Protocol validators."""

# Every entry point (the CLI, the agent, the watchdog) imports this package first, so every
# process logs through near_failover.logs from its start: tracebacks without local variables, the
# one redaction rule set on every event, and no colour codes unless the output is a terminal.
# The format and level an agent exported reach the processes it spawns the same way.
#
# Configured on first use: the moment structlog is imported (no log line can be written before),
# not when this package is. A process that never logs through structlog (the watchdog, which
# must stay small) then never loads structlog and rich at all.
from __future__ import annotations

import importlib
import importlib.machinery
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import ModuleType

__version__ = "0.1.0"


def _configure_logging() -> None:
    """near_failover.logs configures structlog from the environment when it is first imported;
    when it is the module importing structlog, it does so itself once it is complete."""
    if "near_failover.logs" not in sys.modules:
        importlib.import_module("near_failover.logs")


# Optional parts a library loads at import whenever they happen to be installed, which
# near-failover never uses, kept out while that library loads (free to load later, if ever asked
# for): httpx's own command-line client (rich's progress bars and syntax, pygments, click: 1.4 MB in
# every process that speaks HTTP), structlog's rich tracebacks and pretty-printed locals
# (near_failover.logs writes tracebacks as plain text: rich's pretty printer and attrs, 2 MB).
_UNUSED_EXTRAS: dict[str, tuple[str, ...]] = {"httpx": ("httpx._main",), "structlog": ("rich.traceback", "rich.pretty")}


def _exec_without(load: Callable[[ModuleType], None], extras: tuple[str, ...], module: ModuleType) -> None:
    """Runs a library's module with ``extras`` unimportable (its ``try: import ... except
    ImportError`` takes its fallback), then makes them importable again."""
    kept_out = [name for name in extras if name not in sys.modules]
    for name in kept_out:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "cannot be imported"
    try:
        load(module)
    finally:
        for name in kept_out:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


class _ConfigureOnImport:  # a meta path finder (importlib.abc would load zipfile and more)
    """Finds nothing itself: it wraps the loaders of structlog and httpx, so that they load
    without their unused extras and logging is configured right after structlog is loaded, then
    steps aside."""

    def __init__(self) -> None:
        self.waiting = set(_UNUSED_EXTRAS) - set(sys.modules)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.waiting:
            return None
        self.waiting.discard(fullname)
        if not self.waiting:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        load = loader.exec_module

        def exec_then_configure(module: ModuleType) -> None:
            _exec_without(load, _UNUSED_EXTRAS[fullname], module)
            if fullname == "structlog":
                _configure_logging()

        loader.exec_module = exec_then_configure  # type: ignore[method-assign]
        return spec


if "structlog" in sys.modules:  # loaded before this package (or this package reloaded): now
    importlib.import_module("near_failover.logs").configure_from_env()
if set(_UNUSED_EXTRAS) - set(sys.modules) and not any(type(finder).__name__ == "_ConfigureOnImport" for finder in sys.meta_path):
    sys.meta_path.insert(0, _ConfigureOnImport())


def installed_version() -> str:
    """The version pip or pipx installed (the wheel's metadata), else this tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("near-failover")
    except PackageNotFoundError:
        return __version__
