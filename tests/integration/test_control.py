"""neard control with real processes and real signals: pid file, systemd (a fake `systemctl` on
PATH that drives a real process, the one mock allowed), and user-given commands."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from near_failover.control import (
    CommandControl,
    ControlError,
    Masked,
    NotRunning,
    NotSupported,
    PidfileControl,
    StopFailed,
    SystemdControl,
    control_for,
)
from near_failover.hosts import LocalHost, host_for
from near_failover.inventory import NodeCommands, parse_inventory
from tests.integration.fake_systemd import define_unit, install_fake_systemctl
from tests.integration.sshd_server import SshdServer, running_sshd

pytestmark = pytest.mark.integration

# A stand-in for neard's signal behaviour: SIGHUP -> a line (neard reloads its key), SIGTERM ->
# exit (or ignored, to force SIGKILL). Bounded lifetime so nothing outlives the test run for long.
FAKE_NEARD = textwrap.dedent(
    """
    import os, signal, sys, time
    events, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "normal")
    def note(text):
        with open(events, "a") as f:
            f.write(text + "\\n")
    def on_hup(*_):
        note("hup")
    def on_term(*_):
        note("term")
        sys.exit(0)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term if mode == "normal" else signal.SIG_IGN)
    note(f"started {os.getpid()}")
    print("neard emulation running", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
    """
)

@pytest.fixture
def fake_neard(tmp_path: Path) -> Path:
    script = tmp_path / "fake_neard.py"
    script.write_text(FAKE_NEARD)
    return script


@pytest.fixture
def reaper() -> Iterator[list[int]]:
    """Pids started by a test; any still running at the end are killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll a sync predicate until true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


# --- pid file ------------------------------------------------------------------------------------


def pidfile_control(tmp_path: Path, fake_neard: Path, mode: str = "normal", **kw: object) -> PidfileControl:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    argv = [sys.executable, str(fake_neard), str(tmp_path / "events"), mode]
    return PidfileControl("val-a", LocalHost(), home / "neard.pid", argv, home, **kw)  # type: ignore[arg-type]


async def test_pidfile_start_reload_stop(tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    control = pidfile_control(tmp_path, fake_neard)
    assert not await control.is_active()
    pid = await control.start()
    reaper.append(pid)
    assert (tmp_path / "home" / "neard.pid").read_text().strip() == str(pid)
    assert await control.is_active() and await control.main_pid() == pid
    assert os.getsid(pid) == pid
    assert await wait_for(lambda: f"started {pid}" in events(tmp_path / "events"))
    assert await wait_for(lambda: "neard emulation running" in (tmp_path / "home" / "neard.log").read_text())

    await control.reload()
    assert await wait_for(lambda: "hup" in events(tmp_path / "events"))
    assert alive(pid)  # SIGHUP reloads, it does not stop

    outcome = await control.stop(timeout=10)
    assert outcome.pid == pid and outcome.was_running and not outcome.killed
    assert "term" in events(tmp_path / "events")
    assert not alive(pid)
    assert not (tmp_path / "home" / "neard.pid").exists()
    assert not await control.is_active()
    with pytest.raises(NotRunning):
        await control.reload()
    again = await control.stop(timeout=1)
    assert not again.was_running and again.pid is None


async def test_pidfile_stop_escalates_to_sigkill(tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    control = pidfile_control(tmp_path, fake_neard, mode="ignore-term")
    pid = await control.start()
    reaper.append(pid)
    assert await wait_for(lambda: f"started {pid}" in events(tmp_path / "events"))
    outcome = await control.stop(timeout=0.5)
    assert outcome.killed and outcome.pid == pid
    assert not alive(pid)
    assert "term" not in events(tmp_path / "events")  # it ignored SIGTERM: SIGKILL did it


async def test_pidfile_masked_start_is_refused(tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    control = pidfile_control(tmp_path, fake_neard)
    await control.mask()
    assert await control.is_masked()
    assert (tmp_path / "home" / "neard.pid.masked").exists()
    with pytest.raises(Masked) as err:
        await control.start()
    assert "val-a" in str(err.value) and "neard.pid.masked" in str(err.value)
    with pytest.raises(Masked):
        await control.restart(timeout=1)
    assert events(tmp_path / "events") == []  # nothing was started
    await control.unmask()
    pid = await control.start()
    reaper.append(pid)
    assert alive(pid)
    await control.mask()
    with pytest.raises(Masked):
        await control.restart(timeout=10)  # refused before stopping: it keeps running
    assert alive(pid)
    await control.stop(timeout=10)


async def test_pidfile_refuses_a_second_start(tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    control = pidfile_control(tmp_path, fake_neard)
    pid = await control.start()
    reaper.append(pid)
    with pytest.raises(ControlError) as err:
        await control.start()
    assert f"already runs (pid {pid}" in str(err.value)
    new_pid = await control.restart(timeout=10)
    reaper.append(new_pid)
    assert new_pid != pid and not alive(pid) and alive(new_pid)
    await control.stop(timeout=10)


async def test_pidfile_start_that_dies_reports_its_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    argv = [sys.executable, "-c", "import sys; print('config.json: missing field'); sys.exit(3)"]
    control = PidfileControl("val-a", LocalHost(), home / "neard.pid", argv, home, start_check=2.0)
    with pytest.raises(ControlError) as err:
        await control.start()
    assert "exited right after start" in str(err.value) and "config.json: missing field" in str(err.value)
    assert not (home / "neard.pid").exists()


async def test_pidfile_stale_and_reused_pids_are_not_ours(tmp_path: Path, fake_neard: Path) -> None:
    control = pidfile_control(tmp_path, fake_neard)
    pidfile = tmp_path / "home" / "neard.pid"
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The pid file predates the process now holding that pid: a reused pid, not neard.
        pidfile.write_text(f"{stranger.pid}\n")
        an_hour_ago = time.time() - 3600
        os.utime(pidfile, (an_hour_ago, an_hour_ago))
        assert not await control.is_active()
        outcome = await control.stop(timeout=1)
        assert not outcome.was_running
        assert stranger.poll() is None, "stop() signalled a process that is not neard"
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
    pidfile.write_text("not-a-pid\n")
    with pytest.raises(ControlError) as err:
        await control.is_active()
    assert str(pidfile) in str(err.value)


async def test_pidfile_control_over_ssh(tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    with running_sshd(tmp_path / "sshd") as sshd:
        await _pidfile_over_ssh(sshd, tmp_path, fake_neard, reaper)


async def _pidfile_over_ssh(sshd: SshdServer, tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    argv = [sys.executable, str(fake_neard), str(tmp_path / "events")]
    async with sshd.host() as host:
        control = PidfileControl("val-b", host, home / "neard.pid", argv, home)
        pid = await control.start()
        reaper.append(pid)
        assert alive(pid) and await control.main_pid() == pid
        await control.reload()
        assert await wait_for(lambda: "hup" in events(tmp_path / "events"))
        await control.mask()
        outcome = await control.stop(timeout=10)
        assert outcome.pid == pid and not outcome.killed and not alive(pid)
        with pytest.raises(Masked):
            await control.start()


# --- systemd (fake systemctl) --------------------------------------------------------------------


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_neard: Path) -> Path:
    bin_dir, state = install_fake_systemctl(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_DIR", str(state))
    return state


def unit_pid(state: Path, unit: str) -> int:
    return int((state / f"{unit}.pid").read_text())


async def test_systemd_start_reload_stop(tmp_path: Path, fake_systemd: Path, fake_neard: Path, reaper: list[int]) -> None:
    define_unit(fake_systemd, "neard.service", [sys.executable, str(fake_neard), str(tmp_path / "events")])
    control = SystemdControl("val-a", LocalHost(), "neard.service")
    assert not await control.is_active() and await control.main_pid() is None
    pid = await control.start()
    assert pid is not None
    reaper.append(pid)
    assert pid == unit_pid(fake_systemd, "neard.service") and alive(pid)
    assert await control.is_active()
    assert await wait_for(lambda: f"started {pid}" in events(tmp_path / "events"))

    await control.reload()
    assert await wait_for(lambda: "hup" in events(tmp_path / "events"))
    assert "kill -s HUP neard.service" in (fake_systemd / "calls.log").read_text()

    outcome = await control.stop(timeout=10)
    assert outcome.pid == pid and outcome.was_running and not outcome.killed
    assert not alive(pid) and not await control.is_active()
    with pytest.raises(NotRunning):
        await control.reload()


async def test_systemd_mask_blocks_start(tmp_path: Path, fake_systemd: Path, fake_neard: Path, reaper: list[int]) -> None:
    define_unit(fake_systemd, "neard.service", [sys.executable, str(fake_neard), str(tmp_path / "events")])
    control = SystemdControl("val-a", LocalHost(), "neard.service")
    await control.mask()
    assert await control.is_masked()
    with pytest.raises(Masked) as err:
        await control.start()
    assert "systemctl unmask neard.service" in str(err.value)
    with pytest.raises(Masked):
        await control.restart()
    assert events(tmp_path / "events") == []
    await control.unmask()
    assert not await control.is_masked()
    pid = await control.start()
    assert pid is not None
    reaper.append(pid)
    new_pid = await control.restart()
    assert new_pid is not None
    reaper.append(new_pid)
    assert new_pid != pid and not alive(pid) and alive(new_pid)
    await control.stop(timeout=10)


async def started_stubborn_unit(tmp_path: Path, fake_systemd: Path, fake_neard: Path, reaper: list[int], **unit: object) -> tuple[SystemdControl, int]:
    """neard.service running a neard that ignores SIGTERM."""
    define_unit(fake_systemd, "neard.service", [sys.executable, str(fake_neard), str(tmp_path / "events"), "ignore-term"], **unit)
    control = SystemdControl("val-a", LocalHost(), "neard.service")
    pid = await control.start()
    assert pid is not None
    reaper.append(pid)
    return control, pid


async def test_systemd_stop_escalates_when_the_unit_leaves_neard_running(
    tmp_path: Path, fake_systemd: Path, fake_neard: Path, reaper: list[int]
) -> None:
    # KillMode=none: `systemctl stop` returns and the process lives on. The fence must notice.
    control, pid = await started_stubborn_unit(tmp_path, fake_systemd, fake_neard, reaper, kill_mode="none")
    outcome = await control.stop(timeout=0.5)
    assert outcome.killed and not alive(pid)
    assert "kill -s KILL neard.service" in (fake_systemd / "calls.log").read_text()


async def test_systemd_stop_keeps_the_callers_deadline(
    tmp_path: Path, fake_systemd: Path, fake_neard: Path, reaper: list[int]
) -> None:
    # neard ignores SIGTERM and the unit's TimeoutStopSec is long: a self-fence's stop must still
    # end with neard gone by its deadline (+ the SIGKILL's grace), before the lease ends.
    control, pid = await started_stubborn_unit(tmp_path, fake_systemd, fake_neard, reaper, timeout_stop=30)
    outcome = await control.stop(timeout=1.0)
    assert outcome.pid == pid and outcome.was_running and outcome.killed
    assert outcome.seconds < 3.0, outcome
    assert not alive(pid) and not await control.is_active()
    assert "kill -s KILL neard.service" in (fake_systemd / "calls.log").read_text()


async def test_systemd_errors_name_the_unit_and_fix(tmp_path: Path, fake_systemd: Path) -> None:
    control = SystemdControl("val-a", LocalHost(), "missing.service")
    with pytest.raises(ControlError) as err:
        await control.start()
    assert "val-a" in str(err.value) and "missing.service" in str(err.value) and "journalctl -u" in str(err.value)
    define_unit(fake_systemd, "etc.service", ["true"], unit_in_etc=True)
    with pytest.raises(ControlError) as err:
        await SystemdControl("val-a", LocalHost(), "etc.service").mask()
    assert "/lib/systemd/system" in str(err.value)


# --- user commands -------------------------------------------------------------------------------


def command_set(tmp_path: Path, fake_neard: Path, mode: str = "normal") -> NodeCommands:
    pidfile, masked, log = tmp_path / "cmd.pid", tmp_path / "cmd.masked", tmp_path / "cmd.log"
    start = (
        f'test ! -e "{masked}" || exit 1; '
        f'setsid "{sys.executable}" "{fake_neard}" "{tmp_path / "events"}" {mode} '
        f'>>"{log}" 2>&1 </dev/null & echo $! > "{pidfile}"'
    )
    return NodeCommands(
        start=["sh", "-c", start],
        stop=["sh", "-c", f'kill -TERM "$(cat "{pidfile}")"'],
        reload=["sh", "-c", f'kill -HUP "$(cat "{pidfile}")"'],
        is_active=["sh", "-c", f'test -e "{pidfile}" && test -d "/proc/$(cat "{pidfile}")" && '
                   f'! grep -q "^[^)]*) [ZX]" "/proc/$(cat "{pidfile}")/stat"'],
        main_pid=["cat", str(pidfile)],
        mask=["touch", str(masked)],
        unmask=["rm", "-f", str(masked)],
        is_masked=["test", "-e", str(masked)],
    )


async def test_command_control(tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    control = CommandControl("val-c", LocalHost(), command_set(tmp_path, fake_neard))
    assert control.supports_mask
    assert not await control.is_active()
    pid = await control.start()
    assert pid is not None
    reaper.append(pid)
    assert alive(pid) and await control.is_active()
    assert await wait_for(lambda: f"started {pid}" in events(tmp_path / "events"))
    await control.reload()
    assert await wait_for(lambda: "hup" in events(tmp_path / "events"))
    outcome = await control.stop(timeout=10)
    assert outcome.pid == pid and not outcome.killed and not alive(pid)
    await control.mask()
    with pytest.raises(Masked):
        await control.start()
    await control.unmask()
    pid = await control.start()
    assert pid is not None
    reaper.append(pid)
    await control.stop(timeout=10)


async def test_command_control_escalates_and_reports(tmp_path: Path, fake_neard: Path, reaper: list[int]) -> None:
    commands = command_set(tmp_path, fake_neard, mode="ignore-term")
    control = CommandControl("val-c", LocalHost(), commands)
    pid = await control.start()
    assert pid is not None
    reaper.append(pid)
    assert await wait_for(lambda: f"started {pid}" in events(tmp_path / "events"))
    outcome = await control.stop(timeout=0.5)  # SIGTERM ignored; main_pid known -> SIGKILL
    assert outcome.killed and not alive(pid)

    # Without main_pid the tool cannot kill: it must say neard is still there, not pretend.
    blind = CommandControl("val-c", LocalHost(), commands.model_copy(update={"main_pid": None}))
    pid = await blind.start()
    assert pid is None
    pid = int((tmp_path / "cmd.pid").read_text())
    reaper.append(pid)
    assert await wait_for(lambda: f"started {pid}" in events(tmp_path / "events"))  # SIGTERM ignored now
    with pytest.raises(StopFailed) as err:
        await blind.stop(timeout=0.5)
    assert "val-c" in str(err.value) and "is_active" in str(err.value)
    assert alive(pid)

    # A `stop` that fails is not waited out: the fence learns now that neard still runs.
    failing = CommandControl("val-c", LocalHost(), commands.model_copy(update={"main_pid": None, "stop": ["sh", "-c", "echo busy >&2; exit 1"]}))
    with pytest.raises(StopFailed) as err:
        await asyncio.wait_for(failing.stop(timeout=60), 10)
    assert "`stop` exited 1: busy" in str(err.value) and alive(pid)

    bare = CommandControl("val-c", LocalHost(), NodeCommands(start=["true"], stop=["true"], is_active=["false"]))
    assert not bare.supports_mask
    with pytest.raises(NotSupported) as err2:
        await bare.mask()
    assert "[node.commands]" in str(err2.value)


# --- factory -------------------------------------------------------------------------------------


def test_control_for_builds_each_kind(tmp_path: Path) -> None:
    text = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"

[[node]]
name = "a"
home = "a"
rpc = "http://127.0.0.1:3030"
control = "systemd:neard.service"
key_store = "keys/a.json"
standby = "hot-swap"

[[node]]
name = "b"
home = "b"
rpc = "http://127.0.0.1:3031"
control = "pidfile:b/neard.pid"
start = ["neard", "--home", "b", "run"]
key_store = "keys/b.json"
standby = "rpc"

[[node]]
name = "c"
home = "c"
rpc = "http://127.0.0.1:3032"
control = "command"
key_store = "keys/c.json"
standby = "rpc"
[node.commands]
start = "docker start neard"
stop = "docker stop neard"
is_active = "docker inspect -f '{{.State.Running}}' neard"
"""
    inventory = parse_inventory(text, tmp_path / "inventory.toml")
    controls = {n.name: control_for(n, host_for(n)) for n in inventory.nodes}
    assert isinstance(controls["a"], SystemdControl) and controls["a"].unit == "neard.service"
    b = controls["b"]
    assert isinstance(b, PidfileControl)
    assert str(b.pidfile) == str(tmp_path / "b" / "neard.pid")
    assert str(b.log_path) == str(tmp_path / "b" / "neard.log")
    c = controls["c"]
    assert isinstance(c, CommandControl)
    assert c.commands["is_active"] == ["docker", "inspect", "-f", "{{.State.Running}}", "neard"]
