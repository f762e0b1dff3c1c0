"""The CLI's rich consoles, and how text that is not ours gets onto them.

Written to a file or a pipe (logs, CI, `make demo | tee`), rich would cut every table to 80
columns; there they get room for the widest table instead.

Rich reads `[...]` in a printed string as markup: a node's RPC answer, a path or an exception
message holding `[/]` would crash the print, and `[lease]` would vanish. Everything that did not
come from our own code goes through `safe` (inside markup we write) or `plain` (a table cell, a
whole line), which also redact it (near_failover.redact).
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from near_failover.redact import redact_text

PIPE_WIDTH = 160


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPE_WIDTH)


def safe(value: Any) -> str:
    """``value`` redacted and escaped, to put inside a markup string of our own."""
    return escape(redact_text(str(value)))


def plain(value: Any, style: str = "") -> Text:
    """``value`` redacted, as text rich prints exactly (a table cell, a line)."""
    return Text(redact_text(str(value)), style=style)
