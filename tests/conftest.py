"""Shared test fixtures and the end-of-session check that no test left a process running.

The nearcore fixtures live inside the repository, so a clone anywhere has them.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "nearcore"

# Every process the tests start inherits this variable (sshd and sudo sessions aside, whose
# parents carry it), so the processes a run leaves behind are found by it at the end.
SESSION_MARK = "NEAR_FAILOVER_TEST_SESSION"
LINGER_SECONDS = 10.0


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def pytest_sessionstart(session: pytest.Session) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:  # each worker checks the processes of its own tests
        os.environ[SESSION_MARK] = uuid.uuid4().hex
    else:
        os.environ.setdefault(SESSION_MARK, uuid.uuid4().hex)


def processes_of_this_session() -> dict[int, str]:
    """Live (non-zombie) processes whose environment carries this session's mark: pid -> argv."""
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if mark not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                continue
            if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        found[int(entry)] = argv.strip()
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process a test started outlives the session (after a short grace)."""
    if SESSION_MARK not in os.environ:
        return
    deadline = time.monotonic() + LINGER_SECONDS
    left = processes_of_this_session()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_of_this_session()
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(left)} process(es) started by the tests were still running at the end (killed now):"]
    lines += [f"  pid {pid}: {argv[:300]}" for pid, argv in sorted(left.items())]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
