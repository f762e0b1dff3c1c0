"""Which risks an agent alerts on, as a pure function of its successive checks.

Role changes, fences and refused promotions are alerted where they happen; these are the slower
risks an operator must hear about before they turn into a missed failover: a standby that could
not take over, the pool heading for a kickout, the lease store down, a pause left on. Each alert
is sent once when its condition has held for its grace period, and again only after the
condition cleared (no alert storm from a flapping check).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from near_failover.ha.alerts import AlertEvent, AlertKind
from near_failover.procedures.chain_view import KICKOUT_THRESHOLDS

# Below this many expected duties of a kind, a ratio says nothing yet (the start of an epoch).
MIN_EXPECTED = 10


@dataclass(frozen=True)
class Check:
    """What one loop of the agent saw: the parts of its snapshot these risks read."""

    at: float  # monotonic seconds
    role: str
    problems: tuple[str, ...]
    store_up: bool
    paused: bool
    epoch_start: int | None = None
    production: Mapping[str, Mapping[str, int]] | None = None  # kind -> {"produced", "expected"}


def below_kickout(production: Mapping[str, Mapping[str, Any]] | None) -> dict[str, float]:
    """kind -> percent, for each kind whose ratio so far is below neard's kickout threshold."""
    found: dict[str, float] = {}
    for kind, threshold in KICKOUT_THRESHOLDS.items():
        counts = (production or {}).get(kind) or {}
        expected, produced = counts.get("expected") or 0, counts.get("produced") or 0
        if expected >= MIN_EXPECTED and 100 * produced / expected < threshold:
            found[kind] = round(100 * produced / expected, 1)
    return found


@dataclass
class RiskWatch:
    """Turns checks into alert events: call ``update`` once per loop."""

    account_id: str
    node: str
    unready_grace: float = 60.0
    store_grace: float = 30.0
    pause_limit: float = 3600.0
    _since: dict[str, float] = field(default_factory=dict)  # condition -> when it began
    _sent: set[str] = field(default_factory=set)  # conditions alerted and not cleared since

    def update(self, check: Check) -> list[AlertEvent]:
        events: list[AlertEvent] = []

        def hold(name: str, active: bool, grace: float, event: Any) -> None:
            if not active:
                self._since.pop(name, None)
                self._sent.discard(name)
                return
            began = self._since.setdefault(name, check.at)
            if name not in self._sent and check.at - began >= grace:
                self._sent.add(name)
                events.append(event())

        hold("standby_unready", check.role == "standby" and bool(check.problems), self.unready_grace,
             lambda: AlertEvent.condition(AlertKind.STANDBY_UNREADY, self.account_id, self.node,
                                          "; ".join(check.problems), {"for_seconds": round(self.unready_grace)}))
        hold("store_down", not check.store_up, self.store_grace,
             lambda: AlertEvent.condition(AlertKind.STORE_DOWN, self.account_id, self.node,
                                          f"no answer from the lease store for {self.store_grace:g}s or more: no standby can be promoted",
                                          {"role": check.role}))
        # The leader speaks for the pool: one message, not one per agent.
        leads = check.role == "leader"
        hold("long_pause", leads and check.paused, self.pause_limit,
             lambda: AlertEvent.condition(AlertKind.LONG_PAUSE, self.account_id, self.node,
                                          f"paused for over {self.pause_limit / 60:g} min: if the signer fails, no standby takes over (near-failover resume)"))
        low = below_kickout(check.production) if leads else {}
        for name in [n for n in self._since if n.startswith("kickout:") and not n.endswith(f":{check.epoch_start}")]:
            hold(name, False, 0.0, None)  # a new epoch starts over
        for kind in KICKOUT_THRESHOLDS:
            hold(f"kickout:{kind}:{check.epoch_start}", kind in low, 0.0,
                 lambda kind=kind: AlertEvent.condition(
                     AlertKind.KICKOUT_RISK, self.account_id, self.node,
                     f"{kind} at {low[kind]}% of expected this epoch, below neard's kickout threshold of {KICKOUT_THRESHOLDS[kind]}%",
                     {"epoch_start": check.epoch_start, **{k: dict(v) for k, v in (check.production or {}).items()}}))
        return events
