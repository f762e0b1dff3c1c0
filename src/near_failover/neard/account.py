"""NEAR account id syntax, so a typo in a pool id is caught before it reaches config.json."""

from __future__ import annotations

import re

# nearcore core/parameters AccountId rules: 2..=64 chars, lowercase alphanumerics separated by
# single '-', '_' or '.', no separator at either end.
_ACCOUNT_ID = re.compile(r"^(([a-z\d]+[\-_])*[a-z\d]+\.)*([a-z\d]+[\-_])*[a-z\d]+$")


def account_id_problem(account_id: str) -> str | None:
    """Why `account_id` is not a valid NEAR account id, or None if it is."""
    if not 2 <= len(account_id) <= 64:
        return f"{account_id!r} must be 2 to 64 characters long"
    if not _ACCOUNT_ID.fullmatch(account_id):
        return (
            f"{account_id!r} is not a NEAR account id: lowercase letters and digits, "
            "separated by single '.', '-' or '_'"
        )
    return None
