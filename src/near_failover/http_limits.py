"""Bounded HTTP answers (limits.py's byte bounds applied to httpx): apart from limits.py so that
a process that reads files but speaks no HTTP (the watchdog) does not load httpx."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx

from near_failover.limits import human_size


class ResponseTooLarge(httpx.DecodingError):
    """An HTTP answer whose decoded body passed the client's bound; it was not read further."""


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """Read ``response``'s body (decoded: a gzip bomb is counted by what it expands to), refusing
    it once it passes ``max_bytes``; the connection is closed either way."""
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise ResponseTooLarge(
                    f"the answer is larger than the {human_size(max_bytes)} allowed "
                    f"(read no further)", request=response.request,
                )
            chunks.append(chunk)
    finally:
        await response.aclose()
    return b"".join(chunks)


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's default verification of a client that ignores the environment (certifi's CAs),
    built once per process: httpx builds it again for every client, reading the whole CA bundle
    each time (about 45 ms and 1.2 MB kept per client; an agent has one client per node, its
    alerts' and its API peers')."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


class BoundedAsyncClient(httpx.AsyncClient):
    """An httpx client whose every non-streamed answer is read with ``read_capped``; the default
    verification shares one TLS context (no client uses HTTP/2, so the ALPN httpcore sets on it
    is the same for all)."""

    def __init__(self, *, max_response_bytes: int, **kwargs: Any) -> None:
        if kwargs.get("verify", True) is True and kwargs.get("trust_env", True) is False and "transport" not in kwargs:
            kwargs["verify"] = default_tls()
        super().__init__(**kwargs)
        self.max_response_bytes = max_response_bytes

    async def send(self, request: httpx.Request, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        response = await super().send(request, stream=True, **kwargs)
        if stream:
            return response
        body = await read_capped(response, self.max_response_bytes)
        # What Response.aread() stores: the decoded body, so .content/.text/.json() work as usual.
        response._content = body
        return response
