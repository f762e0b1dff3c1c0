"""The chain process: the network every emulated neard talks to.

It runs the block clock over `chain.Chain`, verifies and records our nodes' signatures in the
`ledger.Ledger`, and serves a small HTTP API on 127.0.0.1 (not neard's API: this is the
"network" side that a real node reaches over p2p):

  GET  /status                      chain id, tick height, head block, epoch
  GET  /genesis                     genesis facts (hash, time, epoch length, shards)
  GET  /head?after=N&timeout=S&...  long-poll: returns once a height > N has closed
  GET  /epoch?epoch=E               validator set, keys and shard assignment of E and E+1
  GET  /validators?epoch=E|epoch_id=X|height=H   RPC `validators` result (neard shape)
  GET  /maintenance_windows?account_id=A[&height=H]
  GET  /block?height=H              a block by height (404 when skipped or unknown)
  GET  /network?peer_id=P           peers and known producers as P sees them
  POST /sign                        a batch of duty signatures from one node
  POST /advertise                   a node announcing (or dropping) the account it signs for
  POST /start                       start the block clock (`up` sends it once every node is up)
  GET  /ledger[?epoch=E]            counters, double signs, rejections

It writes DIR/chain.json (url, pid) once it listens, and removes it on a clean stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from near_failover.localnet.chain import KIND_ENDORSEMENT, KINDS, Chain, ChainParams, hash_text, signing_message
from near_failover.localnet.http import Request, Response, start_server
from near_failover.localnet.ledger import Ledger, Signer
from near_failover.localnet.util import Log, read_json, write_json_atomic
from near_failover.neard.keys import KeyFileError, public_key_of

MAX_LONG_POLL = 30.0


def simulated_peer_id(seed: str, account_id: str) -> str:
    return "ed25519:" + hash_text(seed, "peer", account_id)


class ChainServer:
    def __init__(self, directory: Path, log: Log) -> None:
        self.dir = directory
        self.log = log
        self.manifest = read_json(directory / "localnet.json")
        self.genesis = read_json(directory / "genesis.json")
        self.params = ChainParams.from_genesis(self.genesis)
        self.block_time = float(self.manifest["block_time"])
        self.chain = Chain(self.params)
        self.ledger = Ledger()
        self.names: dict[str, str] = {n["peer_id"]: n["name"] for n in self.manifest.get("nodes", [])}
        self.peers: dict[str, dict] = {}  # peer_id -> {addr, name, last_seen}
        self.producers: dict[str, str] = {}  # external account -> peer id that last advertised it
        # Routing lag after a key moves to another peer (profile.py): the peer an account's
        # witnesses are routed to, and since when (monotonic).
        self.routing_lag = float(self.manifest.get("timings", {}).get("routing_lag", 0.0))
        self.routes: dict[str, tuple[str, float]] = {}
        self._tick_event = asyncio.Event()
        self._head_cache: tuple[int, bytes] | None = None
        self._verify_keys: dict[str, Ed25519PublicKey] = {}
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()  # the clock starts at POST /start (all nodes up)
        self.started = time.monotonic()

    # --- clock ---------------------------------------------------------------------------

    async def run_clock(self) -> None:
        await self._released.wait()
        self.log.info("chain", "genesis released: the block clock starts", block_time=self.block_time)
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.block_time
        while not self._stopping.is_set():
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            height = self.chain.open_height
            result = self.chain.close_slot(self.ledger.signed_in_time(height), time.time_ns())
            self.ledger.prune(self.chain.tick)
            if result.epoch_ended is not None:
                self.log.info(
                    "epoch_manager",
                    "epoch ended",
                    epoch_height=result.epoch_ended + 1,
                    last_height=result.height,
                    kickouts=",".join(k["account_id"] for k in result.kickouts) or "none",
                )
            event, self._tick_event = self._tick_event, asyncio.Event()
            event.set()
            next_at += self.block_time
            if loop.time() > next_at + self.block_time:  # fell behind (suspended): no burst
                next_at = loop.time() + self.block_time

    # --- helpers ---------------------------------------------------------------------------

    def _name(self, peer_id: str) -> str:
        return self.names.get(peer_id) or self.peers.get(peer_id, {}).get("name") or peer_id

    def _seen(self, q: dict[str, str]) -> None:
        peer_id = q.get("peer_id")
        if peer_id:
            entry = self.peers.setdefault(peer_id, {})
            entry.update(addr=q.get("addr"), name=q.get("name") or entry.get("name"), last_seen=time.monotonic())

    def _live_peers(self) -> list[str]:
        horizon = max(2.0, 3 * self.block_time)
        now = time.monotonic()
        return [p for p, e in self.peers.items() if now - e.get("last_seen", 0) < horizon]

    def _key(self, text: str) -> Ed25519PublicKey:
        key = self._verify_keys.get(text)
        if key is None:
            key = Ed25519PublicKey.from_public_bytes(public_key_of(text))
            self._verify_keys[text] = key
        return key

    def _head_payload(self) -> bytes:
        tick = self.chain.tick
        if self._head_cache and self._head_cache[0] == tick:
            return self._head_cache[1]
        head = self.chain.head
        epoch = self.params.epoch_of(head.height)
        open_height = self.chain.open_height
        duties = self.chain.duties(open_height)
        payload = {
            "tick": tick,
            "head": {
                **head.as_dict(),
                "epoch": epoch,
                "epoch_id": self.chain.epoch_id_of(epoch),
                "epoch_start_height": self.params.epoch_start(epoch),
            },
            "open_height": open_height,
            "open_epoch": self.params.epoch_of(open_height),
            "duties": {a: duties.for_account(a) for a in sorted(self.params.external_accounts)},
        }
        data = Response.json(payload).body
        self._head_cache = (tick, data)
        return data

    # --- handlers --------------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        route = (req.method, req.path)
        q = req.query
        if route == ("GET", "/head"):
            self._seen(q)
            after = int(q.get("after", "-1"))
            if self.chain.tick <= after:
                event = self._tick_event
                try:
                    await asyncio.wait_for(event.wait(), min(float(q.get("timeout", "5")), MAX_LONG_POLL))
                except asyncio.TimeoutError:
                    pass
            self._seen(q)
            return Response(200, self._head_payload())
        if route == ("POST", "/sign"):
            return Response.json(self._sign(req.json()))
        if route == ("GET", "/epoch"):
            summary = self.chain.epoch_summary(int(q["epoch"]))
            return Response.json(summary) if summary else Response.json({"error": "UNKNOWN_EPOCH"}, 404)
        if route == ("GET", "/validators"):
            return self._validators(q)
        if route == ("GET", "/maintenance_windows"):
            height = int(q["height"]) if "height" in q else None
            return Response.json([list(w) for w in self.chain.maintenance_windows(q["account_id"], height)])
        if route == ("GET", "/block"):
            block = self.chain.blocks.get(int(q.get("height", self.chain.head.height)))
            if block is None:
                return Response.json({"error": "UNKNOWN_BLOCK"}, 404)
            epoch = self.params.epoch_of(block.height)
            return Response.json({**block.as_dict(), "epoch_id": self.chain.epoch_id_of(epoch), "epoch": epoch})
        if route == ("GET", "/network"):
            return Response.json(self._network(q.get("peer_id", "")))
        if route == ("POST", "/advertise"):
            body = req.json()
            self._seen({"peer_id": body.get("peer_id", ""), "addr": body.get("addr"), "name": body.get("name")})
            account = body.get("account_id")
            for acc, peer in list(self.producers.items()):
                if peer == body.get("peer_id") and acc != account:
                    del self.producers[acc]
            if account in self.params.external_accounts:
                self.producers[account] = body["peer_id"]
                self._route(account, body["peer_id"])
            return Response.json({"ok": True})
        if route == ("POST", "/start"):
            self._released.set()
            return Response.json({"ok": True, "height": self.chain.tick})
        if route == ("GET", "/status"):
            return Response.json(self._status())
        if route == ("GET", "/genesis"):
            return Response.json(self._genesis())
        if route == ("GET", "/ledger"):
            epoch = int(q["epoch"]) if "epoch" in q else self.chain.epoch
            return Response.json(self._ledger(epoch))
        return Response.json({"error": f"no route {req.method} {req.path}"}, 404)

    def _genesis(self) -> dict:
        return {
            "chain_id": self.params.chain_id,
            "genesis_hash": self.chain.genesis.hash,
            "genesis_height": 0,
            "genesis_time_ns": self.params.genesis_time_ns,
            "epoch_length": self.params.epoch_length,
            "num_shards": self.params.num_shards,
            "block_time": self.block_time,
            "protocol_version": self.genesis.get("protocol_version", 86),
        }

    def _status(self) -> dict:
        return {
            "chain_id": self.params.chain_id,
            "pid": os.getpid(),
            "height": self.chain.tick,
            "head": self.chain.head.as_dict(),
            "epoch_height": self.chain.epoch + 1,
            "block_time": self.block_time,
            "live_peers": [self._name(p) for p in self._live_peers()],
            "clock_running": self._released.is_set(),
        }

    def _validators(self, q: dict[str, str]) -> Response:
        epoch: int | None
        if "epoch_id" in q:
            epoch = self.chain.epoch_by_id(q["epoch_id"])
        elif "block_hash" in q:
            epoch = next((self.params.epoch_of(b.height) for b in self.chain.blocks.values() if b.hash == q["block_hash"]), None)
        elif "height" in q:
            height = int(q["height"])
            epoch = self.params.epoch_of(height) if height in self.chain.blocks else None
        else:
            epoch = int(q.get("epoch", self.chain.epoch))
        view = self.chain.validators_view(epoch) if epoch is not None else None
        return Response.json(view) if view else Response.json({"error": "UNKNOWN_EPOCH"}, 404)

    def _network(self, peer_id: str) -> dict:
        live = [p for p in self._live_peers() if p != peer_id]
        epoch = self.chain.epoch
        peers = [{"id": p, "addr": self.peers[p].get("addr"), "account_id": None} for p in sorted(live)]
        producers = []
        for v in sorted(self.chain.validators_of(epoch) or (), key=lambda v: v.account_id):
            if v.account_id in self.params.external_accounts:
                peer = self.producers.get(v.account_id)
                if peer is None or (peer not in live and peer != peer_id):
                    continue  # a silent node's route expires
                producers.append({"account_id": v.account_id, "addr": self.peers.get(peer, {}).get("addr"), "peer_id": peer})
            else:
                sim = simulated_peer_id(self.params.seed, v.account_id)
                peers.append({"id": sim, "addr": None, "account_id": None})
                producers.append({"account_id": v.account_id, "addr": None, "peer_id": sim})
        return {"active_peers": peers, "known_producers": producers}

    def _route(self, account: str, peer_id: str) -> float:
        """The time the network has routed `account`'s witnesses to `peer_id` since.

        After a key moves to another peer, the network has to learn the new peer for the account
        (TIER1 AccountData, chain/network/src/accounts_data/mod.rs) before state witnesses reach
        it; nearcore issue #13766 saw a hot-swapped chunk validator endorse nothing until the next
        epoch. The first peer an account is seen on is routed at once (the localnet's genesis).
        """
        now = time.monotonic()
        current = self.routes.get(account)
        if current is None:
            self.routes[account] = (peer_id, now - self.routing_lag)
        elif current[0] != peer_id:
            self.routes[account] = (peer_id, now)
            if self.routing_lag > 0:
                self.log.info("network", "the account's peer changed: witnesses reach the new peer after the routing lag", account_id=account, node=self._name(peer_id), lag=self.routing_lag)
        return now - self.routes[account][1]

    def _sign(self, body: dict) -> dict:
        peer_id = str(body.get("peer_id", ""))
        self._seen({"peer_id": peer_id, "addr": str(body.get("addr") or ""), "name": str(body.get("name") or "")})
        pid = body.get("pid")
        signer = Signer(str(body.get("process") or peer_id), peer_id, str(body.get("name") or self._name(peer_id)), int(pid) if isinstance(pid, int) else None)
        results = []
        for sig in body.get("signatures", []):
            results.append(self._one_signature(signer, sig))
        return {"tick": self.chain.tick, "results": results}

    def _one_signature(self, signer: Signer, sig: dict) -> dict:
        peer_id = signer.peer_id
        account = str(sig.get("account_id"))
        kind = sig.get("kind")
        height = int(sig.get("height", -1))
        shard = sig.get("shard")
        if account not in self.params.external_accounts or kind not in KINDS:
            self.ledger.reject(account, "not_ours")
            return {"outcome": "rejected", "reason": "not_ours"}
        if height > self.chain.open_height:
            self.ledger.reject(account, "early")
            return {"outcome": "rejected", "reason": "early"}
        epoch = self.params.epoch_of(height)
        on_chain = self.chain.validator(epoch, account)
        if on_chain is None:
            self.ledger.reject(account, "not_a_validator")
            return {"outcome": "rejected", "reason": "not_a_validator"}
        if sig.get("public_key") != on_chain.public_key:
            # The account's on-chain key decides; any other key is refused and counted.
            self.ledger.reject(account, "key_mismatch")
            self.log.warn("ledger", "signature with a key that is not the account's on-chain key", account_id=account, height=height, kind=kind, node=self._name(peer_id))
            return {"outcome": "rejected", "reason": "key_mismatch"}
        try:
            self._key(on_chain.public_key).verify(bytes.fromhex(sig.get("signature", "")), signing_message(height, kind, shard, account))
        except (InvalidSignature, ValueError, KeyFileError):
            self.ledger.reject(account, "bad_signature")
            return {"outcome": "rejected", "reason": "bad_signature"}
        if height < self.chain.open_height - self.ledger.keep_heights:
            self.ledger.reject(account, "too_old")
            return {"outcome": "rejected", "reason": "too_old"}
        if (kind, shard) not in [tuple(d) for d in self.chain.duties(height).for_account(account)]:
            self.ledger.reject(account, "no_duty")
            return {"outcome": "rejected", "reason": "no_duty"}
        in_time = height == self.chain.open_height
        self.producers[account] = peer_id
        if self._route(account, peer_id) < self.routing_lag and kind == KIND_ENDORSEMENT:
            # No state witness reached this peer yet: it had nothing to endorse.
            self.ledger.reject(account, "not_routed")
            return {"outcome": "rejected", "reason": "not_routed"}
        double = self.ledger.record(account, height, kind, shard, signer, self.chain.tick, in_time)
        if double is not None:
            self.log.warn(
                "ledger",
                "DOUBLE SIGN",
                account_id=account,
                height=height,
                kind=kind,
                shard="-" if shard is None else shard,
                nodes=",".join(f"{s.name}(pid {s.pid})" for s in double.signers),
            )
        return {"outcome": "accepted" if in_time else "late", "double_sign": double is not None}

    def _ledger(self, epoch: int) -> dict:
        validators = self.chain.validators_of(epoch) or ()
        accounts = {}
        for v in sorted(validators, key=lambda v: v.account_id):
            s = self.chain.account_stats(epoch, v.account_id)
            accounts[v.account_id] = {
                "external": v.account_id in self.params.external_accounts,
                **{name: s.total(kind).as_dict() for name, kind in (("blocks", "block"), ("chunks", "chunk"), ("endorsements", "endorsement"))},
            }
        signers = {
            account: [
                {"peer_id": p, "name": self._name(p), "signed": s.signed, "in_time": s.in_time, "late": s.late, "first_height": s.first_height, "last_height": s.last_height}
                for p, s in sorted(per_peer.items())
            ]
            for account, per_peer in self.ledger.signers.items()
        }
        return {
            "chain_id": self.params.chain_id,
            "height": self.chain.tick,
            "head_height": self.chain.head.height,
            "epoch_height": epoch + 1,
            "epoch_start_height": self.params.epoch_start(epoch),
            "double_signs": len(self.ledger.double_signs),
            "double_sign_events": [d.as_dict(self.names | {p: self._name(p) for p in d.peer_ids}) for d in self.ledger.double_signs],
            "rejected": {a: dict(r) for a, r in self.ledger.rejected.items()},
            "signatures": self.ledger.total,
            "signers": signers,
            "accounts": accounts,
            "prev_epoch_kickout": list(self.chain.kickouts.get(epoch - 1, [])),
        }

    # --- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        port = int(self.manifest["chain"]["port"])
        server = await start_server(self.handle, "127.0.0.1", port, on_error=lambda e: self.log.error("chain", "handler failed", error=repr(e)))
        url = f"http://127.0.0.1:{port}"
        write_json_atomic(self.dir / "chain.json", {"url": url, "pid": os.getpid(), "port": port})
        self.log.info("chain", "chain started", chain_id=self.params.chain_id, url=url, block_time=self.block_time, epoch_length=self.params.epoch_length)
        if not self.manifest.get("hold_genesis", True):
            self._released.set()
        clock = asyncio.create_task(self.run_clock())
        await self._stopping.wait()
        clock.cancel()
        server.close()
        try:
            (self.dir / "chain.json").unlink()
        except FileNotFoundError:
            pass
        self.log.info("chain", "chain stopped", height=self.chain.tick, double_signs=len(self.ledger.double_signs))


def run_chain(directory: Path) -> int:
    log = Log()
    try:
        server = ChainServer(directory.resolve(), log)
    except (OSError, KeyError, ValueError) as exc:
        log.error("chain", f"cannot start the chain from {directory}: {exc}")
        return 2
    asyncio.run(server.serve())
    return 0
