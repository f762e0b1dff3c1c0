"""The agent stays light (issue 13, part 3): what it does every loop costs no more than it must."""

from __future__ import annotations

import asyncio
import importlib.abc
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import near_failover.ha.agent as agent_module
from near_failover.api.server import ApiServer
from near_failover.ha.agent import Agent
from near_failover.ha.decide import Rules, eligible
from near_failover.ha.lease import MemberRecord, MemberRole
from near_failover.ha.publish import record_due
from near_failover.ha.stores import open_lease_store
from near_failover.http_limits import BoundedAsyncClient
from near_failover.inventory import parse_inventory
from near_failover.neard.keys import KeyFile, parse_key_file, write_key_file
from near_failover.neard.rpc import NeardRpc
from near_failover.procedures.journal import Journal
from near_failover.procedures.nodes import open_nodes
from tests.integration.etcd_server import make_tls
from tests.unit.test_watchdog_light import loaded_by


class Lookups(importlib.abc.MetaPathFinder):
    """Records every module the import system is asked to find (a name already imported is not)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        self.names.append(fullname)


class Answer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"jsonrpc": "2.0", "id": "x", "result": {}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass


@contextmanager
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_rpc_round_trip_looks_for_no_module() -> None:
    """httpcore imports sniffio on every request and falls back when it is missing: a failed
    import searches every sys.path entry, eight times a loop, about 0.2 ms each on a loaded
    machine. With sniffio installed (a dependency) a request after the first finds no module."""
    async def requests(url: str, lookups: Lookups) -> None:
        async with httpx.AsyncClient() as client:
            await client.post(url, json={"jsonrpc": "2.0", "id": "x", "method": "status", "params": []})  # warms up
            sys.meta_path.insert(0, lookups)
            try:
                for _ in range(5):
                    await client.post(url, json={"jsonrpc": "2.0", "id": "x", "method": "status", "params": []})
            finally:
                sys.meta_path.remove(lookups)

    lookups = Lookups()
    with server() as url:
        asyncio.run(requests(url, lookups))
    assert lookups.names == []


def record(**changes: object) -> MemberRecord:
    fields: dict[str, object] = {"name": "val-b", "role": MemberRole.STANDBY, "healthy": True, "priority": 1,
                                 "head_height": 100, "updated_at": 1000.0, **changes}
    return MemberRecord.model_validate(fields)


MAX_AGE = Rules().record_max_age  # 5 s with the default timings


def test_the_first_record_is_written() -> None:
    assert record_due(record(), None, 1000.0, MAX_AGE)


def test_an_unchanged_record_is_not_written_again_each_loop() -> None:
    written = record()
    assert not record_due(record(updated_at=1001.0), written, 1001.0, MAX_AGE)


def test_a_new_head_alone_waits_for_the_refresh() -> None:
    written = record()
    assert not record_due(record(head_height=102, updated_at=1002.0), written, 1002.0, MAX_AGE)


def test_an_unchanged_record_is_written_again_at_half_its_max_age_so_it_stays_a_candidates() -> None:
    written = record()
    now = 1000.0 + MAX_AGE / 2
    assert record_due(record(updated_at=now), written, now, MAX_AGE)
    assert eligible(written, now + 1.0, MAX_AGE)  # the one in the store is still fresh meanwhile


def test_every_change_a_decision_reads_is_written_at_once() -> None:
    written = record()
    for change in ({"role": MemberRole.LEADER, "generation": 4}, {"healthy": False, "problems": ["rpc down"]},
                   {"role": MemberRole.FENCED, "fenced_generation": 3}, {"priority": 2}, {"api_url": "http://127.0.0.1:9"},
                   {"details": {"failovers_total": 1}}):
        assert record_due(record(updated_at=1000.5, **change), written, 1000.5, MAX_AGE), change


def test_the_api_server_ticks_once_a_second_and_stops_at_once() -> None:
    """uvicorn's main loop woke ten times a second in every agent to look at its exit flag; the
    agent's server looks once a second, answers meanwhile, and a stop ends it without a tick."""
    async def hello(scope: dict, receive: object, send: Callable[[dict], Awaitable[None]]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    ticks: list[int] = []

    async def main() -> None:
        api = ApiServer(hello, "127.0.0.1", 0)
        ready = asyncio.Event()
        serving = asyncio.ensure_future(api.run(ready=ready))
        await ready.wait()
        server = api._server
        assert server is not None
        tick = server.on_tick

        async def counted(counter: int) -> bool:
            ticks.append(counter)
            return await tick(counter)

        vars(server)["on_tick"] = counted  # shadows the method for this server
        async with httpx.AsyncClient() as client:
            for _ in range(4):
                answer = await client.get(api.url)
                assert answer.status_code == 200 and answer.text == "ok" and "date" in answer.headers
                await asyncio.sleep(0.5)
        looked = len(ticks)
        api.stop()
        await asyncio.wait_for(serving, 10)
        assert 1 <= looked <= 4, ticks  # 2 s: two or three looks; uvicorn's own loop looked 20 times
        assert len(ticks) == looked + 1  # the stop: one last look, at once

    asyncio.run(main())


STAGED_INVENTORY = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"

[lease]
store = "sqlite"

[[node]]
name = "a"
host = "local"
home = "{tmp}/a/home"
rpc = "http://127.0.0.1:1"
control = "systemd:neard"
key_store = "{tmp}/a/keys/validator_key.json"
standby = "hot-swap"
"""


async def test_the_staged_key_is_checked_again_only_when_its_file_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A standby reads its staged key every loop; the check (JSON, base58, the public key derived
    from the seed) runs again only when the bytes changed, and every change is seen."""
    source = tmp_path / "inventory.toml"
    source.write_text(STAGED_INVENTORY.format(tmp=tmp_path))
    inv = parse_inventory(source.read_text(), source)
    staged = tmp_path / "a" / "keys" / "validator_key.json"
    staged.parent.mkdir(parents=True)
    parses: list[str] = []

    def counted(text: str, source: str) -> KeyFile:
        parses.append(source)
        return parse_key_file(text, source)

    monkeypatch.setattr(agent_module, "parse_key_file", counted)
    store = open_lease_store(inv)
    with Journal(tmp_path / "journal.sqlite") as journal:
        agent = Agent(inv, "a", store, journal, state_dir=tmp_path / "state")
        async with open_nodes(inv) as nodes:
            agent.nodes = nodes
            assert (await agent._readiness())[0].startswith("no valid staged key")  # none yet
            write_key_file(staged, KeyFile.generate("pool.poolv1.near"))
            for _ in range(3):  # the key passes; the target checks after it find no neard here
                assert not any("staged key" in problem for problem in await agent._readiness())
            assert len(parses) == 1  # three loops, one check
            write_key_file(staged, KeyFile.generate("other.poolv1.near"))
            assert await agent._readiness() == ["staged key is for other.poolv1.near"]
            staged.write_text("{not json")
            assert (await agent._readiness())[0].startswith("no valid staged key")
            staged.unlink()
            assert (await agent._readiness())[0].startswith("no valid staged key")
            assert len(parses) == 3
    await store.close()


# What `near-failover agent` loads before its loop starts: the CLI package (its entry point),
# the agent, its store, its API.
AGENT_ENTRY = ("import near_failover.cli, near_failover.ha.agent, near_failover.ha.stores, near_failover.api.app, "
               "near_failover.api.server")
# Optional parts of its libraries near-failover never calls (near_failover/__init__.py): httpx's
# command-line client (with rich's progress bars and pygments), structlog's rich tracebacks and
# pretty-printed locals (with attrs).
UNUSED_EXTRAS = ("httpx._main", "rich.traceback", "rich.pretty", "rich.progress", "rich.syntax", "pygments", "attr")


def test_the_agent_entry_loads_none_of_its_libraries_unused_extras() -> None:
    modules = loaded_by(AGENT_ENTRY)
    assert "near_failover.ha.agent" in modules and "httpx" in modules and "structlog" in modules
    assert sorted(m for m in modules if m in UNUSED_EXTRAS or m.split(".")[0] in UNUSED_EXTRAS) == []


def test_the_extras_kept_out_still_load_when_asked_for() -> None:
    """Kept out only while httpx and structlog load: the CLI's rich output (rich.console imports
    rich.pretty when it prints a structure) and an explicit import still find them."""
    modules = loaded_by(f"{AGENT_ENTRY}\nimport rich.console, httpx._main, rich.traceback\n"
                        "rich.console.Console(file=open('/dev/null', 'w')).print({'a': [1, 2]})")
    assert {"rich.pretty", "rich.traceback", "httpx._main"} <= modules


def test_the_agent_still_logs_an_exception_with_its_plain_traceback() -> None:
    out = subprocess.run([sys.executable, "-c", f"{AGENT_ENTRY}\nimport structlog\n"
                          "try:\n    1 / 0\nexcept ZeroDivisionError:\n    structlog.get_logger().exception('boom')\n"],
                         capture_output=True, text=True, check=True, env={**os.environ, "NEAR_FAILOVER_LOG_FORMAT": "console"})
    assert "boom" in out.stdout + out.stderr
    assert "Traceback (most recent call last)" in out.stdout + out.stderr and "ZeroDivisionError" in out.stdout + out.stderr


def tls_context_of(client: httpx.AsyncClient) -> ssl.SSLContext:
    """The context httpx's default transport (httpcore's pool) opens its TLS connections with."""
    transport: Any = client._transport
    context: ssl.SSLContext = transport._pool._ssl_context
    return context


def test_clients_that_verify_by_default_share_one_tls_context() -> None:
    """httpx reads the whole CA bundle for every client (about 45 ms and 1.2 MB each); the agent's
    clients (one per node, its alerts', its API peers') share one, still verifying."""
    first, second = NeardRpc("http://127.0.0.1:3030", "val-a"), NeardRpc("https://127.0.0.1:3031", "val-b")
    contexts = [tls_context_of(rpc._client) for rpc in (first, second)]
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode is ssl.CERT_REQUIRED and contexts[0].check_hostname
    own = ssl.create_default_context()
    assert tls_context_of(BoundedAsyncClient(max_response_bytes=1, trust_env=False, verify=own)) is own


def test_the_shared_tls_context_refuses_an_unknown_ca_and_a_given_one_accepts_it(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(tls.server_cert, tls.server_key)
    httpd.socket = served.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}"

    async def post(client: httpx.AsyncClient) -> int:
        async with client:
            return (await client.post(url, json={})).status_code

    try:
        for _ in range(2):  # the second client gets the context the first one built
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                asyncio.run(post(BoundedAsyncClient(max_response_bytes=1000, trust_env=False)))
        trusted = ssl.create_default_context(cafile=str(tls.ca))
        assert asyncio.run(post(BoundedAsyncClient(max_response_bytes=1000, trust_env=False, verify=trusted))) == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
