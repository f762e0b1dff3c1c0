"""One fault harness for the chaos suite and the host-loss benchmark.

`ChaosRun` starts a localnet (0.25 s blocks) with an agent per node on sqlite or on a real etcd
(in a network namespace of its own, so one node's agent can be cut off from it), injects the
faults of a `Schedule` by name at their times, then checks the run's invariants from the chain's
ledger, `near-failover status` and every log the run wrote. Each node's agent sees the other
nodes' hosts as unreachable (no control channel between machines, as for separate hosts), so a
standby never stops a frozen leader through a pid file: the fence proof is the chain's silence or
the old leader's own record.

It reuses the integration harness (tests/integration/ha_harness.py: the agents, watchdogs,
lease, ledger and etcd namespace) instead of starting anything its own way.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from near_failover.localnet.homes import free_port
from near_failover.localnet.util import process_cmdline
from tests.chaos.schedule import LEADER, NEARD_FIRST, STANDBY, Fault, FaultName, Schedule
from tests.integration.ha_harness import (
    BLOCK_TIME,
    NODES,
    POOL,
    POWER_OFF,
    EtcdNamespace,
    HaCluster,
    etcd_in_namespace,
    holds_write_lock,
    missed_between,
)
from tests.integration.localnet_harness import CLI, cli, start_localnet, stop_localnet
from tests.integration.localnet_support import wait_for

# After the last fault ends, someone signs within this bound, or `status` says why nobody will.
# The slowest path the harness expects: a frozen leader's lease (4 s) runs out, 10 silent blocks
# (2.5 s) after it prove it signs nothing (without a fence_command; with one, 2 heights and the
# power-off), then a hot swap: under 10 s (test_ha's freeze test). Three times that for a machine
# shared with others.
LIVENESS_BOUND = 30.0
TRACEBACK = "Traceback (most recent call last)"
NEARD_FIRST_LEAD = 1.0  # how long a node's neard runs alone when it wakes first
UNREADY_TRACKING = "Bogus"  # a tracked_shards_config variant neard refuses (config_rules: unknown variant)


@dataclass(frozen=True)
class ClusterOptions:
    """How the cluster is built: the chaos suite's short timings unless a benchmark says otherwise."""

    block_time: float = BLOCK_TIME
    lease: dict[str, float] = field(default_factory=dict)  # [lease] timings over ha_harness's LEASE_TIMINGS
    own_lease: dict[str, dict[str, float]] = field(default_factory=dict)  # one agent's own [lease] timings
    standby_mode: dict[str, str] = field(default_factory=dict)  # a node's standby mode ("rpc", "hot-swap")
    stonith: bool = False  # every node has a fence_command that powers its "machine" off (ha_harness.POWER_OFF)
    chain_seed: str = "7"  # the localnet's seed: who produces what at each height




@dataclass(frozen=True)
class Sample:
    """The chain as the monitor saw it at one moment."""

    at: float  # time.monotonic()
    height: int
    pool_last: int  # the pool's highest signed height, over every signer
    signer: str | None  # the node that signed it


