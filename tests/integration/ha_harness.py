"""Automatic-mode tests: a localnet, a real etcd, and one `near-failover agent` process per node.

Everything here is driven as an operator would: the inventory file, the CLI, signals, the
agents' heartbeat files and the lease as etcd holds it. `HaCluster.close` kills every process
the test started (agents, then their watchdogs, which live in their own sessions) with bounded
waits, so a failing test never leaves a signer or a fencing watchdog behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import tomli_w

from near_failover.ha.etcd import EtcdLeaseStore
from near_failover.ha.lease import LeaderInfo, LeaseStore, MemberRecord, lease_clock
from near_failover.ha.stores import open_lease_store
from near_failover.inventory import load_inventory
from tests.integration.etcd_server import EtcdServer, free_port, running_etcd
from tests.integration.localnet_harness import CLI, Localnet, cli, start_localnet, stop_localnet
from tests.integration.localnet_support import wait_for

POOL = "pool.poolv1.near"
BLOCK_TIME = 0.25
# Short, Patroni-shaped timings: loop_wait + 2 * retry_timeout = 2.4 s < ttl = 4 s. A leader
# steps down after 3 bad checks (1.2 s); the watchdog fires 2.4 s after the loop's last beat.
LEASE_TIMINGS: dict[str, Any] = {"ttl": 4.0, "loop_wait": 0.4, "retry_timeout": 1.0, "unhealthy_loops": 3}
NODES = ("val-a", "val-b", "val-c")
KINDS = ("blocks", "chunks", "endorsements")


# A fence_command as a hypervisor's API would run it: every process of the node's machine, as a
# test wrote them down (JSON, the file named first), SIGKILLed; exit 1 when none is known. It
# leaves "<file>.off" behind: the machine is off, and a harness starts nothing on it again.
POWER_OFF = """
import json, os, signal, sys
try:
    pids = json.loads(open(sys.argv[1]).read())
except FileNotFoundError:
    sys.exit(f"no machine known for {sys.argv[2]}")
open(sys.argv[1] + ".off", "w").write(json.dumps(pids))
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
print(f"powered off {sys.argv[2]}: SIGKILL to {len(pids)} processes")
"""


def missed(book: dict[str, Any]) -> dict[str, int]:
    """The pool's missed duties so far this epoch, from the chain's own ledger."""
    account = book["accounts"][POOL]
    return {k: account[k]["expected"] - account[k]["produced"] for k in KINDS}


def missed_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    assert before["epoch_start_height"] == after["epoch_start_height"], "the test crossed an epoch: counters do not compare"
    a, b = missed(before), missed(after)
    return {k: b[k] - a[k] for k in KINDS}


def assert_missed_within(before: dict[str, Any], after: dict[str, Any], bound: dict[str, int]) -> dict[str, int]:
    lost = missed_between(before, after)
    for kind, limit in bound.items():
        assert lost[kind] <= limit, f"missed {kind}: {lost[kind]} > {limit} (all: {lost})"
    return lost


def _proc_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T, Z, ...), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2]


def alive(pid: int | None) -> bool:
    return pid is not None and _proc_state(pid) not in (None, "Z", "X")


def pids_with_argv(*parts: str) -> list[int]:
    """Processes whose command line contains every one of `parts`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if all(any(p in a for a in text) for p in parts):
            found.append(int(entry.name))
    return found


