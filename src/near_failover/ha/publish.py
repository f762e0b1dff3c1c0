"""When the agent writes its member record: when it changed, or before it grows too old.

Every loop wrote it (a store write transaction a second per agent, with sqlite a thread hop and
an fsync), though an idle agent's record changes only in its head height. A standby is a
candidate only while its record is younger than `record_max_age` (decide.py), so an unchanged
record is written again once half that old: always fresh for the others, at most half as often.
"""

from __future__ import annotations

from near_failover.ha.lease import MemberRecord

# What changes on its own every block or every write, and is shown, never decided on.
PASSING = {"head_height", "updated_at"}


def record_due(record: MemberRecord, written: MemberRecord | None, now: float, max_age: float) -> bool:
    """Pure: whether ``record`` must be written, ``written`` being the last one the store took
    from this agent (None: not known to be there) and ``now`` on the records' clock."""
    if written is None or now - written.updated_at >= max_age / 2:
        return True
    return record.model_dump(exclude=PASSING) != written.model_dump(exclude=PASSING)
