"""``check --control``: prove, changing nothing, that the user this tool logs in as on a node may
do everything a fence and an activation of that node do, before an outage finds out.

With ``privilege = "sudo"`` each root-only command (control/privilege.py) is asked of sudo with
``sudo -n -l <command>``, which answers from the sudoers rules without running it; a refused one is
named with the rule to add. With ``privilege = "root"`` and systemd control, the login must be
root. Either way the login user must be able to write neard's home and the key store's folder
(the key moves in and out of both), which ``test -w`` shows without writing.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from near_failover.control.privilege import SUDO, systemd_actions
from near_failover.hosts.base import Host, HostError
from near_failover.inventory import Node
from near_failover.neard.check import Finding, Severity

SUDOERS_FILE = "deploy/sudoers/near-failover"
CHECK_TIMEOUT = 15.0
# Whether $1 is writable, or, while it does not exist yet, its nearest existing parent (the fence
# and `keys stage` create a missing key store folder).
# Exits 3 when neard's unit runs a process whose /proc entries (its cwd) this login cannot read.
_PROC_READABLE = 'pid=$(systemctl show -p MainPID --value "$1") || exit 0; [ "${pid:-0}" = 0 ] || readlink "/proc/$pid/cwd" >/dev/null || exit 3'
_WRITABLE = 'd="$1"; while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done; test -w "$d"'


async def login_user(host: Host) -> tuple[str, int]:
    """The user name and uid the host's commands run as."""
    result = await host.run_checked(["sh", "-c", 'id -un; id -u'], timeout=CHECK_TIMEOUT)
    name, uid = result.stdout.split()[:2]
    return name, int(uid)


async def rights_findings(node: Node, host: Host) -> list[Finding]:
    """Every right a fence and an activation of ``node`` need that its login user lacks."""
    try:
        user, uid = await login_user(host)
        findings = await _root_findings(node, host, user, uid)
        findings += await _writable_findings(node, host, user)
        findings += await _proc_findings(node, host, user)
    except HostError as exc:
        return [Finding(Severity.ERROR, f"cannot reach {node.name} to check its rights: {exc}", "a fence acts on the node's host", "make the host reachable and run this check again")]
    return findings


async def _root_findings(node: Node, host: Host, user: str, uid: int) -> list[Finding]:
    unit = node.control_spec.unit
    if unit is None or uid == 0:
        return []  # root may do it all; pid file and command controls act as the login user
    if node.privilege == "root":
        return [Finding(
            Severity.ERROR,
            f"{node.name}: logs in as {user}, not root, with privilege = \"root\": `systemctl stop/mask {unit}` would be refused in the fence",
            "systemd lets only root stop, kill, mask and start a unit",
            f'set privilege = "sudo" in {node.name}\'s [[node]] table and install {SUDOERS_FILE} (with {user} and {unit}) in /etc/sudoers.d, or log in as root',
        )]
    return await _failing(host, [(
        [*SUDO, "-l", "systemctl", *action.argv],
        Finding(
            Severity.ERROR,
            f"{node.name}: sudo does not allow {user} to run `{action.rule()}`, needed by {action.needed_by}",
            "with privilege = \"sudo\" every root-only command runs as `sudo -n`, which fails at once without a rule",
            f"add `{user} ALL=(root) NOPASSWD: {action.rule()}` to /etc/sudoers.d/near-failover (as in {SUDOERS_FILE}), then `visudo -cf` it",
        ),
    ) for action in systemd_actions(unit)])


async def _writable_findings(node: Node, host: Host, user: str) -> list[Finding]:
    folders = {node.home: "neard's home (the key moves in and out of it)", PurePosixPath(node.key_store).parent: "the key store's folder (the fence parks the key there)"}
    return await _failing(host, [(
        ["sh", "-c", _WRITABLE, "sh", str(folder)],
        Finding(
            Severity.ERROR,
            f"{node.name}: {user} cannot write {folder}, {what}",
            "a fence that cannot move the key out of the home leaves it there for the next start",
            f"log in as the user that owns {node.home} (neard's user), or give {user} write access to {folder}",
        ),
    ) for folder, what in folders.items()])


async def _failing(host: Host, probes: list[tuple[list[str], Finding]]) -> list[Finding]:
    """The finding of each probe (an argv that changes nothing) that exits non-zero on the host."""
    return [finding for argv, finding in probes if not (await host.run(argv, timeout=CHECK_TIMEOUT)).ok]


async def _proc_findings(node: Node, host: Host, user: str) -> list[Finding]:
    """The fence proves neard gone by its /proc entries (hosts/processes.py); another user's
    are unreadable, so a neard that still runs with its port closed would go unseen."""
    unit = node.control_spec.unit
    if unit is None or (await host.run(["sh", "-c", _PROC_READABLE, "sh", unit], timeout=CHECK_TIMEOUT)).exit_code != 3:
        return []
    return [Finding(
        Severity.ERROR,
        f"{node.name}: {user} cannot read the /proc entries of {unit}'s process",
        "the fence's proof looks for any process serving the home in /proc; another user's are invisible to this login",
        f"log in as the user neard runs as (User= of {unit}), who owns its home",
    )]
