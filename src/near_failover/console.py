"""The CLI's rich consoles. Written to a file or a pipe (logs, CI, `make demo | tee`), rich would
cut every table to 80 columns; there they get room for the widest table instead."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 160


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPE_WIDTH)
