"""`localnet up` and `down` on a loaded machine: every start succeeds and nothing is left behind.

`up` once judged its own chain "exited at start" from an empty /proc cmdline (it reads empty for a
moment after exec, and longer on a busy machine), then failed to stop it by pid file for the same
reason, leaving it orphaned.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.localnet_harness import cli


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Two busy loops: the 2-core machine is fully loaded while the localnet starts."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def processes_under(directory: Path) -> list[str]:
    """Live processes whose command line names `directory` (the localnet's chain and nodes)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(str(directory).encode() in a for a in argv):
            found.append(f"{entry}: {b' '.join(argv).decode(errors='replace')}")
    return found


def up_down_cycles(tmp_path: Path, cycles: int) -> None:
    directory = tmp_path / "net"
    for cycle in range(cycles):
        up = cli("localnet", "up", "--dir", directory, "--block-time", "0.2", "--memtrie-load", "0.2", "--reset", check=False)
        left = processes_under(directory) if up.returncode else []
        assert up.returncode == 0, f"cycle {cycle}: localnet up failed:\n{up.stdout}{up.stderr}\nleft running: {left}"
        cli("localnet", "down", "--dir", directory)
        assert processes_under(directory) == [], f"cycle {cycle}: processes left after down"


def test_up_and_down_on_a_loaded_machine(tmp_path: Path, busy_cores: None) -> None:
    up_down_cycles(tmp_path, 3)


@pytest.mark.long
def test_fifty_up_and_down_cycles_on_a_loaded_machine(tmp_path: Path, busy_cores: None) -> None:
    up_down_cycles(tmp_path, 50)


def test_a_failed_up_leaves_no_process(tmp_path: Path) -> None:
    """`up` that gives up (here: the chain cannot answer within --timeout) stops what it started."""
    directory = tmp_path / "net"
    up = cli("localnet", "up", "--dir", directory, "--timeout", "0.001", check=False)
    assert up.returncode == 1 and "did not answer within" in up.stderr, up.stderr
    assert processes_under(directory) == []
