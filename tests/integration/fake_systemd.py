"""A fake `systemctl` on PATH: the one mock the project allows (systemd cannot run here).

It keeps unit state in files under $FAKE_SYSTEMD_DIR and runs a real process per unit, so what
it "supervises" is a real emulated neard with real signals.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

# The fake systemctl: unit state in files under $FAKE_SYSTEMD_DIR, a real process per unit.
# <unit>.json holds {"exec": argv, "kill_mode": "control-group"|"none", "timeout_stop": secs,
# "unit_in_etc": bool, "user": the unit's User= (needs a root systemctl)}. `stop --no-block`
# returns at once and stops the unit in a detached re-run of this script (STOP_WORKER), as systemd
# runs the stop job after systemctl returned. calls.log records each call and the uid it ran as.
FAKE_SYSTEMCTL = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    from pathlib import Path

    STOP_WORKER = "__fake-stop-job"
    state = Path(os.environ["FAKE_SYSTEMD_DIR"])
    args = [a for a in sys.argv[1:] if a not in ("--quiet", "--value", "--no-block")]
    quiet = "--quiet" in sys.argv
    no_block = "--no-block" in sys.argv
    if args[0] != STOP_WORKER:
        with open(state / "calls.log", "a") as f:
            f.write(" ".join(sys.argv[1:]) + f"\\tuid={os.getuid()}\\n")

    def unit_conf(unit):
        path = state / f"{unit}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def main_pid(unit):
        path = state / f"{unit}.pid"
        if not path.exists():
            return 0
        pid = int(path.read_text())
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0
        return 0 if stat[stat.rindex(")") + 2] in "ZX" else pid

    def stop_job_running(unit):
        path = state / f"{unit}.stopping"  # holds the pid of the process doing the stop
        try:
            return main_pid_alive(int(path.read_text()))
        except (OSError, ValueError):
            return False

    def active_state(unit):
        if not main_pid(unit):
            return "inactive"
        return "deactivating" if stop_job_running(unit) else "active"

    def masked(unit):
        return (state / f"{unit}.masked").exists()

    def wait_gone(pid, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if main_pid_alive(pid) is False:
                return True
            time.sleep(0.05)
        return main_pid_alive(pid) is False

    def main_pid_alive(pid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat[stat.rindex(")") + 2] not in "ZX"

    def start(unit):
        conf = unit_conf(unit)
        if conf is None:
            print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr); sys.exit(5)
        if masked(unit):
            print(f"Failed to start {unit}: Unit {unit} is masked.", file=sys.stderr); sys.exit(1)
        if main_pid(unit):
            return
        log = open(state / f"{unit}.log", "ab")
        as_user = {}
        if conf.get("user"):  # the unit's User=: its uid, its group, no supplementary groups
            import pwd
            entry = pwd.getpwnam(conf["user"])
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        proc = subprocess.Popen(conf["exec"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, **as_user)
        (state / f"{unit}.pid").write_text(str(proc.pid))

    def stop(unit):
        conf = unit_conf(unit) or {}
        pid_file = state / f"{unit}.pid"
        recorded = pid_file.read_text() if pid_file.exists() else None
        pid = main_pid(unit)
        (state / f"{unit}.stopping").write_text(str(os.getpid()))
        if pid and conf.get("kill_mode", "control-group") != "none":
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, conf.get("timeout_stop", 5)):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
        if conf.get("kill_mode", "control-group") != "none":
            if pid_file.exists() and pid_file.read_text() == recorded:  # not one a later start wrote
                pid_file.unlink()
        (state / f"{unit}.stopping").unlink(missing_ok=True)

    def stop_no_block(unit):
        if stop_job_running(unit):
            return  # systemd would merge the two stop jobs
        job = subprocess.Popen([sys.executable, os.path.abspath(__file__), STOP_WORKER, unit],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        (state / f"{unit}.stopping").write_text(str(job.pid))  # deactivating once systemctl returns

    cmd, unit = args[0], args[-1]
    if cmd == STOP_WORKER:
        stop(unit)
    elif cmd == "start":
        start(unit)
    elif cmd == "stop":
        if unit_conf(unit) is None:
            print(f"Failed to stop {unit}: Unit {unit} not loaded.", file=sys.stderr); sys.exit(5)
        stop_no_block(unit) if no_block else stop(unit)
    elif cmd == "restart":
        if masked(unit):
            print(f"Failed to restart {unit}: Unit {unit} is masked.", file=sys.stderr); sys.exit(1)
        stop(unit); start(unit)
    elif cmd == "is-active":
        current = active_state(unit)
        if not quiet:
            print(current)
        sys.exit(0 if current == "active" else 3)
    elif cmd == "show":
        prop = args[args.index("-p") + 1]
        if prop == "MainPID":
            print(main_pid(unit))
        elif prop == "ActiveState":
            print(active_state(unit))
        elif prop == "LoadState":
            print("masked" if masked(unit) else ("loaded" if unit_conf(unit) else "not-found"))
    elif cmd == "kill":
        sig = args[args.index("-s") + 1]
        pid = main_pid(unit)
        if not pid:
            print(f"Failed to kill unit {unit}: No main process to kill", file=sys.stderr); sys.exit(1)
        os.kill(pid, getattr(signal, "SIG" + sig))
    elif cmd == "mask":
        if (unit_conf(unit) or {}).get("unit_in_etc"):
            print(f"Failed to mask unit: File /etc/systemd/system/{unit} already exists.", file=sys.stderr)
            sys.exit(1)
        (state / f"{unit}.masked").write_text("")
        print(f"Created symlink /etc/systemd/system/{unit} -> /dev/null.", file=sys.stderr)
    elif cmd == "unmask":
        (state / f"{unit}.masked").unlink(missing_ok=True)
    else:
        print(f"fake systemctl: unsupported {args}", file=sys.stderr); sys.exit(64)
    """
)


def install_fake_systemctl(directory: Path) -> tuple[Path, Path]:
    """Write the fake into directory/bin; returns (bin dir for PATH, state dir for FAKE_SYSTEMD_DIR)."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
    systemctl.chmod(0o755)
    state = directory / "systemd"
    state.mkdir()
    return bin_dir, state


def define_unit(state: Path, unit: str, argv: list[str], **conf: object) -> None:
    (state / f"{unit}.json").write_text(json.dumps({"exec": argv, **conf}))