def holds_write_lock(pid: int) -> bool:
    """Whether ``pid`` holds an exclusive POSIX lock (/proc/locks: "1: POSIX ADVISORY WRITE <pid> ...")."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[1] == "POSIX" and fields[3] == "WRITE" and fields[4] == str(pid):
            return True
    return False


@dataclass
class HaCluster:
    """A localnet with a [lease] table, the agents started on it, and handles to look at them."""

    net: Localnet
    endpoints: list[str]
    etcd: EtcdServer | None = None
    credentials: tuple[str, str] | None = None  # etcd's user and password, with its authentication on
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.manifest = json.loads((self.net.directory / "localnet.json").read_text())

    # --- the inventory ------------------------------------------------------------------------

    @property
    def inventory(self) -> Path:
        return self.net.inventory

    def configure_lease(self, **overrides: Any) -> dict[str, Any]:
        """Write the [lease] table: etcd at `endpoints`, the short timings unless overridden.
        Automatic rejoin is off unless asked for (test_ha_rejoin.py): the other tests look at a
        fenced node as its fence left it."""
        lease = {"store": "etcd", "endpoints": list(self.endpoints), **LEASE_TIMINGS, "auto_rejoin": False, **overrides}
        self.net.edit_inventory(None, lease=lease)
        return lease

    def enable_api(self) -> str:
        """Give every node an agent API on a loopback port and the agents a shared bearer token
        (the failsafe confirmation is a POST between agents). Returns the token."""
        token_file = self.net.directory / "api-token"
        token = os.urandom(16).hex()
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        data = tomllib.loads(self.inventory.read_text())
        for node in data["node"]:
            node["api"] = f"http://127.0.0.1:{free_port()}"
        data["lease"]["api_token_file"] = str(token_file)
        self.inventory.write_text(tomli_w.dumps(data))
        return token

    def api_url(self, node: str) -> str:
        data = tomllib.loads(self.inventory.read_text())
        return next(n["api"] for n in data["node"] if n["name"] == node)

    def api_status(self, node: str) -> dict[str, Any]:
        return httpx.get(self.api_url(node) + "/status", timeout=2, trust_env=False).json()

    def ask_failsafe(self, node: str, token: str, leader: str, generation: int) -> dict[str, Any]:
        """What `node`'s agent answers a leader's failsafe question (as another agent asks it)."""
        answer = httpx.post(self.api_url(node) + "/failsafe", json={"leader": leader, "generation": generation},
                            headers={"Authorization": f"Bearer {token}"}, timeout=5, trust_env=False)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_apis(self, nodes: tuple[str, ...] = NODES, timeout: float = 30) -> None:
        for node in nodes:
            wait_for(lambda: self.api_status(node)["node"] == node, timeout, f"{node}'s agent API")

    def pause(self, paused: bool = True) -> None:
        """`pause` (or `resume`) through the CLI, until every agent's API shows it."""
        word = "pause" if paused else "resume"
        cli(word, "-c", self.inventory)
        wait_for(lambda: all(self.api_status(n)["paused"] is paused for n in NODES), 10, f"every agent to see the {word}")

    def inventory_variant(self, name: str, nodes: dict[str, dict[str, Any]]) -> Path:
        """A copy of the inventory with some nodes' fields changed (what one agent believes)."""
        data = tomllib.loads(self.inventory.read_text())
        for node in data["node"]:
            node.update(nodes.get(node["name"], {}))
        path = self.net.directory / f"inventory-{name}.toml"
        path.write_text(tomli_w.dumps(data))
        return path

    # --- agents and watchdogs -----------------------------------------------------------------

    def start_agent(self, node: str, inventory: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.agent_log_path(node), "ab")  # noqa: SIM115 - the child owns it; closed below
        try:
            proc = subprocess.Popen(
                [*CLI, "agent", "-c", str(inventory or self.inventory), "--node", node],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        self.agents[node] = proc
        return proc

    def kill_agent(self, node: str, generation: int) -> dict[str, Any]:
        """SIGKILL ``node``'s agent; its last beat, which must still arm the lease of ``generation``."""
        killed = self.agents[node]
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        last = self.heartbeat(node)
        assert last is not None and last["armed"] and last["generation"] == generation, last
        return last

    def start_agents(self, nodes: tuple[str, ...] = NODES, inventories: dict[str, Path] | None = None) -> None:
        for node in nodes:
            self.start_agent(node, (inventories or {}).get(node))

    def start_agents_with_val_a_unreachable(self) -> None:
        """The standbys' view of a frozen machine: no SSH to val-a's host, so no control channel."""
        unreachable = f"ssh://near@127.0.0.1:{free_port()}"  # nothing listens there
        cut_off = self.inventory_variant("val-a-unreachable", {"val-a": {"host": unreachable}})
        self.start_agents(inventories={"val-b": cut_off, "val-c": cut_off})

    def freeze(self, node: str) -> list[int]:
        """A frozen machine: SIGSTOP to the node's watchdog, agent and neard (their pids, in that order)."""
        frozen = [self.watchdog_pid(node), self.agent_pid(node), self.neard_pid(node)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        return frozen

    def freeze_outside_store_writes(self, node: str) -> list[int]:
        """freeze(), but never while the node's agent holds the sqlite store's write lock (its
        POSIX lock in /proc/locks): the frozen agent would stop every other agent's writes. A
        real pause of a sqlite host freezes all of them, so only the test can meet this case."""
        for _ in range(100):
            frozen = self.freeze(node)
            if not holds_write_lock(frozen[1]):
                return frozen
            self.thaw(*reversed(frozen))
            time.sleep(0.01)
        raise AssertionError(f"{node}'s agent always held the store's write lock")

    @staticmethod
    def thaw(*pids: int) -> list[int]:
        """SIGCONT to ``pids``, back to back in that order; returns those that were still there
        (a fence_command may have powered the machine off meanwhile)."""
        woken = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
                woken.append(pid)
            except ProcessLookupError:
                pass
        return woken

    def agent_log_path(self, node: str) -> Path:
        return self.net.directory / f"agent-{node}.log"

    def agent_log(self, node: str) -> str:
        path = self.agent_log_path(node)
        return path.read_text(errors="replace") if path.exists() else ""

    def heartbeat_path(self, node: str) -> Path:
        return self.net.directory / f"agent-{node}.heartbeat"

    def heartbeat(self, node: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.heartbeat_path(node).read_text())
        except (OSError, ValueError):
            return None

    def wait_fenced_in_lease(self, node: str, neard: int, what: str, each: Callable[[], None] = lambda: None, timeout: float = 30) -> dict[str, Any]:
        """Wait until `node`'s neard (pid `neard`) has exited, calling `each` meanwhile; assert it
        went before the end of the lease its agent last announced, and return that heartbeat."""
        last_armed: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while alive(neard):
            beat = self.heartbeat(node)
            if beat and beat["armed"]:
                last_armed = beat
            each()
            assert time.monotonic() < deadline, f"{node} {what}:\n{self.logs()}"
            time.sleep(0.02)
        fenced_seen = lease_clock()
        assert last_armed and fenced_seen < last_armed["valid_until"], (fenced_seen, last_armed)
        return last_armed

    def watchdog_log(self, node: str) -> str:
        path = self.heartbeat_path(node).with_name(self.heartbeat_path(node).name + ".log")
        return path.read_text(errors="replace") if path.exists() else ""

    def watchdog_marker(self, node: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.heartbeat_path(node).with_name(self.heartbeat_path(node).name + ".fenced").read_text())
        except (OSError, ValueError):
            return None

    def watchdog_pids(self, node: str | None = None) -> list[int]:
        """Watchdogs run in their own session: found by the heartbeat path in their argv."""
        if node is not None:
            return pids_with_argv("near_failover.ha.watchdog", str(self.heartbeat_path(node)))
        return pids_with_argv("near_failover.ha.watchdog", str(self.net.directory) + "/agent-")

    def watchdog_pid(self, node: str) -> int:
        """The pid the watchdog wrote once it watches (the agent leads only after that)."""
        marker = self.heartbeat_path(node).with_name(self.heartbeat_path(node).name + ".watching")
        pid = wait_for(lambda: json.loads(marker.read_text())["pid"], 30, f"{node}'s watchdog to watch")
        assert self.watchdog_pids(node) == [pid], f"{node}'s watchdogs: {self.watchdog_pids(node)}, marker says {pid}"
        return int(pid)

    def agent_pid(self, node: str) -> int:
        return self.agents[node].pid

    def close(self) -> None:
        """Kill the watchdogs first (none may fence during teardown), then the agents."""
        for pid in self.watchdog_pids():
            _kill(pid)
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.agents.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        wait_for(lambda: not any(alive(p) for p in self.watchdog_pids()), 10, "the watchdogs to exit")

    # --- the nodes and the chain ----------------------------------------------------------------

    def node_info(self, node: str) -> dict[str, Any]:
        return next(n for n in self.manifest["nodes"] if n["name"] == node)

    def home(self, node: str) -> Path:
        return Path(self.node_info(node)["home"])

    def neard_pid(self, node: str) -> int:
        return int((self.home(node) / "neard.pid").read_text())

    def signal_neard(self, node: str, sig: signal.Signals) -> None:
        os.kill(self.neard_pid(node), sig)

    def rpc_status(self, node: str, timeout: float = 2.0) -> dict[str, Any]:
        body = httpx.post(self.node_info(node)["rpc"], json={"jsonrpc": "2.0", "id": "t", "method": "status", "params": []}, timeout=timeout).json()
        return body["result"]

    def key_loaded(self, node: str) -> str | None:
        """The account whose key `node`'s neard has loaded; None if it has none or does not answer."""
        try:
            return self.rpc_status(node)["validator_account_id"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    def ledger(self) -> dict[str, Any]:
        return httpx.get(self.manifest["chain"]["url"] + "/ledger", timeout=5).json()

    def height(self) -> int:
        return int(httpx.get(self.manifest["chain"]["url"] + "/status", timeout=5).json()["height"])

    def wait_blocks(self, n: int) -> int:
        target = self.height() + n
        return wait_for(lambda: (h := self.height()) >= target and h, n * BLOCK_TIME * 8 + 10, f"chain height {target}")

    def signer_row(self, node: str, book: dict[str, Any] | None = None) -> dict[str, Any] | None:
        rows = (book or self.ledger())["signers"].get(POOL, [])
        return next((r for r in rows if r["name"] == node), None)

    def signs_after(self, node: str, height: int) -> bool:
        row = self.signer_row(node)
        return row is not None and row["last_height"] > height

    def assert_no_double_sign(self) -> dict[str, Any]:
        book = self.ledger()
        assert book["double_signs"] == 0, book["double_sign_events"]
        return book

    # --- the lease, as etcd holds it ----------------------------------------------------------------

    def _store(self, endpoint: str | None = None) -> LeaseStore:
        if not self.endpoints:  # the inventory's own store (sqlite)
            return open_lease_store(load_inventory(self.inventory))
        return EtcdLeaseStore([endpoint] if endpoint else self.endpoints, POOL, operation_timeout=2.0, credentials=self.credentials)

    def leader(self) -> LeaderInfo | None:
        async def go() -> LeaderInfo | None:
            async with self._store() as store:
                return await store.leader()

        return asyncio.run(go())

    def members(self) -> dict[str, MemberRecord]:
        async def go() -> list[MemberRecord]:
            async with self._store() as store:
                return await store.members()

        return {m.name: m for m in asyncio.run(go())}

    def lease_ttl(self, lease_id: str) -> int:
        """etcd's remaining TTL of a lease in whole seconds, truncated (0 also just after expiry); -1 once revoked."""
        answer = httpx.post(self.endpoints[0] + "/v3/lease/timetolive", json={"ID": lease_id}, timeout=2, trust_env=False).json()
        return int(answer.get("TTL", 0))  # the gateway leaves a zero out

    def revoke_lease(self, lease_id: str) -> None:
        """What `etcdctl lease revoke` does: the lease ends now, and the keys attached to it go."""
        answer = httpx.post(self.endpoints[0] + "/v3/lease/revoke", json={"ID": lease_id}, timeout=2, trust_env=False)
        assert answer.status_code == 200, answer.text

    def wait_leader(self, node: str, timeout: float = 30) -> LeaderInfo:
        return wait_for(lambda: (leader := self.leader()) is not None and leader.member == node and leader, timeout, f"{node} to hold the lease")

    def wait_ready(self, timeout: float = 40) -> LeaderInfo:
        """val-a holds the lease, signs, and both standbys publish healthy standby records."""
        leader = self.wait_leader("val-a", timeout)

        def standbys_ready() -> bool:
            members = self.members()
            return all(n in members and members[n].role == "standby" and members[n].healthy for n in ("val-b", "val-c"))

        wait_for(standbys_ready, timeout, "val-b and val-c to publish healthy standby records")
        # The leader decides on the view its loop last read (a neard exit at once, on that view):
        # its beat changes with each renewal, so two new beats mean a loop of it began, and read
        # the store, after those records were seen.
        seen = self.heartbeat(leader.member)
        for _ in range(2):
            seen = wait_for(lambda last=seen: (beat := self.heartbeat(leader.member)) != last and beat, timeout,
                            f"{leader.member}'s next beat", interval=0.05)
        # An RPC of 2 s at most: on a loaded machine one may go unanswered.
        wait_for(lambda: self.key_loaded("val-a") == POOL, 10, "val-a's neard to answer with the pool's key")
        return leader

    # --- the journal, through the CLI ---------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        return json.loads(cli("history", "-c", self.inventory, "--json", "--limit", "100").stdout)

    def runs(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.history() if r["kind"] == kind]

    def wait_auto_failover(self, timeout: float = 60) -> dict[str, Any]:
        """The finished auto-failover run (fails naming the agents' logs if none finishes)."""
        try:
            runs = wait_for(lambda: [r for r in self.runs("auto-failover") if r["state"] != "in-progress"], timeout, "an auto-failover run to finish", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None
        return runs[0]

    def logs(self) -> str:
        return "\n".join(f"--- agent {n} ---\n{self.agent_log(n)[-3000:]}\n--- watchdog {n} ---\n{self.watchdog_log(n)[-1500:]}" for n in NODES)


@contextmanager
def running_cluster(directory: Path, **localnet: Any) -> Iterator[HaCluster]:
    """A fresh etcd and localnet (0.25 s blocks; `localnet` adds start_localnet's options), the
    agents the test starts on them, all stopped at the end."""
    with running_etcd(directory / "etcd") as etcd:
        net = start_localnet(directory / "net", block_time=BLOCK_TIME, **localnet)
        ha = HaCluster(net, [etcd.url], etcd)
        try:
            yield ha
        finally:
            ha.close()
            stop_localnet(net)
            if etcd.process.poll() is None:
                os.kill(etcd.process.pid, signal.SIGCONT)  # a test may freeze it; SIGTERM needs it awake


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["name"] == name)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def guard(inventory: Path, node: str) -> subprocess.CompletedProcess[str]:
    return cli("guard", "-c", inventory, "--node", node, check=False, timeout=60)


def require_ip_command() -> str:
    binary = shutil.which("ip")
    if binary is None:
        raise AssertionError("the `ip` command (Debian's iproute2) is missing: `make test` installs it")
    return binary


# --- a network partition: etcd in its own network namespace --------------------------------------


CUT_RULE_PREF = 10  # a partition's blackhole rules, before the local table's
LOCAL_RULE_PREF = 100


@dataclass
class EtcdNamespace:
    """etcd inside network namespace `name`, reached over a veth pair created for the test.

    The root side of the link has 10.231.<n>.1 and one more address per agent (each agent's
    etcd client binds its own, through the inventory's lease_source_address), so blackhole rules
    inside the namespace can cut one agent off while every other one still reaches etcd.
    """

    name: str
    link: str
    subnet: int
    directory: Path
    etcd: EtcdServer | None = None

    @property
    def etcd_address(self) -> str:
        return f"10.231.{self.subnet}.2"

    @property
    def url(self) -> str:
        return f"http://{self.etcd_address}:2379"

    def source_address(self, index: int) -> str:
        return f"10.231.{self.subnet}.{11 + index}"

    def cut_off(self, address: str) -> None:
        """Inside the namespace, drop what `address` sends and what is sent to it.

        Both ways, as a real partition: with only etcd's answers dropped, a renewal the agent
        believes lost still reaches etcd and extends the lease it is about to give up."""
        for direction in ("from", "to"):
            self.netns_ip("rule", "add", "pref", str(CUT_RULE_PREF), direction, f"{address}/32", "blackhole")

    def heal(self, address: str) -> None:
        for direction in ("from", "to"):
            self.netns_ip("rule", "del", "pref", str(CUT_RULE_PREF), direction, f"{address}/32", "blackhole")

    def netns_ip(self, *args: str) -> None:
        """`ip` run inside the namespace."""
        _ip("netns", "exec", self.name, "ip", *args)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([require_ip_command(), *args], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


@contextmanager
def etcd_in_namespace(directory: Path, sources: int) -> Iterator[EtcdNamespace]:
    """Create the namespace and the link, start etcd inside, remove all of it afterwards.

    If the kernel or the user's rights forbid network namespaces, this FAILS the test with the
    reason (it is never skipped: a green run must mean the partition was really tested)."""
    require_ip_command()
    tag = os.urandom(3).hex()
    in_use = _ip("-o", "addr", "show").stdout
    subnet = next(n for n in (1 + (int(tag, 16) + i) % 250 for i in range(250)) if f" 10.231.{n}." not in in_use)
    space = EtcdNamespace(name=f"nf-etcd-{tag}", link=f"nf{tag}", subnet=subnet, directory=directory)
    host_end, ns_end = f"{space.link}h", f"{space.link}n"
    created_ns = False
    try:
        try:
            _ip("netns", "add", space.name)
            created_ns = True
            _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        except RuntimeError as exc:
            pytest.fail(
                f"NETWORK NAMESPACES UNAVAILABLE: {exc}. The partition test needs Linux network namespaces and "
                "veth links (root or CAP_NET_ADMIN, a kernel with CONFIG_NET_NS and CONFIG_VETH). It is not "
                "skipped: run the suite as root on such a kernel (as `make test` in CI does).",
                pytrace=False,
            )
        _ip("link", "set", ns_end, "netns", space.name)
        _ip("addr", "add", f"10.231.{space.subnet}.1/24", "dev", host_end)
        for index in range(sources):
            _ip("addr", "add", f"{space.source_address(index)}/24", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("netns", "exec", space.name, "ip", "link", "set", "lo", "up")
        # The local table's rule goes after the cut rules, so packets from a cut address are
        # dropped on their way in as well as on their way out.
        space.netns_ip("rule", "add", "pref", str(LOCAL_RULE_PREF), "lookup", "local")
        space.netns_ip("rule", "del", "pref", "0")
        _ip("netns", "exec", space.name, "ip", "addr", "add", f"{space.etcd_address}/24", "dev", ns_end)
        _ip("netns", "exec", space.name, "ip", "link", "set", ns_end, "up")

        directory.mkdir(parents=True, exist_ok=True)
        # Peers on the namespace's own loopback; clients on its end of the link.
        space.etcd = EtcdServer(directory, 2379, 2380, host=space.etcd_address, wrapper=(require_ip_command(), "netns", "exec", space.name))
        space.etcd.start()
        yield space
    finally:
        if space.etcd is not None:
            space.etcd.stop()
        if created_ns:
            subprocess.run([require_ip_command(), "netns", "del", space.name], capture_output=True, timeout=20)
        # Deleting the namespace removes its end of the pair, and with it ours; make sure.
        if subprocess.run([require_ip_command(), "link", "show", host_end], capture_output=True, timeout=20).returncode == 0:
            subprocess.run([require_ip_command(), "link", "del", host_end], capture_output=True, timeout=20)
