"""What only root may do to neard, as a fixed set of commands that a non-root login runs via sudo.

The tool logs in as neard's own user, who owns neard's home: key moves in and out of it, signals
to neard and neard's /proc entries need no privilege then. What remains is systemd's unit
management (stop, kill, mask, unmask, start, restart), which systemd allows root alone (or a
polkit rule). With ``privilege = "sudo"`` each of these runs as ``sudo -n <argv>`` with exactly the
arguments below, so a sudoers file can allow these commands and nothing else
(``deploy/sudoers/near-failover`` is this module's ``sudoers_text`` for the example inventory).
Pure: no I/O here; ``check --control`` asks ``sudo -n -l`` about each action on the node's host.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where sudo's secure_path finds systemctl on Debian 12 and later (merged /usr); sudoers rules
# name commands by absolute path.
SYSTEMCTL_PATH = "/usr/bin/systemctl"
# systemctl verbs that change the unit: these need root. `show` and `is-active` do not.
PRIVILEGED_VERBS = frozenset({"start", "stop", "restart", "kill", "mask", "unmask"})
SUDO = ("sudo", "-n")  # -n: never prompt; a missing rule fails at once instead of hanging a fence


@dataclass(frozen=True)
class PrivilegedAction:
    """One command a fence or an activation runs as root, and which step needs it."""

    needed_by: str
    argv: tuple[str, ...]  # systemctl's words after its path, as SystemdControl runs it

    def rule(self) -> str:
        """The command as a sudoers rule names it (absolute path, exact arguments)."""
        return " ".join((SYSTEMCTL_PATH, *self.argv))


def systemd_actions(unit: str) -> list[PrivilegedAction]:
    """Every root-only command SystemdControl runs on ``unit`` during a fence or an activation."""
    return [
        PrivilegedAction("the fence (stop)", ("stop", "--no-block", unit)),
        PrivilegedAction("the fence (SIGKILL past its deadline)", ("kill", "-s", "KILL", unit)),
        PrivilegedAction("the fence (mask)", ("mask", unit)),
        PrivilegedAction("a rollback (unmask)", ("unmask", unit)),
        PrivilegedAction("a rollback (start)", ("start", unit)),
        PrivilegedAction("an Option 1 activation (restart)", ("restart", unit)),
        PrivilegedAction("an Option 2 activation (SIGHUP)", ("kill", "-s", "HUP", unit)),
    ]


def needs_root(systemctl_args: tuple[str, ...] | list[str]) -> bool:
    """Whether ``systemctl <args>`` changes the unit (so a non-root login needs sudo for it)."""
    return bool(systemctl_args) and systemctl_args[0] in PRIVILEGED_VERBS


def sudoers_text(login_user: str, unit: str) -> str:
    """A sudoers file that lets ``login_user`` run exactly the actions on ``unit`` as root."""
    alias = "NEAR_FAILOVER_" + "".join(c if c.isalnum() else "_" for c in unit).upper()
    rules = ", \\\n    ".join(action.rule() for action in systemd_actions(unit))
    return (
        "# near-failover: the root-only commands a fence and an activation run on neard's unit, and\n"
        f"# nothing else, for the user near-failover logs in as ({login_user}, neard's own user).\n"
        f'# With privilege = "sudo" in the inventory; install as /etc/sudoers.d/near-failover (0440),\n'
        "# check with `visudo -cf`, then prove it with `near-failover check -c INVENTORY --node NODE --control`.\n"
        f"Cmnd_Alias {alias} = \\\n    {rules}\n"
        f"{login_user} ALL=(root) NOPASSWD: {alias}\n"
    )
