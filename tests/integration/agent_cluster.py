"""A localnet with `near-failover agent` processes on a sqlite lease, each serving its API.

Started as an operator would: `localnet up`, the inventory given a [lease] table, an API token
file and an `api` address per node, then one `near-failover agent -c INVENTORY --node NAME` per
node. Only loopback addresses.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from near_failover.localnet.homes import free_port
from tests.integration.etcd_server import TlsFiles
from tests.integration.localnet_harness import Localnet, start_localnet, stop_localnet
from tests.integration.localnet_support import wait_for

AGENT = [sys.executable, "-m", "near_failover", "agent"]
# Patroni's rule holds: loop_wait + 2 * retry_timeout = 2.5 < ttl.
LEASE = {"ttl": 4.0, "loop_wait": 0.5, "retry_timeout": 1.0, "auto_rejoin": False}  # a fenced node stays as its fence left it
TOKEN = "api-token-for-tests-0123456789abcdef"


@dataclass
class AgentCluster:
    net: Localnet
    apis: dict[str, str]
    token: str
    lease_file: Path
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    verify: ssl.SSLContext | bool = True  # how the test verifies https:// APIs

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, node: str, path: str, timeout: float = 15.0) -> httpx.Response:
        return httpx.get(self.apis[node] + path, timeout=timeout, trust_env=False, verify=self.verify)

    def post(self, node: str, path: str, json: Any = None, headers: dict[str, str] | None = None, timeout: float = 60.0) -> httpx.Response:
        return httpx.post(self.apis[node] + path, json=json, headers=headers, timeout=timeout, trust_env=False, verify=self.verify)

    def status(self, node: str) -> dict[str, Any]:
        answer = self.get(node, "/status")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def cluster(self, node: str) -> dict[str, Any]:
        answer = self.get(node, "/cluster")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def leader(self) -> tuple[str, int]:
        """The lease holder and its generation, as the store says."""
        view = wait_for(lambda: self.cluster(next(iter(self.apis)))["leader"], 20, "a leader in the lease store")
        return view["member"], int(view["generation"])

    def agent_logs(self) -> str:
        return "\n".join(f"--- agent {n} ---\n{self.log(n)}" for n in self.apis)

    def log(self, node: str) -> str:
        path = self.net.directory / f"agent-{node}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM each agent (a clean stop: the leader fences itself), SIGKILL after 20 s."""
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.agents.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def start_agent_cluster(directory: Path, nodes: tuple[str, ...] = ("val-a", "val-b"), tls: TlsFiles | None = None,
                        lease_variants: dict[str, dict[str, Any]] | None = None, lease: dict[str, Any] | None = None,
                        alerts: list[dict[str, Any]] | None = None, agent_args: tuple[str, ...] = (), **localnet: Any) -> AgentCluster:
    """A localnet whose inventory keeps `nodes` (and `alerts` as its [[alert]] tables), with an agent and its API on each (over https
    with `tls`'s server certificate and CA); waits until every agent is healthy in its role and
    all of them name the one leader. `lease_variants` gives an agent its own inventory, with
    those [lease] fields changed (what that agent believes); `lease` overrides LEASE's timings;
    `agent_args` are added to each agent's command line (`--log-format json`);
    `localnet` are start_localnet's options."""
    net = start_localnet(directory, **localnet)
    try:
        token_file = directory / "api-token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(TOKEN + "\n")
        import tomllib

        import tomli_w

        data = tomllib.loads(net.inventory.read_text())
        data["node"] = [n for n in data["node"] if n["name"] in nodes]
        apis = {}
        for node in data["node"]:
            node["api"] = apis[node["name"]] = f"{'https' if tls else 'http'}://127.0.0.1:{free_port()}"
            if tls:
                node.update(api_cert_file=str(tls.server_cert), api_key_file=str(tls.server_key))
        lease_file = directory / "lease.sqlite"
        data["lease"] = {"store": "sqlite", "path": str(lease_file), "api_token_file": str(token_file), **LEASE, **(lease or {})}
        if tls:
            data["lease"]["api_ca_file"] = str(tls.ca)
        if alerts:
            data["alert"] = alerts
        net.inventory.write_text(tomli_w.dumps(data))
        inventories = {name: net.inventory for name in nodes}
        for name, lease in (lease_variants or {}).items():
            inventories[name] = directory / f"inventory-{name}.toml"
            inventories[name].write_text(tomli_w.dumps({**data, "lease": {**data["lease"], **lease}}))

        cluster = AgentCluster(net, apis, TOKEN, lease_file, verify=ssl.create_default_context(cafile=str(tls.ca)) if tls else True)
        for name in nodes:
            with open(directory / f"agent-{name}.log", "ab") as log:
                cluster.agents[name] = subprocess.Popen(
                    [*AGENT, "-c", str(inventories[name]), "--node", name, *agent_args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
    except BaseException:
        stop_localnet(net)
        raise
    try:
        def settled() -> bool:
            for name, proc in cluster.agents.items():
                assert proc.poll() is None, f"agent {name} exited {proc.returncode}:\n{cluster.log(name)}"
            if not all(cluster.get(n, "/health", timeout=5).status_code == 200 for n in nodes):
                return False
            views = [cluster.status(n) for n in nodes]
            leaders = [v["node"] for v in views if v["role"] == "leader"]
            return len(leaders) == 1 and all(v["leader"] == leaders[0] for v in views)

        try:
            wait_for(settled, 40, "every agent healthy with one leader")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cluster.agent_logs()}") from None
    except BaseException:
        cluster.stop()
        stop_localnet(net)
        raise
    return cluster


def stop_agent_cluster(cluster: AgentCluster) -> None:
    try:
        cluster.stop()
    finally:
        stop_localnet(cluster.net)
