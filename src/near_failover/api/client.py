"""The client side of the agents' API, shared by the agents (failsafe calls) and the CLI.

One place decides how an agent's certificate is verified ([lease] api_ca_file, else the system's
CAs) and how the bearer token is sent, so the failsafe and the CLI cannot drift apart.
"""

from __future__ import annotations

import ssl

import httpx

from near_failover.inventory import Inventory, InventoryError
from near_failover.limits import API_ANSWER_BYTES, BoundedAsyncClient

Verify = ssl.SSLContext | bool


def api_verify(inventory: Inventory) -> Verify:
    """How https:// agent APIs are verified: the inventory's api_ca_file, else the system's CAs."""
    ca = inventory.lease.api_ca_file if inventory.lease else None
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InventoryError(f"[lease] api_ca_file {ca}: cannot load it as a CA certificate ({reason}); point it at the PEM file of the CA that signed the agents' api_cert_file") from None


def api_client(verify: Verify, token: str | None, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for agent APIs: never the environment's proxies, always verified TLS, answers
    capped in size."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return BoundedAsyncClient(max_response_bytes=API_ANSWER_BYTES, timeout=timeout, trust_env=False, verify=verify, headers=headers)