@dataclass
class Outcome:
    """What one schedule did, and which invariants it broke."""

    schedule: Schedule
    directory: Path
    double_signs: int = 0
    double_sign_events: list[dict[str, Any]] = field(default_factory=list)
    signed_again_after: float | None = None  # seconds from the last fault's end to the pool's next signature
    status_reason: str | None = None  # why `status` says nobody signs (when nobody did within the bound)
    expected_reason: str | None = None  # why nobody may sign, from what the harness did
    worst_gap: float = 0.0  # the longest time without a new pool signature, seconds
    missed: dict[str, int] = field(default_factory=dict)
    tracebacks: list[str] = field(default_factory=list)  # "file: last line" per log with a traceback
    notes: list[str] = field(default_factory=list)  # faults that found nothing to act on, and the like
    violations: list[str] = field(default_factory=list)
    powered_off: list[str] = field(default_factory=list)  # nodes whose machine a fence_command powered off
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def liveness_violation(self) -> bool:
        return any(v.startswith("liveness") for v in self.violations)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.schedule.seed, "store": self.schedule.store, "faults": [f.name.value for f in self.schedule.faults],
            "schedule": self.schedule.describe(), "ok": self.ok, "violations": self.violations, "double_signs": self.double_signs,
            "signed_again_after": self.signed_again_after, "status_reason": self.status_reason, "worst_gap": round(self.worst_gap, 2),
            "missed": self.missed, "tracebacks": self.tracebacks, "notes": self.notes, "seconds": round(self.seconds, 1),
            "replay": self.schedule.replay, "fence_command": self.schedule.fence_command,
            "neard_first_wakes": self.schedule.neard_first_wakes, "powered_off": self.powered_off,
        }

    def report(self) -> str:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.schedule.describe()}"
        after = f"signed again {self.signed_again_after:.1f}s after the last fault" if self.signed_again_after is not None \
            else f"nobody signed; status says: {self.status_reason or 'no reason'}"
        lines = [head, f"     {after}; worst no-signer gap {self.worst_gap:.1f}s; missed {self.missed}; double signs {self.double_signs}"]
        lines += [f"     note: {n}" for n in self.notes]
        lines += [f"     {n}'s machine powered off by its fence_command" for n in self.powered_off]
        lines += [f"     VIOLATION {v}" for v in self.violations]
        if not self.ok:
            lines.append(f"     logs kept in {self.directory}")
            lines.append(f"     replay: {self.schedule.replay}")
        return "\n".join(lines)


def reason_from_status(lease: dict[str, Any] | None) -> str | None:
    """Why `near-failover status --json`'s lease section says nobody will sign, if it says so."""
    if not lease:
        return None
    if lease.get("paused"):
        return "paused"
    members = lease.get("members") or []
    if lease.get("leader") is None and not any(m.get("role") == "standby" and m.get("healthy") for m in members):
        return "no ready standby"
    return None


def worst_gap(samples: list[Sample]) -> float:
    """The longest time between two advances of the pool's highest signed height."""
    worst, last_advance, last = 0.0, None, None
    for s in samples:
        if last is None or s.pool_last > last:
            last_advance, last = s.at, s.pool_last
        elif last_advance is not None:
            worst = max(worst, s.at - last_advance)
    return worst


def tracebacks_in(directory: Path) -> list[str]:
    """Every log under ``directory`` with a Python traceback: "name: the traceback's last line"."""
    found = []
    for path in sorted(directory.rglob("*.log")):
        text = path.read_text(errors="replace")
        if TRACEBACK in text:
            tail = text[text.rindex(TRACEBACK):].splitlines()
            last = next((line for line in tail[1:] if line and not line.startswith((" ", "\t"))), tail[-1])
            found.append(f"{path.relative_to(directory)}: {last[:200]}")
    return found


class Monitor(threading.Thread):
    """Samples the chain's ledger every block: the pool's last signed height and its signer."""

    def __init__(self, cluster: HaCluster, interval: float = BLOCK_TIME) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.interval = interval
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def sample(self) -> Sample | None:
        try:
            book = self.cluster.ledger()
        except Exception:  # noqa: BLE001 - a busy chain process answers the next time
            return None
        rows = book["signers"].get(POOL, [])
        top = max(rows, key=lambda r: r["last_height"] or 0, default=None)
        return Sample(time.monotonic(), int(book.get("height") or 0), int(top["last_height"] or 0) if top else 0,
                      top["name"] if top else None)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            s = self.sample()
            if s is not None:
                self.samples.append(s)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


@dataclass(frozen=True)
class NodeProcesses:
    """The processes of one node's machine at one moment."""

    watchdogs: tuple[int, ...]
    agent: int | None
    neards: tuple[int, ...]

    @property
    def all(self) -> list[int]:
        """Watchdogs, agent, then neards: the order a freeze stops them in."""
        return [*self.watchdogs, *([self.agent] if self.agent is not None else []), *self.neards]


