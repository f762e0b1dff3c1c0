"""The etcd lease store, through etcd's v3 JSON gateway (``/v3/...``, etcd >= 3.4) with httpx.

Keys, per validator account (one pool = one prefix)::

    /near-failover/<account>/leader          {"member": ..., "ttl": ...}, attached to the leader's lease
    /near-failover/<account>/members/<name>  a MemberRecord, attached to that member's own lease
    /near-failover/<account>/pause           present while automatic decisions are paused
    /near-failover/<account>/handover        {"to": ..., "from": ..., "generation": ...}: the lease
                                             reserved for "to" by its last holder, on a lease of its ttl

The leader key is created in a transaction whose only compare is ``create_revision == 0`` (the key
is absent); its create revision is the **fencing generation**: etcd's revision only grows, so a
later leader always has a larger generation. Renewing keeps the lease alive *and* checks, in a
transaction, that the key still exists with our lease and our create revision: a live lease whose
key was deleted or taken over is not leadership.

How a request reaches etcd (HTTP, TLS, authentication, retries across endpoints within one
budget) is ha/etcd_transport.py; this module is what the keys mean.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from pydantic import ValidationError

from near_failover.ha.etcd_transport import NOT_FOUND, EtcdRequestError, EtcdTransport
from near_failover.ha.lease import (
    ClusterView,
    Handover,
    LeaderInfo,
    LeaderLease,
    LeaseStore,
    LeaseStoreError,
    MemberRecord,
    lease_clock,
)

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "/near-failover"
def _ttl(value: Any) -> int:
    """A number etcd's gateway sends as a JSON string or number (int64 fields are strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return int(value)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(key: str) -> str:
    """The range end that selects every key starting with ``key`` (etcd's prefix convention)."""
    raw = bytearray(key.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return _b64("\0")
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode("ascii")


class EtcdLeaseStore(LeaseStore):
    """The production lease store: an etcd cluster (three members recommended)."""

    def __init__(
        self,
        endpoints: list[str],
        account_id: str,
        *,
        operation_timeout: float = 2.0,
        prefix: str = DEFAULT_PREFIX,
        local_address: str | None = None,
        tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.etcd = EtcdTransport(endpoints, operation_timeout=operation_timeout, local_address=local_address, tls=tls,
                                  credentials=credentials)
        self.account_id = account_id
        self._prefix = f"{prefix.rstrip('/')}/{account_id}/"
        self._member_leases: dict[str, tuple[str, int]] = {}

    @property
    def endpoints(self) -> list[str]:
        return self.etcd.endpoints

    async def _request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.etcd.request(path, body)

    # --- keys ------------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.etcd.where

    @property
    def leader_key(self) -> str:
        return self._prefix + "leader"

    @property
    def handover_key(self) -> str:
        return self._prefix + "handover"

    @property
    def pause_key(self) -> str:
        return self._prefix + "pause"

    def member_key(self, name: str) -> str:
        return self._prefix + "members/" + name

    # --- leases ----------------------------------------------------------------------------------

    async def _grant(self, ttl: float) -> tuple[str, int]:
        answer = await self._request("/v3/lease/grant", {"TTL": max(1, math.ceil(ttl))})
        if answer.get("error") or "ID" not in answer:
            raise LeaseStoreError(f"etcd did not grant a lease: {str(answer.get('error') or answer)[:300]}")
        with _answer_shape(self.where, "/v3/lease/grant"):
            return str(answer["ID"]), _ttl(answer.get("TTL", 0))

    async def _keepalive(self, lease_id: str) -> int:
        """The lease's new TTL, 0 when it no longer exists."""
        answer = await self._request("/v3/lease/keepalive", {"ID": lease_id})
        with _answer_shape(self.where, "/v3/lease/keepalive"):
            result = answer.get("result", answer)
            return _ttl(result.get("TTL", 0))

    async def _revoke_quietly(self, lease_id: str) -> None:
        """Revoke a lease we no longer need; failing is harmless (it expires by itself)."""
        try:
            await self._request("/v3/lease/revoke", {"ID": lease_id})
        except EtcdRequestError as exc:
            if exc.code != NOT_FOUND:
                log.warning("lease revoke refused", lease=lease_id, error=str(exc))
        except LeaseStoreError as exc:
            log.warning("lease revoke failed; it will expire by itself", lease=lease_id, error=str(exc))

    # --- leader ----------------------------------------------------------------------------------

    async def acquire_leader(self, member: str, ttl: float) -> LeaderLease | None:
        sent = lease_clock()
        lease_id, granted = await self._grant(ttl)
        key, handover = _b64(self.leader_key), _b64(self.handover_key)
        value = _b64(json.dumps({"member": member, "ttl": granted, "acquired_at": time.time()}))
        put = [{"request_put": {"key": key, "value": value, "lease": lease_id}}]
        # No leader key and no lease handed over to anyone: ours. Else, if the lease is handed
        # over to this member, take it, the reservation deleted in the same transaction.
        absent = [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}]
        seen = [{"request_range": {"key": key}}, {"request_range": {"key": handover}}]
        try:
            answer = await self._request("/v3/kv/txn", {
                "compare": [*absent, {"key": handover, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [*put, {"request_range": {"key": key}}],
                "failure": seen,
            })
            with _answer_shape(self.where, "/v3/kv/txn"):
                kv = _range_kv(answer["responses"][0]) if not answer.get("succeeded") else None
                reserved = _range_kv(answer["responses"][1]) if not answer.get("succeeded") else None
            if kv is None and reserved is not None and self._handover_of(reserved).to == member:
                answer = await self._request("/v3/kv/txn", {
                    "compare": [*absent, {"key": handover, "target": "MOD", "result": "EQUAL",
                                          "mod_revision": str(reserved["mod_revision"])}],
                    "success": [*put, {"request_delete_range": {"key": handover}}, {"request_range": {"key": key}}],
                    "failure": seen,
                })
        except LeaseStoreError:
            # The txn may or may not have been applied; revoking the lease deletes the key if it was.
            await self._revoke_quietly(lease_id)
            raise
        try:
            with _answer_shape(self.where, "/v3/kv/txn"):
                responses = answer["responses"] if answer.get("responses") else [{}]
                kv = _range_kv(responses[-1] if answer.get("succeeded") else responses[0])
                # A retried txn that had already succeeded on the first attempt shows our own lease.
                ours = kv is not None and str(kv.get("lease")) == lease_id
                generation = int(kv["create_revision"]) if ours and kv is not None else 0
        except LeaseStoreError:
            await self._revoke_quietly(lease_id)  # deletes the key if the txn put it
            raise
        if ours:
            log.info("leader lease acquired", member=member, generation=generation, ttl=granted)
            return LeaderLease(member, generation, float(granted), sent + granted, lease_id)
        await self._revoke_quietly(lease_id)
        return None

    async def renew(self, lease: LeaderLease) -> bool:
        sent = lease_clock()
        ttl = await self._keepalive(lease.token)
        if ttl <= 0:
            return False
        key = _b64(self.leader_key)
        answer = await self._request(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": key, "target": "LEASE", "result": "EQUAL", "lease": lease.token},
                    {"key": key, "target": "CREATE", "result": "EQUAL",
                     "create_revision": str(lease.generation)},
                ],
                "success": [],
                "failure": [],
            },
        )
        if not answer.get("succeeded"):
            # Our lease is alive but the key is gone or someone else's: we are not the leader.
            await self._revoke_quietly(lease.token)
            return False
        lease.ttl = float(ttl)
        lease.valid_until = sent + ttl
        return True

    async def release(self, lease: LeaderLease) -> None:
        key = _b64(self.leader_key)
        await self._request(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": key, "target": "LEASE", "result": "EQUAL", "lease": lease.token},
                    {"key": key, "target": "CREATE", "result": "EQUAL",
                     "create_revision": str(lease.generation)},
                ],
                "success": [{"request_delete_range": {"key": key}}],
                "failure": [],
            },
        )
        await self._revoke_quietly(lease.token)
        lease.valid_until = lease_clock()

    async def hand_over(self, lease: LeaderLease, to: str) -> bool:
        """One transaction: our leader key deleted, the reservation for ``to`` put on a new
        lease of our ttl (it ends by itself if ``to`` never takes it)."""
        reservation, _granted = await self._grant(lease.ttl)
        key = _b64(self.leader_key)
        value = _b64(json.dumps({"to": to, "from": lease.member, "generation": lease.generation}))
        try:
            answer = await self._request("/v3/kv/txn", {
                "compare": [
                    {"key": key, "target": "LEASE", "result": "EQUAL", "lease": lease.token},
                    {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": str(lease.generation)},
                ],
                "success": [{"request_delete_range": {"key": key}},
                            {"request_put": {"key": _b64(self.handover_key), "value": value, "lease": reservation}}],
                "failure": [],
            })
        except LeaseStoreError:
            await self._revoke_quietly(reservation)  # applied or not, the lease is then free to all
            raise
        if not answer.get("succeeded"):
            await self._revoke_quietly(reservation)
            return False
        await self._revoke_quietly(lease.token)
        lease.valid_until = lease_clock()
        log.info("leader lease handed over", member=lease.member, to=to, generation=lease.generation)
        return True

    def _handover_of(self, kv: dict[str, Any]) -> Handover:
        try:
            value = json.loads(_unb64(kv.get("value", "")))
            return Handover(str(value["to"]), str(value["from"]), int(value["generation"]))
        except (ValueError, KeyError, TypeError):
            raise LeaseStoreError(
                f"etcd ({self.where}): the key {self.handover_key} holds no near-failover handover; "
                "delete it if nothing else owns this prefix"
            ) from None

    async def leader(self) -> LeaderInfo | None:
        answer = await self._request("/v3/kv/range", {"key": _b64(self.leader_key)})
        with _answer_shape(self.where, "/v3/kv/range"):
            kv = _range_kv(answer)
        return await self._leader_of(kv, with_ttl=True)

    async def view(self, with_ttl: bool = False) -> ClusterView:
        """One range over the pool's prefix: the leader, the members and the pause flag as of
        one revision (and, ``with_ttl``, the leader lease's time to live: one more request)."""
        answer = await self._request("/v3/kv/range", {"key": _b64(self._prefix), "range_end": _prefix_end(self._prefix)})
        with _answer_shape(self.where, "/v3/kv/range"):
            kvs = answer.get("kvs") or []
            _range_kv({"kvs": kvs})  # the same shape check as every range answer
            revision = int(answer.get("header", {}).get("revision", 0)) or None
            keys = {_unb64(kv["key"]): kv for kv in kvs}
        members_start = self.member_key("")
        members = self._records([kv for key, kv in sorted(keys.items()) if key.startswith(members_start)])
        leader = await self._leader_of(keys.get(self.leader_key), with_ttl=with_ttl)
        reserved = keys.get(self.handover_key)
        handover = self._handover_of(reserved) if reserved is not None else None
        return ClusterView(leader, tuple(members), self.pause_key in keys, revision, handover)

    async def _leader_of(self, kv: dict[str, Any] | None, with_ttl: bool) -> LeaderInfo | None:
        """The leader record in ``kv`` (the leader key's range answer); its lease's time to live
        asked of etcd only ``with_ttl``."""
        if kv is None:
            return None
        with _answer_shape(self.where, "/v3/kv/range"):
            generation = int(kv["create_revision"])
        try:
            value = json.loads(_unb64(kv.get("value", "")))
            member = str(value["member"])
        except (ValueError, KeyError, TypeError):
            raise LeaseStoreError(
                f"etcd ({self.where}): the leader key {self.leader_key} holds no near-failover "
                "leader record; delete it if nothing else owns this prefix"
            ) from None
        ttl_left: float | None = None
        lease_id = kv.get("lease")
        if lease_id and with_ttl:
            ttl_answer = await self._request("/v3/lease/timetolive", {"ID": str(lease_id)})
            # -1 when the lease has just expired and the key is about to be deleted.
            with _answer_shape(self.where, "/v3/lease/timetolive"):
                ttl_left = max(0.0, float(_ttl(ttl_answer.get("TTL", -1))))
        return LeaderInfo(
            member=member,
            generation=generation,
            ttl_left=ttl_left,
            ttl=float(value["ttl"]) if isinstance(value.get("ttl"), (int, float)) else None,
            extra={"lease": str(lease_id) if lease_id else None},
        )

    # --- members ---------------------------------------------------------------------------------

    async def put_member(self, record: MemberRecord, ttl: float | None) -> None:
        key = _b64(self.member_key(record.name))
        value = _b64(record.model_dump_json())
        if ttl is None:
            cached = self._member_leases.pop(record.name, None)
            await self._request("/v3/kv/put", {"key": key, "value": value})
            if cached:
                await self._revoke_quietly(cached[0])
            return
        wanted = max(1, math.ceil(ttl))
        for _attempt in range(2):
            lease_id = await self._member_lease(record.name, wanted)
            try:
                await self._request("/v3/kv/put", {"key": key, "value": value, "lease": lease_id})
                return
            except EtcdRequestError as exc:
                if exc.code != NOT_FOUND:  # the lease expired between keepalive and put
                    raise
                self._member_leases.pop(record.name, None)
        raise LeaseStoreError(f"etcd ({self.where}): the lease for member {record.name} kept expiring")

    async def _member_lease(self, name: str, ttl: int) -> str:
        """This member's lease, kept alive; a new one if it expired or its TTL changed."""
        cached = self._member_leases.get(name)
        if cached and cached[1] == ttl and await self._keepalive(cached[0]) > 0:
            return cached[0]
        if cached:
            await self._revoke_quietly(cached[0])
        lease_id, _granted = await self._grant(ttl)
        self._member_leases[name] = (lease_id, ttl)
        return lease_id

    async def delete_member(self, name: str) -> None:
        await self._request("/v3/kv/deleterange", {"key": _b64(self.member_key(name))})
        cached = self._member_leases.pop(name, None)
        if cached:
            await self._revoke_quietly(cached[0])

    async def members(self) -> list[MemberRecord]:
        start = self.member_key("")
        answer = await self._request(
            "/v3/kv/range", {"key": _b64(start), "range_end": _prefix_end(start)}
        )
        with _answer_shape(self.where, "/v3/kv/range"):
            kvs = answer.get("kvs") or []
            _range_kv({"kvs": kvs})  # the same shape check as every range answer
        return self._records(kvs)

    @staticmethod
    def _records(kvs: list[dict[str, Any]]) -> list[MemberRecord]:
        """The member records among ``kvs``, sorted by name; unreadable ones skipped (logged)."""
        records = []
        for kv in kvs:
            try:
                records.append(MemberRecord.model_validate_json(_unb64(kv.get("value", ""))))
            except (ValidationError, ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable member record skipped", key=str(kv.get("key"))[:100], error=str(exc)[:200])
        return sorted(records, key=lambda r: r.name)

    # --- pause -----------------------------------------------------------------------------------

    async def set_paused(self, paused: bool) -> None:
        key = _b64(self.pause_key)
        if paused:
            value = _b64(json.dumps({"paused": True, "at": time.time()}))
            await self._request("/v3/kv/put", {"key": key, "value": value})
        else:
            await self._request("/v3/kv/deleterange", {"key": key})

    async def paused(self) -> bool:
        answer = await self._request("/v3/kv/range", {"key": _b64(self.pause_key), "count_only": True})
        with _answer_shape(self.where, "/v3/kv/range"):
            return _ttl(answer.get("count", 0)) > 0

    async def close(self) -> None:
        await self.etcd.close()


class _Unexpected(LeaseStoreError):
    """etcd's answer has not the shape its v3 gateway gives (a proxy, another service, a bug)."""


@contextmanager
def _answer_shape(where: str, path: str) -> Iterator[None]:
    """Turn a malformed answer (a missing field, a list for a number, bad base64) into a
    LeaseStoreError naming the store, instead of an exception no caller expects."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise _Unexpected(
            f"etcd ({where}) answered {path} with an unexpected shape ({type(exc).__name__}: "
            f"{str(exc)[:120]}); is this etcd >= 3.4 with its v3 gateway on this port?"
        ) from None


def _range_kv(range_answer: dict[str, Any]) -> dict[str, Any] | None:
    """The first key of a range answer (or of a txn's response_range), None when absent;
    TypeError when the answer is not shaped like one (see _answer_shape)."""
    inner = range_answer.get("response_range", range_answer)
    kvs = inner.get("kvs") or []
    if not isinstance(kvs, list) or not all(isinstance(kv, dict) for kv in kvs):
        raise TypeError("kvs is not a list of key-values")
    return kvs[0] if kvs else None
