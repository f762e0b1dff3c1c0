"""Every Host operation, on this machine and over a real OpenSSH server on 127.0.0.1.

The same checks run against LocalHost and SshHost: procedures must not be able to tell them apart.
SSH also gets its refusals: unknown or changed host key, wrong user key, closed port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from near_failover import limits
from near_failover.hosts import (
    CommandTimeout,
    Host,
    HostAuthFailed,
    HostError,
    HostFileExists,
    HostFileNotFound,
    HostKeyUnknown,
    HostUnreachable,
    LocalHost,
    NoSuchProcess,
    SshHost,
    host_for,
)
from near_failover.inventory import parse_inventory
from tests.integration.sshd_server import SshdServer, running_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(params=["local", "ssh"])
async def host(request: pytest.FixtureRequest, sshd: SshdServer) -> AsyncIterator[Host]:
    h: Host = LocalHost() if request.param == "local" else sshd.host()
    async with h:
        yield h


async def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll an async predicate until true or the deadline passes (no timing is asserted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(await predicate())


# --- files ---------------------------------------------------------------------------------------


async def test_write_atomic_sets_mode_and_content(host: Host, tmp_path: Path) -> None:
    target = tmp_path / "validator_key.json"
    await host.write_atomic(target, '{"k": 1}', mode=0o600)
    assert target.read_text() == '{"k": 1}'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert await host.stat_mode(target) == 0o600

    # Replacing keeps it atomic (a new inode) and applies the new mode; no temp file is left.
    old_inode = os.stat(target).st_ino
    await host.write_atomic(target, b"\x00binary\xff", mode=0o640)
    assert target.read_bytes() == b"\x00binary\xff"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert os.stat(target).st_ino != old_inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validator_key.json"]


async def test_write_atomic_mode_is_not_widened_by_umask(host: Host, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        await host.write_atomic(tmp_path / "pub.txt", "x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "pub.txt").st_mode) == 0o644


async def test_write_atomic_into_missing_folder_fails_clearly(host: Host, tmp_path: Path) -> None:
    with pytest.raises(HostFileNotFound) as err:
        await host.write_atomic(tmp_path / "nope" / "f", "x")
    assert host.label in str(err.value) and str(tmp_path / "nope" / "f") in str(err.value)


async def test_read_text_and_bytes(host: Host, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("héllo\nworld")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 300)  # larger than one SFTP read
    assert await host.read_text(tmp_path / "t.txt") == "héllo\nworld"
    assert await host.read_bytes(tmp_path / "b.bin") == bytes(range(256)) * 300
    with pytest.raises(HostFileNotFound):
        await host.read_bytes(tmp_path / "missing")
    # /proc files report size 0: they must still be read to the end.
    assert (await host.read_text(f"/proc/{os.getpid()}/stat")).startswith(f"{os.getpid()} (")


async def test_reads_are_regular_files_within_their_kind_cap(host: Host, tmp_path: Path) -> None:
    """A FIFO must not hang the reader (sftp-server's open would block), a link to /dev/zero must
    not grow memory, and a file over its kind's cap is refused with the cap named."""
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(HostError, match="is a FIFO, not a regular file"):
        await asyncio.wait_for(host.read_text(fifo, limits.CONFIG_JSON), 15)
    zero = tmp_path / "validator_key.json"
    zero.symlink_to("/dev/zero")
    with pytest.raises(HostError, match="is a character device"):
        await asyncio.wait_for(host.read_bytes(zero, limits.KEY_FILE), 15)
    big = tmp_path / "node_key.json"
    big.write_bytes(b"x" * (limits.KEY_FILE.max_bytes + 1))
    with pytest.raises(HostError, match="more than the 64 KiB allowed for a key file"):
        await host.read_bytes(big, limits.KEY_FILE)
    with pytest.raises(HostError, match="is a directory"):
        await host.read_bytes(tmp_path, limits.KEY_FILE)
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "real.json")
    (tmp_path / "real.json").write_text("{}")
    assert await host.read_text(link, limits.KEY_FILE) == "{}"


async def test_move_refuses_to_overwrite_unless_asked(host: Host, tmp_path: Path) -> None:
    src, dst = tmp_path / "src.json", tmp_path / "dst.json"
    src.write_text("new")
    dst.write_text("old")
    with pytest.raises(HostFileExists):
        await host.move(src, dst)
    assert src.read_text() == "new" and dst.read_text() == "old"
    await host.move(src, dst, overwrite=True)
    assert not src.exists() and dst.read_text() == "new"
    await host.move(dst, tmp_path / "moved.json")
    assert (tmp_path / "moved.json").read_text() == "new" and not dst.exists()
    with pytest.raises(HostFileNotFound):
        await host.move(tmp_path / "absent", tmp_path / "x")