def node_processes(cluster: HaCluster, node: str) -> NodeProcesses:
    """Every process of ``node``'s machine now. neards are found by their --home, never through
    neard.pid, which a fault may make name another node's neard; watchdogs by their --heartbeat
    (each exactly, not as a prefix)."""
    home, heartbeat = str(cluster.home(node)), str(cluster.heartbeat_path(node))
    watchdogs, neards = [], []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = process_cmdline(int(entry.name))
        if not argv:
            continue
        if "near_failover.ha.watchdog" in argv and _follows(argv, "--heartbeat", heartbeat):
            watchdogs.append(int(entry.name))
        elif "near_failover.localnet" in argv and "node" in argv and _follows(argv, "--home", home):
            neards.append(int(entry.name))
    agent = cluster.agents.get(node)
    return NodeProcesses(tuple(watchdogs), agent.pid if agent is not None and agent.poll() is None else None, tuple(neards))


def _follows(argv: list[str], flag: str, value: str) -> bool:
    return any(a == flag and b == value for a, b in zip(argv, argv[1:], strict=False))


class Machines(threading.Thread):
    """Each node's processes written down for its fence_command (ha_harness.POWER_OFF), as a
    hypervisor knows which processes are a VM's: looked at every few blocks and whenever a fault
    acts on a node, so that neards, agents and watchdogs started since (a restarted agent, a
    leader's new watchdog) are in the record, and no other node's. A powered-off machine stays off:
    its record is not written again."""

    def __init__(self, cluster: HaCluster, files: dict[str, Path], interval: float = 2 * BLOCK_TIME) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.files = files
        self.interval = interval
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def off(self, node: str) -> bool:
        return Path(f"{self.files[node]}.off").exists()

    def record(self, node: str) -> None:
        with self.lock:
            if self.off(node):
                return
            path = self.files[node]
            fresh = path.with_name(path.name + ".new")
            fresh.write_text(json.dumps(node_processes(self.cluster, node).all))
            fresh.replace(path)  # the fence_command never reads half a record

    def run(self) -> None:
        while True:
            for node in self.files:
                try:
                    self.record(node)
                except (OSError, StopIteration, KeyError):  # a node's manifest or home in flux at teardown
                    pass
            if self.stopping.wait(self.interval):
                return

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


