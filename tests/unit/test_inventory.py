"""The inventory: what it accepts, how it resolves paths, and that every error names file and key."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from near_failover.inventory import (
    InventoryError,
    UnknownNode,
    load_inventory,
    parse_host,
)

HEADER = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"
"""

NODE_A = """
[[node]]
name = "val-a"
host = "local"
home = "val-a"
rpc = "http://127.0.0.1:3030"
control = "pidfile:val-a/neard.pid"
start = ["near-failover", "localnet", "node", "--home", "val-a"]
key_store = "keys/val-a/validator_key.json"
standby = "hot-swap"
priority = 100
"""

NODE_B = """
[[node]]
name = "val-b"
host = "ssh://near@10.0.0.12"
home = "/home/near/.near"
rpc = "http://10.0.0.12:3030"
control = "systemd:neard.service"
key_store = "/etc/near-failover/validator_key.json"
standby = "rpc"
priority = 50
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    message = str(err.value)
    assert str(path) in message, f"the error does not name the file: {message}"
    return message


def test_loads_the_agreed_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths follow the file, not the working folder
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inventory = load_inventory(write(tmp_path, HEADER + '[journal]\npath = "~/j.sqlite"\n' + NODE_A + NODE_B))
    assert inventory.validator.account_id == "pool.poolv1.near"
    assert inventory.journal.path == tmp_path / "home" / "j.sqlite"
    assert inventory.source == tmp_path / "inventory.toml"
    a, b = inventory.node("val-a"), inventory.node("val-b")
    assert a.home == PurePosixPath(tmp_path / "val-a")
    assert a.key_store == PurePosixPath(tmp_path / "keys/val-a/validator_key.json")
    assert a.control == f"pidfile:{tmp_path / 'val-a' / 'neard.pid'}"
    assert a.control_spec.kind == "pidfile" and a.control_spec.pidfile == PurePosixPath(tmp_path / "val-a/neard.pid")
    assert a.start == ["near-failover", "localnet", "node", "--home", "val-a"]  # argv is not rewritten
    assert a.validator_key_path == PurePosixPath(tmp_path / "val-a" / "validator_key.json")
    assert a.log_path == PurePosixPath(tmp_path / "val-a" / "neard.log")
    assert not a.is_remote and b.is_remote
    assert b.host_spec.user == "near" and b.host_spec.hostname == "10.0.0.12" and b.host_spec.port == 22
    assert b.control_spec.unit == "neard.service"
    assert [n.name for n in inventory.by_priority()] == ["val-a", "val-b"]
    assert inventory.lease is None


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    inventory = load_inventory(write(tmp_path, HEADER + NODE_B))
    assert inventory.journal.path == tmp_path / "h" / ".local/state/near-failover/journal.sqlite"
    assert inventory.ssh.known_hosts == tmp_path / "h" / ".ssh/known_hosts"
    assert inventory.ssh_for(inventory.nodes[0]) is inventory.ssh


def test_ssh_settings_per_file_and_per_node(tmp_path: Path) -> None:
    text = (
        HEADER
        + '[ssh]\nknown_hosts = "ssh/known_hosts"\nidentity = ["ssh/id_ed25519"]\nconnect_timeout = 3\n'
        + NODE_B
        + '[node.ssh]\nknown_hosts = "/etc/ssh/ssh_known_hosts"\n'
    )
    inventory = load_inventory(write(tmp_path, text))
    assert inventory.ssh.known_hosts == tmp_path / "ssh/known_hosts"
    assert inventory.ssh.identity == [tmp_path / "ssh/id_ed25519"]
    node = inventory.nodes[0]
    assert inventory.ssh_for(node).known_hosts == Path("/etc/ssh/ssh_known_hosts")


@pytest.mark.parametrize(
    ("value", "user", "hostname", "port"),
    [
        ("ssh://near@10.0.0.12:2222", "near", "10.0.0.12", 2222),
        ("ssh://host.example", None, "host.example", 22),
        ("ssh://u@[::1]:22", "u", "::1", 22),
    ],
)
def test_parse_host(value: str, user: str | None, hostname: str, port: int) -> None:
    spec = parse_host(value)
    assert (spec.kind, spec.user, spec.hostname, spec.port) == ("ssh", user, hostname, port)
    assert parse_host(str(spec)) == spec


@pytest.mark.parametrize(
    "bad",
    ["ssh://", "ssh://h:0", "ssh://h:99999", "ssh://h:port", "http://h", "h:22", "ssh://h/path", "ssh://u:pw@h", "LOCAL"],
)
def test_bad_host_urls(tmp_path: Path, bad: str) -> None:
    message = error_of(tmp_path, HEADER + NODE_B.replace('"ssh://near@10.0.0.12"', f'"{bad}"'))
    assert 'node[0].host (node "val-b")' in message
    assert 'expected "local" or "ssh://[user@]host[:port]"' in message or "password" in message


def test_bad_control(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_A + NODE_B.replace("systemd:neard.service", "sysv:neard"))
    assert 'node[1].control (node "val-b")' in message
    assert 'expected "systemd:<unit>", "pidfile:<path>" or "command", got \'sysv:neard\'' in message
    for empty in ("systemd:", "pidfile:"):
        assert "node[0].control" in error_of(tmp_path, HEADER + NODE_B.replace("systemd:neard.service", empty))


def test_duplicate_node_names(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_A + NODE_B.replace('"val-b"', '"val-a"'))
    assert "node[1].name: duplicate node name 'val-a' (also node[0])" in message


def test_unknown_standby_mode(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_B.replace('standby = "rpc"', 'standby = "hotswap"'))
    assert 'node[0].standby (node "val-b")' in message and "'hot-swap' or 'rpc'" in message and "hotswap" in message


def test_pidfile_control_needs_start(tmp_path: Path) -> None:
    text = HEADER + NODE_A.replace('start = ["near-failover", "localnet", "node", "--home", "val-a"]\n', "")
    message = error_of(tmp_path, text)
    assert 'node[0] (node "val-a")' in message and "needs start = [argv" in message


def test_command_control_needs_its_commands(tmp_path: Path) -> None:
    base = NODE_B.replace('"systemd:neard.service"', '"command"')
    message = error_of(tmp_path, HEADER + base)
    assert "node[0]" in message and "missing: start, stop, is_active" in message
    hot = base.replace('standby = "rpc"', 'standby = "hot-swap"')
    message = error_of(tmp_path, HEADER + hot + '[node.commands]\nstart = "a"\nstop = "b"\nis_active = "c"\n')
    assert "missing: reload" in message
    ok = load_inventory(write(tmp_path, HEADER + base + '[node.commands]\nstart = "docker start \'my neard\'"\nstop = ["x"]\nis_active = "c"\n'))
    assert ok.nodes[0].commands is not None and ok.nodes[0].commands.start == ["docker", "start", "my neard"]
    message = error_of(tmp_path, HEADER + NODE_B + '[node.commands]\nstart = "a"\n')
    assert 'only with control = "command"' in message
    message = error_of(tmp_path, HEADER + base + '[node.commands]\nstart = "a \'b"\nstop = "b"\nis_active = "c"\n')
    assert "node[0].commands.start" in message and "cannot split" in message


def test_missing_and_unknown_keys(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_B.replace('rpc = "http://10.0.0.12:3030"\n', "") + "\n")
    assert 'node[0].rpc (node "val-b"): missing' in message
    message = error_of(tmp_path, HEADER + NODE_B.replace("priority = 50", "priorty = 50"))
    assert 'node[0].priorty (node "val-b"): unknown key' in message
    message = error_of(tmp_path, NODE_B)
    assert "validator: missing" in message
    message = error_of(tmp_path, HEADER)
    assert "node: missing" in message
    message = error_of(tmp_path, "node = []\n" + HEADER)
    assert "at least one [[node]]" in message


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = HEADER.replace("pool.poolv1.near", "Pool") + NODE_B.replace("rpc = ", "rpc = 'x' #").replace('"rpc"', '"warm"')
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert len(err.value.problems) == 3
    assert any("validator.account_id" in p and "not a NEAR account id" in p for p in err.value.problems)
    assert any("node[0].rpc" in p for p in err.value.problems)
    assert any("node[0].standby" in p for p in err.value.problems)


def test_bad_rpc_url(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_B.replace("http://10.0.0.12:3030", "10.0.0.12:3030"))
    assert 'node[0].rpc (node "val-b"): expected neard\'s RPC URL' in message


def test_ssh_node_paths_must_be_absolute(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_B.replace('"/home/near/.near"', '"~/.near"'))
    assert "node[0].home" in message and "absolute path on the SSH host" in message


def test_key_store_must_be_outside_home(tmp_path: Path) -> None:
    text = HEADER + NODE_B.replace("/etc/near-failover/validator_key.json", "/home/near/.near/staged/key.json")
    message = error_of(tmp_path, text)
    assert "must be outside neard's home" in message


def test_lease_settings(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_B + '[lease]\nstore = "etcd"\n')
    assert "lease" in message and "needs endpoints" in message
    message = error_of(tmp_path, HEADER + NODE_B + '[lease]\nstore = "zookeeper"\n')
    assert "lease.store" in message
    message = error_of(tmp_path, HEADER + NODE_B + '[lease]\nstore = "etcd"\nendpoints = ["https://nf:hunter2@10.0.0.21:2379"]\n')
    assert "no credentials in etcd URLs; use username and password_file" in message and "hunter2" not in message
    inventory = load_inventory(write(tmp_path, HEADER + NODE_B + '[lease]\nstore = "sqlite"\npath = "lease.sqlite"\nttl = 8\n'))
    assert inventory.lease is not None and inventory.lease.path == tmp_path / "lease.sqlite"


def test_automatic_rejoin_settings(tmp_path: Path) -> None:
    lease = '[lease]\nstore = "sqlite"\n'
    inventory = load_inventory(write(tmp_path, HEADER + NODE_B + lease))
    assert inventory.lease is not None
    assert (inventory.lease.auto_rejoin, inventory.lease.rejoin_settle, inventory.lease.max_self_fences) == (True, 60.0, 2)
    inventory = load_inventory(write(tmp_path, HEADER + NODE_B + lease + "auto_rejoin = false\nrejoin_settle = 5\n"))
    assert inventory.lease is not None and not inventory.lease.auto_rejoin and inventory.lease.rejoin_settle == 5
    message = error_of(tmp_path, HEADER + NODE_B + lease + "max_self_fences = 0\n")
    assert "lease.max_self_fences" in message
    message = error_of(tmp_path, HEADER + NODE_B + lease + "rejoin_settle = 600\nself_fence_window = 300\n")
    assert "self_fence_window = 300 must exceed rejoin_settle = 600" in message


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + "[[node]\nname = 'x'\n")
    assert "not valid TOML" in message and "line" in message
    with pytest.raises(InventoryError) as err:
        load_inventory(tmp_path / "absent.toml")
    assert "absent.toml" in str(err.value) and "not found" in str(err.value)
    message = error_of(tmp_path, HEADER + "[node]\nname = 'x'\n")
    assert "expected [[node]] tables" in message


def test_unknown_node_lists_the_known_names(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, HEADER + NODE_A + NODE_B))
    with pytest.raises(UnknownNode) as err:
        inventory.node("val-z")
    assert "'val-z'" in str(err.value) and "known nodes: val-a, val-b" in str(err.value)
    assert "inventory.toml" in str(err.value)


def test_bad_node_name(tmp_path: Path) -> None:
    message = error_of(tmp_path, HEADER + NODE_B.replace('"val-b"', '"val b; rm"'))
    assert "node[0].name" in message and "expected a node name" in message


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("rpc", "http://admin:PW-s3cret@10.0.0.12:3030", "credentials"),
        ("rpc", "ftp://10.0.0.12:3030", "scheme must be http or https"),
        ("rpc", "http://10.0.0.12:99999", "port"),
        ("api", "http://admin:PW-s3cret@10.0.0.12:8008", "credentials"),
        ("api", "garbage", "scheme must be http or https"),
        ("api", "ftp://10.0.0.12:8008", "scheme must be http or https"),
        ("api", "http://:8008", "no host"),
    ],
)
def test_rpc_and_api_urls_are_checked_and_shown_redacted(tmp_path: Path, field: str, value: str, why: str) -> None:
    node = NODE_B.replace('rpc = "http://10.0.0.12:3030"', f'rpc = "{value}"') if field == "rpc" else NODE_B + f'api = "{value}"\n'
    message = error_of(tmp_path, HEADER + node)
    assert f'node[0].{field} (node "val-b")' in message and why in message
    assert "PW-s3cret" not in message and "admin" not in message


def test_urls_without_port_are_accepted(tmp_path: Path) -> None:
    node = NODE_B.replace('rpc = "http://10.0.0.12:3030"', 'rpc = "https://rpc.example.org/"') + 'api = "http://10.0.0.12"\n'
    spec = load_inventory(write(tmp_path, HEADER + node)).node("val-b")
    assert (spec.rpc, spec.api) == ("https://rpc.example.org", "http://10.0.0.12")


def test_neard_rpc_refuses_credentials_redacted() -> None:
    from near_failover.neard.rpc import NeardRpc

    with pytest.raises(ValueError, match="credentials") as err:
        NeardRpc("http://admin:PW-s3cret@127.0.0.1:3030", "val-a")
    assert "PW-s3cret" not in str(err.value)


def _two_local_nodes(tmp_path: Path, key_store_b: str, home_b: str = "val-b") -> str:
    (tmp_path / "val-a").mkdir(exist_ok=True)
    node_b = NODE_A.replace('"val-a"', '"val-b"').replace("val-a/", "val-b/").replace('home = "val-b"', f'home = "{home_b}"')
    node_b = node_b.replace('key_store = "keys/val-b/validator_key.json"', f'key_store = "{key_store_b}"')
    return HEADER + NODE_A + node_b


def test_a_key_store_symlinked_into_its_own_home_is_refused(tmp_path: Path) -> None:
    (tmp_path / "val-b").mkdir()
    (tmp_path / "staged").symlink_to(tmp_path / "val-b")
    message = error_of(tmp_path, _two_local_nodes(tmp_path, "staged/validator_key.json"))
    assert f"node val-b: key_store resolves to {tmp_path / 'val-b' / 'validator_key.json'}, inside its own home" in message


def test_a_key_store_inside_another_nodes_home_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, _two_local_nodes(tmp_path, "val-a/keys/validator_key.json"))
    assert "node val-b: key_store resolves to" in message and "inside node val-a's home" in message


def test_two_local_nodes_sharing_a_home_through_a_symlink_are_refused(tmp_path: Path) -> None:
    (tmp_path / "val-a").mkdir()
    (tmp_path / "other-name").symlink_to(tmp_path / "val-a")
    message = error_of(tmp_path, _two_local_nodes(tmp_path, "keys/val-b/validator_key.json", home_b="other-name"))
    assert f"nodes val-a and val-b share the home {tmp_path / 'val-a'} on local" in message


def test_ssh_nodes_on_one_machine_sharing_a_home_are_refused_at_load(tmp_path: Path) -> None:
    other = NODE_B.replace('"val-b"', '"val-c"').replace('host = "ssh://near@10.0.0.12"', 'host = "ssh://admin@10.0.0.12:22"')
    other = other.replace("/etc/near-failover/validator_key.json", "/etc/near-failover/c/validator_key.json")
    message = error_of(tmp_path, HEADER + NODE_B + other)
    assert "nodes val-b and val-c share the home /home/near/.near on 10.0.0.12:22" in message
    # The same paths on two machines are fine.
    load_inventory(write(tmp_path, HEADER + NODE_B + other.replace("10.0.0.12", "10.0.0.13")))


def test_privilege_defaults_to_root_and_sudo_is_for_systemd_control(tmp_path: Path) -> None:
    """privilege = "sudo" runs systemctl through sudo -n; a pid file's or commands' control has no
    root-only step to route, so asking for sudo there is a mistake named at load."""
    inventory = load_inventory(write(tmp_path, HEADER + NODE_A + NODE_B.replace('standby = "rpc"', 'standby = "rpc"\nprivilege = "sudo"')))
    assert [n.privilege for n in inventory.nodes] == ["root", "sudo"]
    message = error_of(tmp_path, HEADER + NODE_A.replace('standby = "hot-swap"', 'standby = "hot-swap"\nprivilege = "sudo"'))
    assert 'node[0] (node "val-a")' in message and 'privilege = "sudo" is for control = "systemd:<unit>"' in message
    message = error_of(tmp_path, HEADER + NODE_B.replace('standby = "rpc"', 'standby = "rpc"\nprivilege = "doas"'))
    assert "node[0].privilege" in message and "'root' or 'sudo'" in message


def test_root_only_systemctl_verbs_are_the_sudoers_rules() -> None:
    from near_failover.control.privilege import needs_root, systemd_actions

    actions = systemd_actions("neard.service")
    assert all(needs_root(a.argv) for a in actions)
    assert not needs_root(("show", "-p", "MainPID", "--value", "neard.service")) and not needs_root(("is-active", "--quiet", "neard.service"))
    assert "/usr/bin/systemctl stop --no-block neard.service" in [a.rule() for a in actions]
