"""Creating a localnet on disk: genesis, three neard homes from templates, staged keys, manifest.

The config.json templates are the reconstructed `neard init` configs (localnet and mainnet
flavours, neard-behaviour §1.5); each home gets the failover guide's role edits (the emulator's
own, config_rules.py: the localnet does not use the tool's config code) and its own loopback
ports, and an emulator.json with the profile's timings (profile.py). The pool key is generated here; the
simulated validators' keys exist only as public keys in genesis (they never sign through the
ledger: the chain counts their duties as done).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from near_failover.localnet import config_rules
from near_failover.localnet.chain import SHARD_LAYOUT_VERSION, YOCTO, hash_text
from near_failover.localnet.profile import Timings, fast
from near_failover.localnet.util import rfc3339_nanos, write_json_atomic
from near_failover.neard.keys import KeyFile, write_key_file

POOL_ACCOUNT = "pool.poolv1.near"
SIMULATED_ACCOUNTS = tuple(f"sim-{i}.poolv1.near" for i in range(1, 6))
POOL_STAKE = 200_000 * YOCTO  # 20 % of the stake: below the 30 % kickout exemption (§5)
SIMULATED_STAKE = 160_000 * YOCTO
NUM_SHARDS = 3
MANIFEST = "localnet.json"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str  # "validator" | "hot-swap" | "rpc"
    standby: str  # the inventory's mode when this node is not the signer: "hot-swap" | "rpc"
    priority: int


NODES = (
    NodeSpec("val-a", "validator", "hot-swap", 100),
    NodeSpec("val-b", "hot-swap", "hot-swap", 90),
    NodeSpec("val-c", "rpc", "rpc", 50),
)


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LISTEN_PORTS = (20000, 32767)  # below Linux's default ephemeral range (32768-60999)


def free_port() -> int:
    """A loopback port free right now for a process that binds it a moment later.

    Taken at random outside the kernel's ephemeral range: every outgoing connection on this
    machine takes its local port from that range, so a port picked there (bind to port 0) can be
    taken by a client before the node binds it."""
    low, high = LISTEN_PORTS
    try:
        eph_low, eph_high = map(int, EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        eph_low, eph_high = 32768, 60999
    candidates = [p for p in (secrets.randbelow(high - low + 1) + low for _ in range(64)) if not eph_low <= p <= eph_high]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a machine whose ephemeral range covers ours
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def template_text(name: str) -> str:
    return resources.files("near_failover.localnet").joinpath(f"templates/{name}").read_text()


def template_config(chain_id: str) -> dict:
    flavour = "mainnet" if chain_id in ("mainnet", "testnet") else "localnet"
    return config_rules.parse(template_text(f"config.{flavour}.json"), f"templates/config.{flavour}.json")


def simulated_public_key(seed: str, account_id: str) -> str:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}|sim-key|{account_id}".encode()).digest())
    return "ed25519:" + base58.b58encode(private.public_key().public_bytes_raw()).decode()


def genesis_document(chain_id: str, seed: str, epoch_length: int, pool_public_key: str, now_ns: int, thresholds: tuple[int, int, int] = (80, 80, 70)) -> dict:
    """A neard-shaped genesis.json (the fields the emulator uses) plus an emulator section."""
    validators = [{"account_id": POOL_ACCOUNT, "public_key": pool_public_key, "amount": str(POOL_STAKE)}]
    validators += [{"account_id": a, "public_key": simulated_public_key(seed, a), "amount": str(SIMULATED_STAKE)} for a in SIMULATED_ACCOUNTS]
    return {
        "protocol_version": 86,
        "genesis_time": rfc3339_nanos(now_ns),
        "chain_id": chain_id,
        "genesis_height": 0,
        "num_block_producer_seats": 100,
        "epoch_length": epoch_length,
        "block_producer_kickout_threshold": thresholds[0],
        "chunk_producer_kickout_threshold": thresholds[1],
        "chunk_validator_only_kickout_threshold": thresholds[2],
        "validator_max_kickout_stake_perc": 30,
        "online_min_threshold": [90, 100],
        "online_max_threshold": [99, 100],
        "shard_layout": {"V2": {"shard_ids": list(range(NUM_SHARDS)), "version": SHARD_LAYOUT_VERSION}},
        "validators": validators,
        "records": [],
        "localnet": {
            "seed": seed,
            "genesis_time_ns": now_ns,
            "external_accounts": [POOL_ACCOUNT],
            "endorsers_per_chunk": 3,
            "note": "emulator-only section: near-failover localnet",
        },
    }


def node_config(chain_id: str, role: str, rpc_port: int, net_port: int, chain_peer: str, chain_port: int) -> dict:
    # The failover guide's settings: validator NoShards + memtries, Option 2 standby
    # ShadowValidator + memtries, Option 1 standby AllShards without memtries.
    tracking, memtries = {"validator": ("NoShards", True), "hot-swap": ({"ShadowValidator": POOL_ACCOUNT}, True)}.get(role, ("AllShards", False))
    cfg = config_rules.with_role(template_config(chain_id), tracking, memtries)
    cfg["rpc"]["addr"] = f"127.0.0.1:{rpc_port}"
    cfg["network"]["addr"] = f"127.0.0.1:{net_port}"
    cfg["network"]["boot_nodes"] = f"{chain_peer}@127.0.0.1:{chain_port}"
    return cfg


def _write_text(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def create_localnet(
    directory: Path,
    chain_id: str = "localnet",
    block_time: float = 0.6,
    epoch_length: int = 300,
    timings: Timings | None = None,
    seed: str | None = None,
    thresholds: tuple[int, int, int] = (80, 80, 70),
) -> dict:
    """Write genesis, homes, staged keys and the manifest; return the manifest."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    timings = timings or fast(block_time)
    seed = seed or hashlib.sha256(f"{directory}|{time.time_ns()}".encode()).hexdigest()[:16]
    now_ns = time.time_ns()
    pool_key = KeyFile.generate(POOL_ACCOUNT)
    genesis = genesis_document(chain_id, seed, epoch_length, pool_key.public_key, now_ns, thresholds)
    genesis_text = config_rules.dumps(genesis)
    _write_text(directory / "genesis.json", genesis_text)
    chain_port = free_port()
    chain_peer = "ed25519:" + hash_text(seed, "chain-peer")
    keys_dir = directory / "keys"
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    nodes = []
    for spec in NODES:
        home = directory / spec.name
        home.mkdir(mode=0o700, exist_ok=True)
        rpc_port, net_port = free_port(), free_port()
        cfg = node_config(chain_id, spec.role, rpc_port, net_port, chain_peer, chain_port)
        _write_text(home / "config.json", config_rules.dumps(cfg))
        _write_text(home / "genesis.json", genesis_text)
        _write_text(home / "log_config.json", template_text("log_config.json"))
        node_key = KeyFile.generate("node")
        write_key_file(home / "node_key.json", node_key)
        if spec.role == "validator":
            write_key_file(home / "validator_key.json", pool_key)
        write_json_atomic(home / "emulator.json", timings.to_json())
        # The pool key staged outside the home: nothing can load it until a procedure moves it in.
        staged = keys_dir / spec.name
        staged.mkdir(mode=0o700, exist_ok=True)
        write_key_file(staged / "validator_key.json", pool_key)
        nodes.append(
            {
                "name": spec.name,
                "role": spec.role,
                "standby": spec.standby,
                "priority": spec.priority,
                "home": str(home),
                "rpc": f"http://127.0.0.1:{rpc_port}",
                "peer_id": node_key.public_key,
                "key_store": str(staged / "validator_key.json"),
            }
        )
    manifest = {
        "format": 1,
        "dir": str(directory),
        "chain_id": chain_id,
        "pool": POOL_ACCOUNT,
        "pool_public_key": pool_key.public_key,
        "block_time": block_time,
        "epoch_length": epoch_length,
        "num_shards": NUM_SHARDS,
        "seed": seed,
        "profile": timings.profile,
        "timings": timings.to_json(),
        "chain": {"port": chain_port, "url": f"http://127.0.0.1:{chain_port}", "peer_id": chain_peer},
        "nodes": nodes,
    }
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest
