"""How a procedure step fails, and whether the outcome of the failure is known."""

from __future__ import annotations


class Refused(Exception):
    """A precondition failed before anything changed: safe to stop, nothing to undo."""


class StepFailed(Exception):
    """A step failed after the move began.

    `known` is True only when the tool can tell exactly where every copy of the key is and which
    node can sign (for example the target never loaded the key): only then is an automatic
    rollback safe. Otherwise the procedure stops and prints each node's state and the commands
    that finish or revert the move.
    """

    def __init__(self, message: str, known: bool) -> None:
        super().__init__(message)
        self.known = known
