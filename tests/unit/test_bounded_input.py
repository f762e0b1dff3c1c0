"""Bounded input: files by kind (regular files only, a size cap each), HTTP answers capped after
decoding (gzip bombs), against real files, FIFOs, devices and a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from near_failover import http_limits, limits
from near_failover.ha.alerts import AlertEvent, AlertKind, AlertSender, AlertTarget
from near_failover.ha.etcd import EtcdLeaseStore
from near_failover.ha.lease import LeaseStoreUnavailable
from near_failover.hosts import HostError, LocalHost
from near_failover.inventory import InventoryError, load_inventory, read_secret_file
from near_failover.neard.check import _genesis_chain_id
from near_failover.neard.config import ConfigError, load_config
from near_failover.neard.keys import KeyFileError, load_key_file
from near_failover.neard.rpc import MalformedResponse, NeardRpc

MIB = 1024 * 1024


# --- files ---------------------------------------------------------------------------------------


def _fifo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


def _link_to_zero(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.symlink_to("/dev/zero")
    return path


def _big(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    with path.open("wb") as fh:
        fh.truncate(size)  # sparse: no disk used, but stat and read see every byte
    return path


READERS: dict[str, tuple[Callable[[Path], object], type[Exception], int]] = {
    "config.json": (load_config, ConfigError, limits.CONFIG_JSON.max_bytes),
    "validator_key.json": (load_key_file, KeyFileError, limits.KEY_FILE.max_bytes),
    "inventory.toml": (load_inventory, InventoryError, limits.INVENTORY.max_bytes),
    "api-token": (lambda p: read_secret_file(p, "api_token_file"), InventoryError, limits.SECRET_FILE.max_bytes),
}


def _call_bounded(reader: Callable[[Path], object], path: Path, error: type[Exception]) -> str:
    """Run the reader in a thread with a deadline: a FIFO that blocks fails the test, not hangs it."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            reader(path)
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        # Unblock the reader (a FIFO's open waits for a writer) so the thread can end.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail(f"reading {path.name} blocked")
    (outcome,) = result
    assert isinstance(outcome, error), outcome
    return str(outcome)


@pytest.mark.parametrize("name", list(READERS))
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, name: str) -> None:
    reader, error, _ = READERS[name]
    path = _fifo(tmp_path, name)
    if name == "api-token":
        os.chmod(path, 0o600)
    message = _call_bounded(reader, path, error)
    assert "FIFO" in message and name in message


@pytest.mark.parametrize("name", list(READERS))
def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path, name: str) -> None:
    reader, error, _ = READERS[name]
    message = _call_bounded(reader, _link_to_zero(tmp_path, name), error)
    assert "character device" in message and name in message


@pytest.mark.parametrize("name", list(READERS))
def test_a_file_over_its_kind_cap_is_refused_with_the_cap_named(tmp_path: Path, name: str) -> None:
    reader, error, cap = READERS[name]
    path = _big(tmp_path, name, cap + 1)
    os.chmod(path, 0o600)
    tracemalloc.start()
    try:
        message = _call_bounded(reader, path, error)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"more than the {limits.human_size(cap)} allowed" in message and name in message
    assert peak < 2 * MIB  # refused from fstat, nothing read


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real-config.json"
    real.write_text('{"genesis_file": "genesis.json"}')
    link = tmp_path / "config.json"
    link.symlink_to(real)
    assert load_config(link) == {"genesis_file": "genesis.json"}


def test_a_directory_is_refused_as_a_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="is a directory"):
        load_key_file(tmp_path)


