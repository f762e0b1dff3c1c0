"""The lease store: the one place where agents agree on which node may sign (Patroni's ``dcs/``).

Every store gives the same guarantees, so the agent loop is written once:

- the leader key is created only if absent, atomically, and carries a **fencing generation** that
  only ever grows: a node acting for generation N can be told apart from one acting for N+1;
- a lease that is not renewed expires after its TTL, on the store's clock, never sooner than the
  holder's own estimate (``LeaderLease.valid_until``), so the holder can fence itself in time;
- "the store cannot be reached" (``LeaseStoreUnavailable``) is never confused with "someone else
  holds the lease" (``acquire_leader`` returning None, ``renew`` returning False): the first means
  *nobody may promote*, the second means *someone else is the leader*.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from near_failover.ha.clock import lease_clock


class LeaseStoreError(Exception):
    """The store answered something this tool cannot use (a bug, a bad configuration)."""


class LeaseConfigError(LeaseStoreError):
    """The inventory asks for a store that cannot work as configured (the message says the fix)."""


class LeaseStoreUnavailable(LeaseStoreError):
    """No endpoint of the store answered in time; nobody may promote while this lasts.

    ``endpoints`` are the store's addresses (etcd URLs or the sqlite file), ``cause`` says what
    failed for each, so an operator reading the journal knows which machine to look at.
    """

    def __init__(self, endpoints: list[str] | tuple[str, ...], cause: str) -> None:
        self.endpoints = tuple(endpoints)
        self.cause = cause
        super().__init__(f"lease store unavailable ({', '.join(self.endpoints)}): {cause}")


class MemberRole(StrEnum):
    """The roles an agent publishes. The stores keep the plain string, so a newer agent may add a
    role with no migration: a record read back with a role this version does not know keeps it
    as a plain string (see ``MemberRecord.role``), which matches none of these, so such a member
    is never taken for a standby to promote nor for a fenced leader."""

    LEADER = "leader"
    STANDBY = "standby"
    FENCED = "fenced"
    STARTING = "starting"


class FenceObservation(BaseModel):
    """What an agent saw of its own neard after fencing it (procedures/observe.py), by evidence
    independent of the control that acted: ``verdict`` "no-key" (its RPC answers without the
    pool's key) or "gone" (RPC silent, port closed, no process serving the home)."""

    model_config = ConfigDict(extra="ignore")

    verdict: str
    reason: str
    observed_at: float = Field(default_factory=time.time)


class MemberRecord(BaseModel):
    """What one agent publishes about itself: its role and health, kept alive by its own lease.

    ``fenced_generation`` is the agent's own statement that it fenced its neard for that lease
    generation, and ``fence_observation`` what it then saw of its neard: together, one of the
    fence proofs a standby may use before promoting (a record without the observation is not).
    """

    model_config = ConfigDict(extra="ignore")

    name: str
    # Left to right: a known role becomes the enum, an unknown one stays the string it was.
    role: MemberRole | str = Field(default=MemberRole.STANDBY, union_mode="left_to_right")
    healthy: bool = False
    problems: list[str] = Field(default_factory=list)
    priority: int = 0
    generation: int | None = None
    fenced_generation: int | None = None
    fence_observation: FenceObservation | None = None
    head_height: int | None = None
    api_url: str | None = None
    updated_at: float = Field(default_factory=time.time)
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The name is the last part of a store key: a "/" would put it under another prefix.
        if not value or "/" in value or value != value.strip():
            raise ValueError(f"expected a node name without '/' or surrounding spaces, got {value!r}")
        return value


@dataclass
class LeaderLease:
    """The leader key as held by this process.

    ``valid_until`` is a ``lease_clock()`` instant taken *before* the request that created or
    last renewed the lease was sent, plus the TTL the store granted: the store cannot expire the
    lease earlier, so fencing before ``valid_until`` is always in time. ``renew`` moves it forward.
    ``token`` is the store's own handle (etcd's lease id; the generation for sqlite).
    """

    member: str
    generation: int
    ttl: float
    valid_until: float
    token: str

    def remaining(self) -> float:
        """Seconds left before the lease may have expired on the store (negative once past)."""
        return self.valid_until - lease_clock()


@dataclass(frozen=True)
class LeaderInfo:
    """The leader as anyone can see it; ``ttl_left`` is None when the store cannot tell."""

    member: str
    generation: int
    ttl_left: float | None = None
    ttl: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Handover:
    """The lease handed by its holder to one named member, in one store transaction (the leader
    key deleted, this reservation written): until it ends, one ttl of the handed lease later,
    only ``to`` may take the lease; after that anyone may, so a target that never comes costs
    no more than an expired lease would."""

    to: str
    source: str
    generation: int  # the generation handed over (the source's)


@dataclass(frozen=True)
class ClusterView:
    """The whole cluster as one read of the store saw it (one etcd range over the pool's prefix,
    one sqlite transaction): the leader, the members' records and the pause flag agree with each
    other, so a loop never decides on a leader from one moment and members from another.
    ``revision`` is the store's revision of that read (etcd's header revision; sqlite: None).
    ``handover``: the lease reserved for one member by its last holder (no leader meanwhile)."""

    leader: LeaderInfo | None
    members: tuple[MemberRecord, ...] = ()
    paused: bool = False
    revision: int | None = None
    handover: Handover | None = None

    @property
    def generation(self) -> int | None:
        """The fencing generation of the live lease, if any."""
        return self.leader.generation if self.leader else None

    def member(self, name: str) -> MemberRecord | None:
        return next((m for m in self.members if m.name == name), None)


class LeaseStore(abc.ABC):
    """One store of leases for one validator account. All methods may raise LeaseStoreUnavailable."""

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """The store's address(es) for messages: etcd URLs or the sqlite file."""

    @abc.abstractmethod
    async def acquire_leader(self, member: str, ttl: float) -> LeaderLease | None:
        """Create the leader key for ``member`` if and only if there is none and the lease is not
        handed over to another member (``hand_over``); None if taken or reserved."""

    @abc.abstractmethod
    async def renew(self, lease: LeaderLease) -> bool:
        """Extend ``lease`` if the leader key is still this very lease; False if it was lost."""

    async def resume(self, leader: LeaderInfo) -> LeaderLease | None:
        """The lease ``leader`` names, taken up again by its holder's restarted agent (same member,
        same generation) and renewed; None when it is no longer that lease. Its token is etcd's
        lease id (``extra["lease"]``), or the generation (sqlite)."""
        if leader.ttl is None:
            return None
        token = leader.extra.get("lease") or str(leader.generation)
        lease = LeaderLease(leader.member, leader.generation, leader.ttl, lease_clock(), str(token))
        return lease if await self.renew(lease) else None

    @abc.abstractmethod
    async def release(self, lease: LeaderLease) -> None:
        """Delete the leader key if it is still ``lease`` (a planned step-down); else do nothing."""

    @abc.abstractmethod
    async def hand_over(self, lease: LeaderLease, to: str) -> bool:
        """In one transaction, if the leader key is still ``lease``: delete it and reserve the
        lease for ``to`` (a ``Handover``) for ``lease.ttl``: ``acquire_leader`` then gives it to
        ``to`` only, until the reservation ends. False (nothing changed) if it was not ours."""

    @abc.abstractmethod
    async def leader(self) -> LeaderInfo | None:
        """The current leader, or None when the key is absent (or expired)."""

    @abc.abstractmethod
    async def view(self, with_ttl: bool = False) -> ClusterView:
        """Leader, members and pause flag from one read (one etcd range, one sqlite transaction).
        ``with_ttl``: also the leader's time to live where that costs another request (etcd)."""

    @abc.abstractmethod
    async def put_member(self, record: MemberRecord, ttl: float | None) -> None:
        """Publish ``record``; it disappears ``ttl`` seconds after the last put (None: never)."""

    @abc.abstractmethod
    async def delete_member(self, name: str) -> None:
        """Remove a member's record (an agent that stops cleanly)."""

    @abc.abstractmethod
    async def members(self) -> list[MemberRecord]:
        """Every live member record, sorted by name."""

    @abc.abstractmethod
    async def set_paused(self, paused: bool) -> None:
        """Stop (True) or restart (False) automatic decisions for the whole pool."""

    @abc.abstractmethod
    async def paused(self) -> bool:
        """Whether automatic decisions are paused."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; leases held stay until they expire or are released."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def cluster_view(store: LeaseStore) -> ClusterView:
    """The store's view of the cluster, as the API's /cluster shows it (with the leader's ttl left)."""
    return await store.view(with_ttl=True)


def default_sqlite_path(account_id: str) -> Path:
    """Where the embedded store lives when ``[lease] path`` is not set: one file per pool."""
    return Path("~/.local/state/near-failover").expanduser() / f"lease-{account_id}.sqlite"
