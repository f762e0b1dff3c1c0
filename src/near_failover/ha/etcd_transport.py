"""The transport to etcd's v3 JSON gateway: HTTP with httpx, TLS, authentication, and retries
across endpoints within one time budget. What the keys mean (leases, the leader, members) is
ha/etcd.py's business; this module only knows how to get one answer from the cluster.

Every request has a timeout, and the endpoints are tried in order (starting from the last one that
answered) within one budget, ``operation_timeout`` (the inventory's ``retry_timeout``). Only
answers that say "this member cannot serve now" (no leader, timeout, unreachable) move on to the
next endpoint; any other error from etcd is an EtcdRequestError.
"""

from __future__ import annotations

import errno
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

from near_failover.ha.lease import LeaseConfigError, LeaseStoreError, LeaseStoreUnavailable
from near_failover.http_limits import BoundedAsyncClient, ResponseTooLarge
from near_failover.limits import ETCD_ANSWER_BYTES

# gRPC codes the gateway returns when a member cannot serve right now (retry on another member):
# UNKNOWN (2, e.g. "raft: stopped"), DEADLINE_EXCEEDED (4), RESOURCE_EXHAUSTED (8), UNAVAILABLE (14).
_RETRY_ELSEWHERE = {2, 4, 8, 14}
NOT_FOUND = 5
# Never give one endpoint less than this, however many endpoints share the budget.
_MIN_ATTEMPT_TIMEOUT = 0.3
# etcd's ErrGRPCAuthOldRevision (api/v3rpc/rpctypes): the token predates a change to etcd's auth
# store (a user or role added, a permission granted, a password changed). The gateway answers it
# as HTTP 400 {"error": <this>, "message": <this>, "code": 3} (gRPC InvalidArgument). A JWT
# token carries the auth revision it was issued at, so any such change makes it old; a simple
# token only when the change races the request. etcd's Go client authenticates again and retries
# on it as on "invalid auth token" (client/v3 retry_interceptor.go, shouldRefreshToken).
_AUTH_OLD_REVISION = "etcdserver: revision of auth store is old"


class _TryElsewhere(Exception):
    """This member cannot serve now (it could not authenticate us): the next endpoint may."""


class EtcdRequestError(LeaseStoreError):
    """etcd refused a request (``code`` is the gRPC status code)."""

    def __init__(self, endpoint: str, path: str, code: int | None, message: str) -> None:
        self.endpoint = endpoint
        self.code = code
        super().__init__(f"etcd at {endpoint} refused {path}: {message} (code {code})")


