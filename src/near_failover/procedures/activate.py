"""Give the target the key (after the fence), confirm it signs, or take the key back.

Option 2 (hot-swap): key into home + SIGHUP; neard hot-loads it (neard-behaviour §2.2).
Option 1 (rpc): config.json to NoShards + memtries, key into home, restart, wait through the
memtrie load (§2.3: tracking and memtries change only at restart; §6: RPC refuses meanwhile).
No SIGHUP and no stop reaches a neard that is still starting (startup.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from near_failover.limits import CONFIG_JSON, KEY_FILE
from near_failover.neard.config import as_validator, backup_name, dumps_config, parse_config_text
from near_failover.neard.jsonc import has_comments
from near_failover.neard.keys import KeyFile, KeyFileError, parse_key_file
from near_failover.neard.rpc import RpcError
from near_failover.procedures.chain_view import Production, production_of
from near_failover.procedures.errors import StepFailed
from near_failover.procedures.nodes import NodeAccess
from near_failover.procedures.startup import Say, wait_ready_after_restart, wait_until_started


@dataclass
class Activation:
    mode: str
    config_backup: str | None = None
    # Option 1: how the restart went (phases, seconds, memtries the process holds).
    restart: dict[str, Any] | None = None
    # Option 1: config.json had comments, which neard's format drops (the backup keeps them).
    comments_dropped: bool = False

    def evidence(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "config_backup": self.config_backup,
            **({"comments_dropped": True} if self.comments_dropped else {}),
            **({"restart": self.restart} if self.restart else {}),
        }


async def install_key(node: NodeAccess, expected: KeyFile) -> None:
    """Copy the staged key (outside home) into neard's home, 0600 from the first byte.

    The staged file is read again and checked against the key preflight validated: a file that
    changed or broke since then is never handed to neard (the target provably has no key, so the
    move can be rolled back)."""
    where = f"{node.name}:{node.spec.key_store}"
    text = await node.host.read_text(node.spec.key_store, KEY_FILE)
    try:
        key = parse_key_file(text, source=where)
    except KeyFileError as exc:
        raise StepFailed(f"the staged key became invalid after preflight: {exc}", known=True) from None
    if key.public_key != expected.public_key or key.account_id != expected.account_id:
        raise StepFailed(f"the staged key {where} changed after preflight", known=True)
    await node.host.write_atomic(await node.validator_key_path(), text, 0o600)


async def edit_config_to_validator(node: NodeAccess) -> tuple[str, bool]:
    """Option 1's config edit on the node's host, keeping a backup beside it; returns the backup
    path and whether the file had comments (neard's format drops them; the backup keeps them)."""
    return await edit_config_on_host(node, as_validator)


async def edit_config_on_host(node: NodeAccess, edit: Callable[[dict], dict]) -> tuple[str, bool]:
    """``edit`` applied to config.json on the node's host, atomically and with a backup beside it."""
    path = node.spec.config_path
    text = await node.host.read_text(path, CONFIG_JSON)
    edited = edit(parse_config_text(text, source=f"{node.name}:{path}"))
    mode = await node.host.stat_mode(path)
    backup = backup_name(path)  # the CLI's name for the same backup
    await node.host.write_atomic(backup, text, mode)
    await node.host.write_atomic(path, dumps_config(edited), mode)
    return str(backup), has_comments(text)


async def activate(node: NodeAccess, mode: str, key: KeyFile, deadline: float, stop_timeout: float, say: Say) -> Activation:
    """Give `node` the key; Option 1 returns only once the restarted neard is up, has loaded its
    memtries and is synced, within `deadline`, so verify only has to see it sign."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    if mode == "hot-swap":
        await signal_when_started(node, "sending SIGHUP", end - loop.time(), deadline, say)
        await install_key(node, key)
        await node.control.reload()
        return Activation(mode)
    await install_key(node, key)  # first: a bad staged key fails before config.json is touched
    backup, comments_dropped = await edit_config_to_validator(node)
    if comments_dropped:
        say(f"notice: {node.name}'s config.json had comments, which neard's format drops on write; they stay in the backup {backup}")
    await signal_when_started(node, "restarting it", end - loop.time(), deadline, say)
    say(f"{node.name}: restarting neard (NoShards, memtries on, key in home)")
    await node.control.restart(timeout=min(stop_timeout, end - loop.time()))
    return Activation(mode, backup, await wait_ready_after_restart(node, end - loop.time(), say), comments_dropped)


async def signal_when_started(node: NodeAccess, action: str, budget: float, startup_window: float, say: Say) -> dict[str, Any]:
    """Never signal a neard that is still starting (a SIGHUP or SIGTERM then kills it)."""
    waited = await wait_until_started(node, action, budget, startup_window, say)
    if waited and not waited["finished_starting"] and not waited.get("exited"):
        raise StepFailed(f"{node.name} was still starting after {budget:.0f}s: not {action} (a signal during start-up kills neard)", known=False)
    return waited


async def wait_rpc(node: NodeAccess, deadline: float) -> None:
    """Wait until the node's RPC answers again (after a restart it loads memtries first)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while loop.time() < end:
        if await node.status_or_none() is not None:
            return
        await asyncio.sleep(0.2)
    raise StepFailed(f"{node.name}: RPC did not answer within {deadline:.0f}s after the restart", known=False)


async def wait_key_loaded(node: NodeAccess, key: KeyFile, deadline: float) -> dict[str, Any]:
    """Until status shows the pool's account and key. Known failure if neard rejected the key."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    last: Any = None
    while loop.time() < end:
        status = await node.status_or_none()
        if status is not None:
            last = status
            if status.validator_account_id == key.account_id and status.validator_public_key == key.public_key:
                return {"validator_account_id": status.validator_account_id, "validator_public_key": status.validator_public_key, "height": status.sync_info.latest_block_height}
            if await _reload_rejected(node):
                raise StepFailed(
                    f"{node.name} rejected the key file on reload (near_config_correct = 0): it kept no signer",
                    known=True,
                )
        await asyncio.sleep(0.1)
    if last is not None and last.validator_account_id is None:
        raise StepFailed(f"{node.name} did not load the key within {deadline:.0f}s (status shows no validator key)", known=True)
    raise StepFailed(f"{node.name}: cannot confirm whether the key is loaded (RPC not answering)", known=False)


async def _reload_rejected(node: NodeAccess) -> bool:
    try:
        metrics = await node.rpc.metrics()
    except RpcError:
        return False
    return metrics.value("near_config_correct") == 0


async def wait_producing(node: NodeAccess, account_id: str, baseline: Production | None, deadline: float) -> dict[str, Any]:
    """Until the chain, as the target sees it, shows the pool producing again."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while loop.time() < end:
        try:
            status = await node.rpc.status()
            snap = production_of(await node.rpc.validators(), account_id, status.sync_info.latest_block_height)
        except RpcError:
            snap = None
        if snap is not None and not status.sync_info.syncing:
            new_epoch = baseline is None or snap.epoch_start_height != baseline.epoch_start_height
            if (new_epoch and snap.produced > 0) or (not new_epoch and snap.produced > baseline.produced):  # type: ignore[union-attr]
                return {"producing_at": snap.height, "production": snap.to_json()}
        await asyncio.sleep(0.1)
    raise StepFailed(
        f"{node.name} holds the key but the chain shows no production by {account_id} within {deadline:.0f}s",
        known=False,
    )


async def withdraw_key(node: NodeAccess, mode: str, config_backup: str | None, restart_timeout: float, say: Say) -> dict[str, Any]:
    """Undo an activation that provably never took: key out of home (the staged copy stays), and
    for Option 1 the old config back, so the node is the standby it was."""
    await node.host.remove(await node.validator_key_path(), missing_ok=True)
    action = "restarting it" if mode == "rpc" and config_backup else "sending SIGHUP"
    waited = await signal_when_started(node, action, restart_timeout, restart_timeout, say)
    if mode == "rpc" and config_backup:
        path = node.spec.config_path
        await node.host.write_atomic(path, await node.host.read_bytes(config_backup, CONFIG_JSON), await node.host.stat_mode(path))
        await node.control.restart(timeout=restart_timeout)
    else:
        await node.control.reload()
    return {"node": node.name, "key_in_home": await node.key_in_home(), **waited}