def test_genesis_stays_a_bounded_prefix_scan_and_a_fifo_does_not_hang(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_bytes(b'{"chain_id": "testnet", "records": [' + b" " * (2 * MIB) + b"]}")
    assert _genesis_chain_id(genesis) == "testnet"
    fifo = _fifo(tmp_path, "fifo-genesis.json")
    assert _call_bounded(lambda p: _genesis_chain_id(p) or (_ for _ in ()).throw(LookupError("none")), fifo, LookupError)


async def test_host_reads_are_bounded_by_kind(tmp_path: Path) -> None:
    host = LocalHost()
    with pytest.raises(HostError, match="character device"):
        await host.read_bytes(_link_to_zero(tmp_path, "validator_key.json"), limits.KEY_FILE)
    with pytest.raises(HostError, match="FIFO"):
        await asyncio.wait_for(host.read_bytes(_fifo(tmp_path, "log_config.json"), limits.LOG_CONFIG), 10)
    big = _big(tmp_path, "config.json", limits.CONFIG_JSON.max_bytes + 1)
    with pytest.raises(HostError, match="allowed for config.json"):
        await host.read_text(big, limits.CONFIG_JSON)
    # /proc files report size 0 and are still read to their end.
    assert "btime" in await host.read_text("/proc/stat", limits.PROC_FILE)


# --- HTTP ----------------------------------------------------------------------------------------


class BombServer:
    """A real HTTP server on loopback answering every request with one fixed (gzip) body."""

    def __init__(self, body: bytes, encoding: str | None = "gzip") -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gzip_bomb(expanded: int) -> bytes:
    """A JSON-looking answer that expands to ``expanded`` bytes."""
    return gzip.compress(b'{"jsonrpc": "2.0", "result": "' + b"0" * expanded + b'"}', compresslevel=9)


@pytest.fixture(scope="module")
def bomb() -> Iterator[BombServer]:
    server = BombServer(gzip_bomb(limits.RPC_ANSWER_BYTES + MIB))
    yield server
    server.close()


async def test_a_gzip_bomb_from_neard_rpc_is_cut_at_the_cap(bomb: BombServer) -> None:
    tracemalloc.start()
    try:
        async with NeardRpc(bomb.url, "val-a", timeout=20) as rpc:
            with pytest.raises(MalformedResponse, match=f"larger than the {limits.human_size(limits.RPC_ANSWER_BYTES)} allowed") as caught:
                await rpc.call("status")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "val-a" in str(caught.value)
    assert peak < 3 * limits.RPC_ANSWER_BYTES  # the decoded chunks up to the cap, not the whole answer


async def test_an_answer_under_the_cap_is_read_whole() -> None:
    server = BombServer(gzip.compress(b'{"jsonrpc": "2.0", "id": 1, "result": {"ok": true}}'))
    try:
        async with NeardRpc(server.url, "val-a", timeout=10) as rpc:
            assert await rpc.call("anything") == {"ok": True}
    finally:
        server.close()


async def test_a_gzip_bomb_from_etcd_is_an_unavailable_store_not_a_memory_blowup() -> None:
    server = BombServer(gzip_bomb(limits.ETCD_ANSWER_BYTES + MIB))
    store = EtcdLeaseStore([server.url], "pool.poolv1.near", operation_timeout=10)
    try:
        with pytest.raises(LeaseStoreUnavailable, match=f"larger than the {limits.human_size(limits.ETCD_ANSWER_BYTES)} allowed"):
            await store.leader()
    finally:
        await store.close()
        server.close()


async def test_a_webhook_answer_is_capped() -> None:
    server = BombServer(gzip_bomb(limits.WEBHOOK_ANSWER_BYTES + 1))
    sender = AlertSender([AlertTarget(kind="json", url=server.url + "/hook")])
    try:
        (result,) = await sender.notify(AlertEvent(kind=AlertKind.ROLE_CHANGE, account_id="pool.poolv1.near", node="val-a", reason="test"))
    finally:
        await sender.aclose()
        server.close()
    assert not result.ok and "larger than the 64 KiB allowed" in (result.error or "")


async def test_bounded_client_leaves_streaming_to_the_caller() -> None:
    server = BombServer(b"x" * 100, encoding=None)
    try:
        async with http_limits.BoundedAsyncClient(max_response_bytes=10, trust_env=False) as client:
            with pytest.raises(http_limits.ResponseTooLarge):
                await client.get(server.url)
            async with client.stream("GET", server.url) as response:
                assert len(await response.aread()) == 100
    finally:
        server.close()