class EtcdTransport:
    """One etcd cluster's endpoints, reached over HTTP(S), with authentication if configured."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        operation_timeout: float = 2.0,
        local_address: str | None = None,
        tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        if not endpoints:
            raise LeaseStoreError("the etcd lease store needs at least one endpoint URL")
        if operation_timeout <= 0:
            raise LeaseStoreError(f"operation_timeout must be positive, got {operation_timeout}")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.operation_timeout = operation_timeout
        self._preferred = 0
        # Proxies from the environment must not sit between an agent and its lease store.
        # local_address: the source address of every request (a host with several networks);
        # tls: the CA and client certificate for https:// endpoints (the system's CAs without it).
        transport = httpx.AsyncHTTPTransport(local_address=local_address, verify=tls if tls is not None else True)
        self._client = BoundedAsyncClient(max_response_bytes=ETCD_ANSWER_BYTES, trust_env=False, transport=transport)
        # etcd's authentication: (user, password) exchanged for a token, again when it expires.
        self._credentials = credentials
        self._token: str | None = None

    @property
    def where(self) -> str:
        return ", ".join(self.endpoints)

    async def close(self) -> None:
        await self._client.aclose()

    async def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to the first endpoint that can serve it, within operation_timeout."""
        deadline = time.monotonic() + self.operation_timeout
        count = len(self.endpoints)
        share = max(self.operation_timeout / count, _MIN_ATTEMPT_TIMEOUT)
        failures: list[str] = []
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failures.append(f"{endpoint}: not tried, the {self.operation_timeout:g}s budget was spent")
                continue
            attempt = min(share, remaining)
            try:
                response = await self._post(endpoint, path, body, attempt)
            except _TryElsewhere as exc:
                failures.append(f"{endpoint}: {exc}")
                continue
            except httpx.TimeoutException:
                failures.append(f"{endpoint}: no answer within {attempt:.2g}s")
                continue
            except ResponseTooLarge as exc:
                failures.append(f"{endpoint}: {exc}")
                continue
            except (httpx.TransportError, ssl.SSLError) as exc:
                # A TLS 1.3 alert (a refused client certificate) can arrive while the answer is
                # read, where httpx passes the bare ssl.SSLError on.
                failures.append(f"{endpoint}: {_transport_cause(exc, tls=endpoint.startswith('https://'))}")
                continue
            data = self._decode(endpoint, path, response)
            error = data.get("error")
            if response.status_code == 200 and error is None:
                self._preferred = index
                return data
            code, message = _error_of(data)
            if code in _RETRY_ELSEWHERE or (code is None and response.status_code >= 500):
                failures.append(f"{endpoint}: {message}")
                continue
            raise EtcdRequestError(endpoint, path, code, message)
        raise LeaseStoreUnavailable(self.endpoints, "; ".join(failures))

    async def _post(self, endpoint: str, path: str, body: dict[str, Any], timeout: float) -> httpx.Response:
        """One POST; with credentials, under a token, fetched again once if etcd no longer takes it."""
        if self._credentials is None:
            return await self._client.post(endpoint + path, json=body, timeout=timeout)
        deadline = time.monotonic() + timeout
        for renew in (False, True):
            if self._token is None or renew:
                self._token = await self._authenticate(endpoint, max(0.05, deadline - time.monotonic()))
            response = await self._client.post(
                endpoint + path, json=body, headers={"Authorization": self._token}, timeout=max(0.05, deadline - time.monotonic())
            )
            if not _token_refused(response):
                break
        return response

    async def _authenticate(self, endpoint: str, timeout: float) -> str:
        assert self._credentials is not None
        user, password = self._credentials
        response = await self._client.post(endpoint + "/v3/auth/authenticate", json={"name": user, "password": password}, timeout=timeout)
        data = self._decode(endpoint, "/v3/auth/authenticate", response)
        if response.status_code == 200 and isinstance(data.get("token"), str):
            return str(data["token"])
        code, message = _error_of(data)
        if code in _RETRY_ELSEWHERE or (code is None and response.status_code >= 500):
            raise _TryElsewhere(f"cannot authenticate now: {message}")
        raise EtcdRequestError(endpoint, "/v3/auth/authenticate", code, f"{message} for user {user!r}; check [lease] username and password_file")

    @staticmethod
    def _decode(endpoint: str, path: str, response: httpx.Response) -> dict[str, Any]:
        # Stream endpoints (keepalive) answer newline-delimited JSON; one request, one line.
        text = response.text.strip().splitlines()[0] if response.text.strip() else ""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if response.status_code >= 500:
                return {"error": f"HTTP {response.status_code}"}
            raise LeaseStoreError(
                f"{endpoint}{path} answered HTTP {response.status_code} with no etcd JSON "
                f"({text[:120]!r}); is this etcd >= 3.4 with its v3 gateway on this port?"
            )
        return data


def tls_context(ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext:
    """The TLS settings of ``[lease]`` as one context; a file that cannot be used is named."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise LeaseConfigError(f"[lease] ca_file {ca_file}: cannot load the CA certificate ({exc}); it must be a PEM file") from None
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise LeaseConfigError(
                f"[lease] cert_file {cert_file} / key_file {key_file}: cannot load the client certificate "
                f"({exc}); both must be PEM files and the key must match the certificate"
            ) from None
    return context


def _transport_cause(exc: BaseException, tls: bool = False) -> str:
    """The OS error under httpx's wrapping ("connection refused"), else httpx's own text."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):  # an OSError whose errno says nothing ("operation not permitted")
            return f"TLS: {seen.reason or seen} (check [lease] ca_file, cert_file, key_file)"
        if isinstance(seen, OSError) and seen.errno:
            cause = f"{os.strerror(seen.errno).lower()} ({type(exc).__name__})"
            if tls and seen.errno in (errno.EPIPE, errno.ECONNRESET):
                # With TLS 1.3 a server that refuses our client certificate just drops the connection.
                cause += "; over TLS this is how etcd refuses a client certificate it does not accept: check [lease] cert_file and key_file"
            return cause
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _code(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).isdigit() else None


def _error_of(data: dict[str, Any]) -> tuple[int | None, str]:
    """(gRPC code, message) of a gateway error body; stream errors nest it under "error"."""
    error = data.get("error")
    if isinstance(error, dict):
        return _code(error.get("grpc_code", error.get("code"))), str(error.get("message", error))[:300]
    return _code(data.get("code")), str(data.get("message") or error or data)[:300]


def _token_refused(response: httpx.Response) -> bool:
    """etcd no longer takes our token: HTTP 401 "invalid auth token" (expired or revoked), or
    HTTP 400 "revision of auth store is old" (issued before a change to etcd's auth store)."""
    if response.status_code == 401:
        return True
    if response.status_code != 400:
        return False
    text = response.text.strip()
    try:
        data = json.loads(text.splitlines()[0]) if text else None
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    code, message = _error_of(data)
    return code == 3 and _AUTH_OLD_REVISION in message