async def test_remove_exists_mkdir_stat(host: Host, tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    await host.mkdir(folder, mode=0o750)
    assert await host.exists(folder)
    info = await host.stat(folder)
    assert info.is_dir and not info.is_file and info.mode == 0o750
    await host.mkdir(folder)  # exist_ok
    (folder / "f").write_text("x")
    info = await host.stat(folder / "f")
    assert info.is_file and info.size == 1 and info.uid == os.getuid()
    await host.chmod(folder / "f", 0o400)
    assert await host.stat_mode(folder / "f") == 0o400
    await host.remove(folder / "f")
    assert not await host.exists(folder / "f")
    with pytest.raises(HostFileNotFound):
        await host.remove(folder / "f")
    await host.remove(folder / "f", missing_ok=True)
    await host.remove(folder)  # an empty folder
    assert not folder.exists()
    with pytest.raises(HostFileNotFound):
        await host.stat(folder)


# --- commands ------------------------------------------------------------------------------------


async def test_run_returns_exit_code_and_output(host: Host) -> None:
    result = await host.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok
    piped = await host.run(["cat"], timeout=10, input=b"from stdin")
    assert piped.ok and piped.stdout == "from stdin"
    missing = await host.run(["no-such-command-near-failover"], timeout=10)
    assert missing.exit_code == 127


async def test_run_passes_arguments_without_shell_injection(host: Host, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    nasty = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "a'b\"c", "x\ny", "*"]
    result = await host.run(["printf", "%s|", *nasty], timeout=10)
    assert result.stdout == "|".join(nasty) + "|"
    assert not marker.exists()


async def test_run_timeout_kills_the_command(host: Host, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandTimeout) as err:
        await host.run(["sh", "-c", f'echo $$ > {pidfile}; exec sleep 60'], timeout=0.5)
    assert host.label in str(err.value)
    pid = int(pidfile.read_text())
    assert await wait_until(lambda: _dead(host, pid)), f"sleep (pid {pid}) survived the timeout"


async def _dead(host: Host, pid: int) -> bool:
    return not await host.pid_alive(pid)


async def test_signal_and_pid_alive(host: Host) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert await host.pid_alive(child.pid)
        await host.signal(child.pid, signal.SIGTERM)
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait(timeout=10)
    assert not await host.pid_alive(child.pid)
    with pytest.raises(NoSuchProcess):
        await host.signal(child.pid, signal.SIGHUP)
    assert not await host.pid_alive(4_194_304)  # above any pid_max


async def test_zombie_is_not_alive(host: Host) -> None:
    child = subprocess.Popen(["true"])
    assert await wait_until(lambda: _zombie(child.pid))
    assert not await host.pid_alive(child.pid)  # exited, not yet reaped: it cannot sign
    child.wait(timeout=10)


async def _zombie(pid: int) -> bool:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2] == "Z"


async def test_spawn_detached_new_session_log_and_signals(host: Host, tmp_path: Path) -> None:
    log = tmp_path / "neard.log"
    log.write_text("earlier line\n")
    script = "import os, sys, time; print('cwd', os.getcwd(), flush=True); time.sleep(60)"
    pid = await host.spawn_detached([sys.executable, "-c", script], log=log, cwd=tmp_path)
    try:
        assert await host.pid_alive(pid)
        assert os.getsid(pid) == pid  # its own session: survives our exit and our terminal
        assert await wait_until(lambda: _contains(log, f"cwd {tmp_path}"))
        assert log.read_text().startswith("earlier line\n")  # appended, not truncated
        sig_ignored = int(_status_field(pid, "SigIgn"), 16)
        assert not sig_ignored & (1 << (signal.SIGINT - 1)), "a detached neard must not ignore SIGINT"
        assert not sig_ignored & (1 << (signal.SIGHUP - 1)), "a detached neard must not ignore SIGHUP"
    finally:
        await host.signal(pid, signal.SIGKILL)
    assert await wait_until(lambda: _dead(host, pid))


