"""URLs checked by purpose: neard's RPC and the agent API are http(s) with a host, no credentials.

A password in a URL would be shown wherever the URL is named (errors, `status --json`, the journal,
`GET /cluster`), so it is refused, and the refusal shows the URL redacted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from near_failover.redact import redact_url


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host (port optional) and no credentials; None if it is."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"it is not a valid URL ({exc})"
    try:
        port = parts.port
    except ValueError:
        return "its port is not a number from 1 to 65535"
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"it is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"the scheme must be http or https, not {parts.scheme or 'missing'}"
    if parts.username is not None or parts.password is not None:
        return "it carries credentials (user:password@), which would show wherever the URL is named; remove them"
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "its port is not a number from 1 to 65535"
    return None


def checked_http_url(url: str, purpose: str, example: str) -> str:
    """``url`` without a trailing slash, or a ValueError naming ``purpose`` and showing it redacted."""
    problem = http_url_problem(url)
    if problem is not None:
        raise ValueError(f'expected {purpose} such as "{example}", got {redact_url(url)!r}: {problem}')
    return url.rstrip("/")