class ChaosRun:
    """One schedule on a fresh localnet and store; `run()` returns its Outcome."""

    def __init__(self, schedule: Schedule, directory: Path, options: ClusterOptions | None = None) -> None:
        self.schedule = schedule
        self.directory = directory
        self.options = options or ClusterOptions()
        self.cluster: HaCluster | None = None
        self.space: EtcdNamespace | None = None
        self.inventories: dict[str, Path] = {}
        self.sources: dict[str, str] = {}
        self.outcome = Outcome(schedule, directory)
        self.undo: dict[int, Callable[[], object]] = {}
        self.cleanups: list[Callable[[], object]] = []  # run at teardown whatever happened (files restored, processes woken)
        self.paused = False
        self.dead: set[str] = set()  # nodes whose neard the schedule killed
        self.unready: set[str] = set()  # nodes whose config.json neard refuses
        self.cuts: collections.Counter[str] = collections.Counter()  # partitions in force per node, overlapping ones counted
        self.monitor: Monitor | None = None
        self.machines: Machines | None = None  # with a fence_command: every node's processes, for its POWER_OFF

    @property
    def stonith(self) -> bool:
        return self.options.stonith or self.schedule.fence_command

    def powered_off(self) -> set[str]:
        """Nodes whose machine a fence_command powered off (they stay off, as a real one would)."""
        return {n for n in NODES if self.machines is not None and self.machines.off(n)}

    # --- the cluster ------------------------------------------------------------------------------

    @contextmanager
    def started(self) -> Iterator[HaCluster]:
        """The store, the localnet and the agents, ready (val-a leads, the standbys healthy)."""
        with ExitStack() as stack:
            endpoints: list[str] = []
            if self.schedule.store == "etcd":
                self.space = stack.enter_context(etcd_in_namespace(self.directory / "etcd-ns", sources=len(NODES)))
                endpoints = [self.space.url]
            net = start_localnet(self.directory / "net", seed=self.options.chain_seed, block_time=self.options.block_time)
            stack.callback(stop_localnet, net)
            cluster = HaCluster(net, endpoints, self.space.etcd if self.space else None)
            self.cluster = cluster
            stack.callback(cluster.close)
            stack.callback(self._cleanup)
            # The product's default automatic rejoin (ha_harness turns it off for its own tests).
            lease: dict[str, Any] = {"auto_rejoin": True, **self.options.lease}
            if self.space is None:
                cluster.configure_lease(store="sqlite", path=str(self.directory / "lease.sqlite"), **lease)
            else:
                cluster.configure_lease(**lease)
                for index, name in enumerate(NODES):
                    self.sources[name] = self.space.source_address(index)
                    net.edit_inventory(name, lease_source_address=self.sources[name])
            for name, mode in self.options.standby_mode.items():
                net.edit_inventory(name, standby=mode)
            if self.stonith:
                script = self.directory / "power-off.py"
                script.write_text(POWER_OFF)
                for name in NODES:
                    net.edit_inventory(name, fence_command=[sys.executable, str(script), str(self.machine_pids(name)), name])
                self.machines = Machines(cluster, {name: self.machine_pids(name) for name in NODES})
                self.machines.start()
                stack.callback(self.machines.stop)
            cluster.enable_api()
            self.inventories = {name: self.isolated_inventory(cluster, name, self.options.own_lease.get(name, {})) for name in NODES}
            # val-a's agent first, the others once it holds the lease: started together on a loaded
            # machine, a standby's agent has claimed the free lease first and moved the key at
            # start (seed 1009 on 2026-12-02, before this order), which is not what a schedule tests.
            cluster.start_agent("val-a", self.inventories["val-a"])
            wait_for(lambda: (leader := cluster.leader()) is not None and leader.member == "val-a", 60, "val-a's agent to claim the lease")
            cluster.start_agents(tuple(n for n in NODES if n != "val-a"), inventories=self.inventories)
            self.wait_settled(cluster)
            cluster.wait_apis()
            yield cluster

    def wait_settled(self, cluster: HaCluster, timeout: float = 90) -> None:
        """Someone holds the lease and its neard has the key, the others publish healthy standby
        records (or, if val-a lost the lease at start, fenced ones: noted, as the schedule then
        starts from that leader)."""
        def settled() -> str | None:
            leader = cluster.leader()
            if leader is None or cluster.key_loaded(leader.member) != POOL:
                return None
            members = cluster.members()
            others = [members.get(n) for n in NODES if n != leader.member]
            ready = all(m is not None and (m.role == "fenced" or (m.role == "standby" and m.healthy)) for m in others)
            return leader.member if ready and any(m is not None and m.role == "standby" for m in others) else None

        first = wait_for(settled, timeout, "a leader signing and two healthy standbys")
        if first != "val-a":
            self.outcome.notes.append(f"{first} leads at start, not val-a (val-a lost the lease and fenced itself)")

    @staticmethod
    def isolated_inventory(cluster: HaCluster, node: str, lease: dict[str, float]) -> Path:
        """`node`'s own inventory: every other node's host unreachable (nothing listens there),
        and its own [lease] timings if it has some."""
        unreachable = f"ssh://near@127.0.0.1:{free_port()}"
        path = cluster.inventory_variant(f"{node}-host", {n: {"host": unreachable} for n in NODES if n != node})
        if lease:
            data = tomllib.loads(path.read_text())
            data["lease"].update(lease)
            path.write_text(tomli_w.dumps(data))
        return path

    def _cleanup(self) -> None:
        for action in reversed(self.cleanups):
            try:
                action()
            except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError):
                pass
        if self.space is not None and self.space.etcd is not None and self.space.etcd.process.poll() is None:
            _signal(self.space.etcd.process.pid, signal.SIGCONT)

    # --- faults -------------------------------------------------------------------------------

    def signer(self) -> str:
        """The node that signed the pool's latest duty (the chain's view, not the store's)."""
        assert self.monitor is not None
        latest = self.monitor.latest() or self.monitor.sample()
        return latest.signer if latest and latest.signer else "val-a"

    def resolve(self, fault: Fault, index: int) -> str:
        if fault.target == LEADER:
            return self.signer()
        if fault.target == STANDBY:
            others = [n for n in NODES if n != self.signer()]
            return random.Random(f"{self.schedule.seed}-{index}").choice(others)
        return fault.target

    def inject(self, fault: Fault, index: int) -> None:
        """Start ``fault``; what undoes it (if anything) is kept for its end."""
        cluster = self.cluster
        assert cluster is not None
        node = self.resolve(fault, index)
        name = fault.name
        if name is FaultName.KILL_NEARD:
            for pid in node_processes(cluster, node).neards:
                _signal(pid, signal.SIGKILL)
            self.dead.add(node)
        elif name is FaultName.FREEZE_NODE:
            frozen = self.freeze_node(node)
            pids = frozen.all
            woken_first = list(frozen.neards) if fault.option == NEARD_FIRST else pids
            self.cleanups.append(lambda: cluster.thaw(*pids))

            def wake() -> None:
                cluster.thaw(*woken_first)
                if woken_first != pids:
                    time.sleep(NEARD_FIRST_LEAD)
                    cluster.thaw(*pids)
            self.undo[index] = wake
        elif name is FaultName.PARTITION_NODE:
            assert self.space is not None
            space, address = self.space, self.sources[node]
            self.note_machine(node)
            if not self.cuts[node]:
                space.cut_off(address)
            self.cuts[node] += 1
            healed = threading.Event()

            def heal() -> None:
                if not healed.is_set():
                    healed.set()
                    self.cuts[node] -= 1
                    if not self.cuts[node]:  # the node stays cut while an overlapping partition lasts
                        space.heal(address)
            self.cleanups.append(heal)
            self.undo[index] = heal
        elif name in (FaultName.ETCD_STOP, FaultName.ETCD_RESTART):
            assert self.space is not None and self.space.etcd is not None
            etcd = self.space.etcd
            etcd.stop()
            if name is FaultName.ETCD_RESTART:
                etcd.start()
            else:
                self.undo[index] = etcd.start
        elif name is FaultName.ETCD_FREEZE:
            assert self.space is not None and self.space.etcd is not None
            pid = self.space.etcd.process.pid
            _signal(pid, signal.SIGSTOP)
            self.undo[index] = lambda: _signal(pid, signal.SIGCONT)
        elif name is FaultName.KILL_AGENT:
            cluster.agents[node].kill()
            cluster.agents[node].wait(10)
            self.undo[index] = functools.partial(self.restart_agent, node)
        elif name is FaultName.FREEZE_AGENT:
            pid = cluster.agent_pid(node)
            _signal(pid, signal.SIGSTOP)
            self.cleanups.append(lambda: _signal(pid, signal.SIGCONT))
            self.undo[index] = lambda: _signal(pid, signal.SIGCONT)
        elif name in (FaultName.KILL_WATCHDOG, FaultName.FREEZE_WATCHDOG):
            pids = cluster.watchdog_pids(node)
            if not pids:
                self.outcome.notes.append(f"{fault.describe()}: {node} runs no watchdog (only a leader does)")
            sig = signal.SIGKILL if name is FaultName.KILL_WATCHDOG else signal.SIGSTOP
            for pid in pids:
                _signal(pid, sig)
            if sig is signal.SIGSTOP:
                self.cleanups.append(lambda: cluster.thaw(*pids))
                self.undo[index] = lambda: cluster.thaw(*pids)
        elif name is FaultName.MANUAL_MOVE_KILLED:
            target = node if node != self.signer() else next(n for n in NODES if n != node)
            with open(self.directory / f"manual-{index}.log", "ab") as log:
                move = subprocess.Popen([*CLI, fault.option or "switchover", "-c", str(cluster.inventory), "--to", target, "--yes"],
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.cleanups.append(lambda: _stop(move))
            self.undo[index] = lambda: _stop(move)
        elif name is FaultName.PAUSE:
            cli("pause", "-c", cluster.inventory, timeout=60)
            self.paused = True

            def resume() -> None:
                cli("resume", "-c", cluster.inventory, timeout=60)
                self.paused = False
            if fault.duration:
                self.undo[index] = resume
        elif name is FaultName.UNREADY_STANDBY:
            config = cluster.home(node) / "config.json"
            original = config.read_text()
            data = json.loads(original)
            data["tracked_shards_config"] = UNREADY_TRACKING
            config.write_text(json.dumps(data, indent=2))
            self.unready.add(node)

            def ready_again() -> None:
                config.write_text(original)
                self.unready.discard(node)
            if fault.duration:
                self.undo[index] = ready_again
        elif name is FaultName.WRONG_PID_FILE:
            pid_file = cluster.home(node) / "neard.pid"
            original = pid_file.read_text()
            others = [neard for n in NODES if n != node and n not in self.dead for neard in node_processes(cluster, n).neards]
            pid_file.write_text(f"{others[0] if others else exited_pid()}\n")  # no other neard runs: a dead process
            self.cleanups.append(lambda: pid_file.write_text(original))
            self.undo[index] = lambda: pid_file.write_text(original)
        elif name is FaultName.SECOND_SIGNER:
            key = Path(cluster.node_info(node)["key_store"]).read_text()
            fd = os.open(cluster.home(node) / "validator_key.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(key)
            _signal(cluster.neard_pid(node), signal.SIGHUP)
        else:  # pragma: no cover - every FaultName is handled above
            raise AssertionError(f"no injector for {name}")

    def machine_pids(self, node: str) -> Path:
        """Where the processes of ``node``'s machine are written down for its fence_command."""
        return self.directory / f"{node}-machine.pids"

    def note_machine(self, node: str) -> None:
        """Write ``node``'s processes down now (a fault is about to act on them), not at the
        tracker's next look."""
        if self.machines is not None:
            self.machines.record(node)

    def restart_agent(self, node: str) -> None:
        """systemd starting a killed agent again; not on a machine a fence_command powered off."""
        assert self.cluster is not None
        if node in self.powered_off():
            self.outcome.notes.append(f"{node}'s agent not started again: its machine is powered off")
            return
        self.cluster.start_agent(node, self.inventories[node])
        self.note_machine(node)

    def freeze_node(self, node: str) -> NodeProcesses:
        """SIGSTOP the node's watchdog(s), agent and neard(s) at once; returns them.
        On sqlite, never while the agent holds the store's write lock: the store is a file on
        this one machine, and a frozen lock holder would stop every other node's agent too,
        which a real paused host of its own cannot do."""
        assert self.cluster is not None
        for _ in range(100):
            frozen = node_processes(self.cluster, node)
            for pid in frozen.all:
                _signal(pid, signal.SIGSTOP)
            if self.schedule.store != "sqlite" or frozen.agent is None or not holds_write_lock(frozen.agent):
                self.note_machine(node)
                return frozen
            self.cluster.thaw(*reversed(frozen.all))
            time.sleep(0.01)
        raise AssertionError(f"{node}'s agent always held the store's write lock")

    # --- the run --------------------------------------------------------------------------------

    def timeline(self) -> list[tuple[float, str, Callable[[], object]]]:
        events: list[tuple[float, str, Callable[[], object]]] = []
        for index, fault in enumerate(self.schedule.faults):
            events.append((fault.at, f"start {fault.describe()}", functools.partial(self.inject, fault, index)))
            if fault.duration:
                events.append((fault.ends_at, f"end {fault.describe()}", functools.partial(self.end, index)))
        return sorted(events, key=lambda e: e[0])

    def end(self, index: int) -> None:
        undo = self.undo.pop(index, None)
        if undo is not None:
            undo()

    def run(self) -> Outcome:
        began = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            with self.started() as cluster:
                self.monitor = Monitor(cluster)
                self.monitor.start()
                try:
                    self.play(cluster)
                finally:
                    self.monitor.stopping.set()
                    self.monitor.join(5)
        except AssertionError as exc:  # the cluster never became ready, or a wait in the harness ran out
            self.outcome.violations.append(f"harness: {str(exc)[:2000]}")
        except Exception as exc:  # noqa: BLE001 - one broken run must not end a long chaos session
            self.outcome.violations.append(f"harness: {''.join(traceback.format_exception(exc))[-2000:]}")
        finally:
            self.outcome.seconds = time.monotonic() - began
        self.outcome.tracebacks = tracebacks_in(self.directory)
        self.outcome.powered_off = sorted(self.powered_off())
        self.judge()
        return self.outcome

    def play(self, cluster: HaCluster) -> None:
        assert self.monitor is not None
        before = cluster.ledger()
        t0 = time.monotonic()
        with open(self.directory / "timeline.log", "a") as journal:
            for at, label, action in self.timeline():
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                journal.write(f"{time.monotonic() - t0:7.2f} {label}\n")
                journal.flush()
                try:
                    action()
                except (OSError, subprocess.SubprocessError, AssertionError, KeyError, ValueError, RuntimeError) as exc:
                    self.outcome.notes.append(f"{label}: could not act: {exc!r}"[:300])
        ended = time.monotonic()
        # Someone signs again: a pool signature for a height beyond the next one after the chain's
        # head when the last fault ended (a node that just died may have signed up to the next
        # height already: approvals are for the block after the head).
        end_mark = self.monitor.sample() or self.monitor.latest()
        mark = end_mark.height + 1 if end_mark else 0
        deadline = ended + LIVENESS_BOUND
        while time.monotonic() < deadline:
            latest = self.monitor.latest()
            if latest is not None and latest.pool_last > mark and latest.at > ended:
                self.outcome.signed_again_after = round(latest.at - ended, 2)
                break
            time.sleep(BLOCK_TIME / 2)
        if self.outcome.signed_again_after is None:
            self.outcome.expected_reason = "paused" if self.paused else (
                "no ready standby" if set(NODES) <= self.dead | self.unready | self.powered_off() else None)
            self.outcome.status_reason = reason_from_status(self.status_lease(cluster))
        for node in sorted(self.powered_off()):  # a power switch leaves nothing of its machine running
            if left := node_processes(cluster, node).all:
                self.outcome.violations.append(f"harness: {node}'s machine was powered off, yet its processes {left} run")
        cluster.wait_blocks(4)  # what any node sent around the end has reached the chain
        after = cluster.ledger()
        self.outcome.double_signs = int(after["double_signs"])
        self.outcome.double_sign_events = after.get("double_sign_events", [])[:5]
        self.outcome.worst_gap = worst_gap(self.monitor.samples)
        try:
            self.outcome.missed = missed_between(before, after)
        except AssertionError as exc:
            self.outcome.notes.append(str(exc))

    @staticmethod
    def status_lease(cluster: HaCluster) -> dict[str, Any] | None:
        done = cli("status", "-c", cluster.inventory, "--json", check=False, timeout=120)
        try:
            return json.loads(done.stdout).get("lease")
        except ValueError:
            return None

    def judge(self) -> None:
        o = self.outcome
        if o.double_signs:
            nodes = sorted({n["name"] for e in o.double_sign_events for n in e.get("nodes", [])})
            o.violations.append(f"safety: {o.double_signs} double sign(s) in the ledger (signers {', '.join(nodes)})")
        if o.signed_again_after is None and not any(v.startswith("harness") for v in o.violations):
            if o.status_reason is None:
                o.violations.append(f"liveness: nobody signed within {LIVENESS_BOUND:g}s after the last fault, and status gives no reason")
            elif o.status_reason != o.expected_reason:
                o.violations.append(f"liveness: nobody signed within {LIVENESS_BOUND:g}s; status says {o.status_reason!r}, "
                                    f"but the schedule left {o.expected_reason or 'a ready standby, unpaused'}")
        if o.tracebacks:
            o.violations.append("traceback in " + "; ".join(o.tracebacks))


def exited_pid() -> int:
    """The pid of a process that has exited (a pid file naming nothing that runs)."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def run_schedule(schedule: Schedule, directory: Path) -> Outcome:
    return ChaosRun(schedule, directory).run()