async def _contains(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


def _status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split()[1]
    raise AssertionError(f"{name} not in /proc/{pid}/status")


# --- SSH only ------------------------------------------------------------------------------------


async def test_ssh_unknown_host_key_is_refused_with_the_fix(sshd: SshdServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    async with sshd.host(known_hosts=empty) as h:
        with pytest.raises(HostKeyUnknown) as err:
            await h.run(["true"], timeout=10)
    message = str(err.value)
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty}" in message
    assert "not in" in message and sshd.url in message


async def test_ssh_changed_host_key_is_refused_as_a_mismatch(sshd: SshdServer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    known = tmp_path / "known_hosts"
    key_type, key_data = (tmp_path / "other.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key_data}\n")
    async with sshd.host(known_hosts=known) as h:
        with pytest.raises(HostKeyUnknown) as err:
            await h.exists("/")
    assert "does NOT match" in str(err.value) and "ssh-keygen -R" in str(err.value)


async def test_ssh_revoked_host_key_is_reported_as_revoked(sshd: SshdServer, tmp_path: Path) -> None:
    """The server presents the key known_hosts revokes (beside the new key it trusts, or alone):
    "revoked", not "does NOT match" and never "add it with ssh-keyscan"."""
    key_type, key_data = sshd.host_key_pub.read_text().split()[:2]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "new")], check=True, timeout=30)
    new_type, new_data = (tmp_path / "new.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    revoked_line = f"@revoked [127.0.0.1]:{sshd.port} {key_type} {key_data}\n"
    for content in (revoked_line + f"[127.0.0.1]:{sshd.port} {new_type} {new_data}\n", revoked_line):
        known.write_text(content)
        async with sshd.host(known_hosts=known) as h:
            with pytest.raises(HostKeyUnknown) as err:
                await h.exists("/")
        message = str(err.value)
        assert str(known) in message
        text = message.replace(str(known), "KNOWN_HOSTS")
        assert "marked @revoked" in text and "does NOT match" not in text and "ssh-keyscan" not in text, text


async def test_ssh_ca_only_known_hosts_says_the_server_offers_no_certificate(sshd: SshdServer, tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True, timeout=30)
    key_type, key_data = (tmp_path / "ca.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority [127.0.0.1]:{sshd.port} {key_type} {key_data}\n")
    async with sshd.host(known_hosts=known) as h:
        with pytest.raises(HostKeyUnknown) as err:
            await h.exists("/")
    message = str(err.value)
    assert "@cert-authority" in message and "certificate" in message and "reset" not in message.lower()


async def test_ssh_missing_known_hosts_file_is_refused(sshd: SshdServer, tmp_path: Path) -> None:
    async with sshd.host(known_hosts=tmp_path / "absent") as h:
        with pytest.raises(HostKeyUnknown) as err:
            await h.run(["true"])
    assert "does not exist" in str(err.value) and "ssh-keyscan" in str(err.value)


async def test_ssh_wrong_user_key_is_refused(sshd: SshdServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30)
    async with sshd.host(identity=[stranger]) as h:
        with pytest.raises(HostAuthFailed) as err:
            await h.run(["true"])
    assert "authorized_keys" in str(err.value) and str(stranger) in str(err.value)


async def test_ssh_unreachable_port_is_refused(sshd: SshdServer) -> None:
    import socket

    with socket.socket() as sock:  # a port that is bound but not listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with sshd.host(port=port, connect_timeout=3.0) as h:
            with pytest.raises(HostUnreachable) as err:
                await h.run(["true"])
    assert f"127.0.0.1:{port}" in str(err.value) and "refused" in str(err.value)


async def test_ssh_reconnects_after_close(sshd: SshdServer) -> None:
    h = sshd.host()
    assert (await h.run(["echo", "one"])).stdout == "one\n"
    await h.close()
    assert (await h.run(["echo", "two"])).stdout == "two\n"
    await h.close()


async def test_host_for_builds_hosts_from_the_inventory(sshd: SshdServer, tmp_path: Path) -> None:
    text = f"""
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"

[ssh]
known_hosts = "{sshd.known_hosts}"
identity = "{sshd.user_key}"
connect_timeout = 5

[[node]]
name = "val-a"
host = "local"
home = "val-a"
rpc = "http://127.0.0.1:3030"
control = "systemd:neard.service"
key_store = "keys/val-a.json"
standby = "hot-swap"

[[node]]
name = "val-b"
host = "{sshd.url}"
home = "{tmp_path}/val-b"
rpc = "http://127.0.0.1:3031"
control = "systemd:neard.service"
key_store = "{tmp_path}/keys/val-b.json"
standby = "rpc"
"""
    inventory = parse_inventory(text, tmp_path / "inventory.toml")
    local = host_for(inventory.node("val-a"), inventory.ssh)
    remote = host_for(inventory.node("val-b"), inventory.ssh)
    assert isinstance(local, LocalHost) and isinstance(remote, SshHost)
    assert "val-b" in remote.label
    async with remote:
        await remote.mkdir(inventory.node("val-b").home)
        await remote.write_atomic(inventory.node("val-b").config_path, "{}", mode=0o644)
    assert (tmp_path / "val-b" / "config.json").read_text() == "{}"
