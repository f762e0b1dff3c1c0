"""Bad input, as an attacker or a tired operator gives it, never crashes the CLI or leaks a secret.

Every command is run as a user runs it (the installed console script). Outside text (node answers,
paths, names, exception messages) is printed exactly, never read as rich markup; every input error
exits 2 with one line naming the file, field or flag and the fix; an unexpected exception prints
one line naming a 0600 crash log; no secret is echoed.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.unit.test_rpc import FakeNeardHttp

CLI = [str(Path(sys.executable).with_name("near-failover"))]
POOL = "pool.near"
MAINNET_CONFIG = "config.neard-init-mainnet.reconstructed.json"


@pytest.fixture
def state_home(tmp_path: Path) -> Path:
    """XDG_STATE_HOME of every run: crash logs land here, not in the real home."""
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def run(state_home: Path):
    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "XDG_STATE_HOME": str(state_home), **(env or {})}
        return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=environ)

    return run


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The run ended with ``code`` and exactly one line on stderr, ``error: ...``, holding each
    needle; never a traceback."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "╭" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def make_home(parent: Path, fixtures_dir: Path, name: str = "home", edit=None) -> Path:
    home = parent / name
    home.mkdir(parents=True)
    config = json.loads((fixtures_dir / MAINNET_CONFIG).read_text())
    if edit:
        edit(config)
    (home / "config.json").write_text(json.dumps(config, indent=2))
    return home


def write_inventory(path: Path, rpc: str, *, host: str = "local", extra: str = "") -> Path:
    base = path.parent
    path.write_text(
        f'[validator]\naccount_id = "{POOL}"\nchain_id = "localnet"\n\n'
        f'[journal]\npath = "{base / "journal.sqlite"}"\n\n'
        f'[[node]]\nname = "val-a"\nhost = "{host}"\nhome = "{base / "home"}"\nrpc = "{rpc}"\n'
        f'control = "pidfile:{base / "neard.pid"}"\nstart = ["true"]\n'
        f'key_store = "{base / "staged" / "validator_key.json"}"\nstandby = "hot-swap"\n' + extra
    )
    return path


def key_pair() -> tuple[bytes, bytes]:
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    return seed, private.public_key().public_bytes_raw()


def key_file(path: Path, account_id: str, seed: bytes, public: bytes) -> Path:
    path.write_text(json.dumps({
        "account_id": account_id,
        "public_key": "ed25519:" + base58.b58encode(public).decode(),
        "secret_key": "ed25519:" + base58.b58encode(seed + public).decode(),
    }))
    path.chmod(0o600)
    return path


# --- 1. outside text is printed, never read as markup ---------------------------------------------


@pytest.fixture
def hostile_node(fixtures_dir: Path) -> Iterator[FakeNeardHttp]:
    """A node whose answers carry rich markup: `[/]` in its version, or an HTML error page."""
    server = FakeNeardHttp((fixtures_dir / "rpc-error.method-not-found.reconstructed.json").read_bytes())
    yield server
    server.close()


MARKUP_PAGE = b"<html><body>[/] 502 Bad Gateway [lease] [bold]nginx</body></html>"


def serve_status_with_version(node: FakeNeardHttp, fixtures_dir: Path, version: str) -> None:
    answer = json.loads((fixtures_dir / "rpc-status-response.validator-node.current-shape.reconstructed.json").read_text())
    answer["result"]["version"]["version"] = version
    node.rpc_routes["status"] = (200, json.dumps(answer).encode())
    node.get_routes["/status"] = (200, json.dumps(answer["result"]).encode(), "application/json")


def serve_markup_page(node: FakeNeardHttp) -> None:
    node.rpc_routes["status"] = (502, MARKUP_PAGE)
    node.get_routes["/status"] = (502, MARKUP_PAGE, "text/html")


def test_a_node_version_with_markup_is_shown_in_status(run, tmp_path, fixtures_dir, hostile_node):
    make_home(tmp_path, fixtures_dir)
    serve_status_with_version(hostile_node, fixtures_dir, "2.[/]13.[bold]0")
    shown = run("status", "-c", str(write_inventory(tmp_path / "inventory.toml", hostile_node.url)))
    assert "Traceback" not in shown.stderr and "MarkupError" not in shown.stderr, shown.stderr
    assert "2.[/]13.[bold]0" in shown.stdout


@pytest.mark.parametrize("command", ["check", "switchover"])
def test_an_html_error_page_with_markup_is_shown_by_check_and_dry_run(run, tmp_path, fixtures_dir, hostile_node, command):
    home = make_home(tmp_path, fixtures_dir)
    serve_markup_page(hostile_node)
    if command == "check":
        shown = run("check", "--home", str(home), "--role", "validator", "--rpc", hostile_node.url)
    else:
        shown = run("switchover", "-c", str(write_inventory(tmp_path / "inventory.toml", hostile_node.url)), "--to", "val-a", "--dry-run")
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
    assert "[/] 502 Bad Gateway [lease] [bold]nginx" in shown.stdout


def test_markup_in_a_home_path_or_a_validator_id_is_shown(run, tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "a[/]mk[bold]x")  # "a[" holds "]mk[bold]x"
    shown = run("config", "show", "--home", str(home))
    assert shown.returncode == 0, shown.stderr
    assert str(home / "config.json") in shown.stdout
    refused = run("config", "standby", "--home", str(home), "--mode", "hot-swap", "--validator-id", "[/]pool")
    assert_one_line_error(refused, 2, "--validator-id", "'[/]pool'")


def test_lease_is_shown_in_help_and_in_messages(run, tmp_path, fixtures_dir):
    assert "[lease]" in " ".join(run("status", "--help").stdout.split())
    make_home(tmp_path, fixtures_dir)
    (tmp_path / "a-file").write_text("")
    inventory = write_inventory(tmp_path / "inventory.toml", "http://127.0.0.1:9", extra=f'\n[lease]\nstore = "sqlite"\npath = "{tmp_path / "a-file" / "lease.sqlite"}"\n')
    refused = run("switchover", "-c", str(inventory), "--to", "val-a", "--yes")
    assert_one_line_error(refused, 1, "the inventory has a [lease] but the lease store cannot be read")


# --- 2. input errors: exit 2, one line -----------------------------------------------------------


CONFIG_SHOW = ["config", "show"]
CHECK = ["check", "--role", "validator"]


@pytest.mark.parametrize(
    ("variant", "command"),
    [("SomeShards", CONFIG_SHOW), (["AllShards"], CONFIG_SHOW), (42, CONFIG_SHOW), ("SomeShards", CHECK), (42, CHECK)],
    ids=["show-unknown-name", "show-array", "show-number", "check-unknown-name", "check-number"],
)
def test_unknown_tracking_variants_are_input_errors(run, tmp_path, fixtures_dir, variant, command):
    home = make_home(tmp_path, fixtures_dir, edit=lambda cfg: cfg.update(tracked_shards_config=variant))
    assert_one_line_error(run(*command, "--home", str(home)), 2, str(home / "config.json"), "'tracked_shards_config'", "Fix that field")


@pytest.mark.parametrize(
    ("edit", "field", "command"),
    [
        (lambda cfg: cfg.update(store="x"), "'store' must be an object", CHECK),
        (lambda cfg: cfg.update(store="x"), "'store' must be an object", ["config", "standby", "--mode", "rpc"]),
        (lambda cfg: cfg["store"].update(load_mem_tries_for_tracked_shards="yes"), "'store.load_mem_tries_for_tracked_shards' must be true or false", CONFIG_SHOW),
    ],
    ids=["store-string-check", "store-string-standby", "memtries-string-show"],
)
def test_fields_of_the_wrong_type_are_input_errors(run, tmp_path, fixtures_dir, edit, field, command):
    home = make_home(tmp_path, fixtures_dir, edit=edit)
    assert_one_line_error(run(*command, "--home", str(home)), 2, str(home / "config.json"), field)


def test_json_nested_past_serde_jsons_limit_is_an_input_error(run, tmp_path, fixtures_dir):
    deep = "[" * 200_000 + "]" * 200_000
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(deep)
    assert_one_line_error(run(*CHECK, "--home", str(home)), 2, str(home / "config.json"), "at line 1, column 128: recursion limit exceeded")
    shallower = "[" * 20_000 + "]" * 20_000  # within the key file's 64 KiB cap, past serde_json's depth
    (tmp_path / "key.json").write_text('{"account_id": ' + shallower + "}")
    assert_one_line_error(run("keys", "inspect", str(tmp_path / "key.json")), 2, "recursion limit exceeded")
    (tmp_path / "inventory.toml").write_text("x = " + deep)
    assert_one_line_error(run("status", "-c", str(tmp_path / "inventory.toml")), 2, "nested too deeply")


def read_only_bind(path: Path, *command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` run in a mount namespace where ``path`` is read-only (root ignores modes)."""
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(path), *CLI, *command],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


@pytest.fixture
def can_mount(tmp_path: Path) -> None:
    probe = subprocess.run(["unshare", "-m", "mount", "--bind", str(tmp_path), str(tmp_path)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs a mount namespace (root) to make a directory read-only")


def test_a_read_only_home_or_journal_is_an_input_error(tmp_path, fixtures_dir, state_home, can_mount):
    env = {"XDG_STATE_HOME": str(state_home)}
    home = make_home(tmp_path, fixtures_dir)
    before = (home / "config.json").read_text()
    result = read_only_bind(home, "config", "promote", "--home", str(home), env=env)
    assert_one_line_error(result, 2, str(home / "config.json"), "Read-only file system", "nothing was changed", "remount")
    assert (home / "config.json").read_text() == before
    inventory = write_inventory(tmp_path / "inventory.toml", "http://127.0.0.1:9")
    result = read_only_bind(tmp_path, "history", "-c", str(inventory), env=env)
    assert_one_line_error(result, 2, str(tmp_path / "journal.sqlite"), "[journal] path")


def test_an_unknown_node_an_out_of_range_limit_and_bad_rpc_urls_are_input_errors(run, tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir)
    inventory = str(write_inventory(tmp_path / "inventory.toml", "http://127.0.0.1:9"))
    assert_one_line_error(run("keys", "stage", "-c", inventory, "--to", "nope"), 2, "no node named 'nope'", "val-a")
    assert_one_line_error(run("keys", "stage", "-c", inventory, "--to", "val-a", "--from", str(tmp_path / "none.json")), 2, "none.json: does not exist")
    assert_one_line_error(run("history", "-c", inventory, "--limit", "99999999999999999999"), 2, "--limit", "1000000", "near-failover history --help")
    for url in ("not-a-url", "http://[::1", "file://"):
        assert_one_line_error(run("check", "--home", str(home), "--role", "validator", "--rpc", url), 2, f"--rpc {url!r}", "http://127.0.0.1:3030")


CRASHING_COMMAND = """
import os
from near_failover.cli import app

@app.command("explode")
def explode() -> None:
    raise RuntimeError("unexpected state " + os.environ["STATE_TEXT"])

app()
"""


def test_an_unexpected_exception_prints_one_line_and_writes_a_private_crash_log(tmp_path):
    seed, public = key_pair()
    secret_text = base58.b58encode(seed + public).decode()
    command = [sys.executable, "-c", CRASHING_COMMAND, "explode"]
    environ = {k: v for k, v in os.environ.items() if k != "XDG_STATE_HOME"} | {"HOME": str(tmp_path / "user"), "STATE_TEXT": f"ed25519:{secret_text}"}
    for env, logs in ((environ, tmp_path / "user" / ".local" / "state" / "near-failover"),
                      (environ | {"XDG_STATE_HOME": str(tmp_path / "xdg")}, tmp_path / "xdg" / "near-failover")):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        line = assert_one_line_error(result, 1, "unexpected RuntimeError: unexpected state ed25519:<redacted>", str(logs))
        [log] = logs.glob("crash-*.log")
        assert str(log) in line and stat.S_IMODE(log.stat().st_mode) == 0o600
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "in explode" in text
        assert secret_text not in text and secret_text not in result.stderr
    (tmp_path / "a-file").write_text("")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environ | {"XDG_STATE_HOME": str(tmp_path / "a-file")})
    assert_one_line_error(result, 1, "unexpected RuntimeError", "could not be written", "XDG_STATE_HOME")


# --- 3. secrets are not echoed --------------------------------------------------------------------


def test_keys_inspect_does_not_print_a_secret_pasted_into_account_id(run, tmp_path):
    seed, public = key_pair()
    secret_text = base58.b58encode(seed + public).decode()
    # A hex seed is a valid (implicit) account id: the key is accepted and the id must not show.
    accepted = run("keys", "inspect", str(key_file(tmp_path / "hex.json", seed.hex(), seed, public)), "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert seed.hex() not in accepted.stdout and json.loads(accepted.stdout)["account_id"] == "<redacted>"
    refused = run("keys", "inspect", str(key_file(tmp_path / "b58.json", f"ed25519:{secret_text}", seed, public)))
    assert_one_line_error(refused, 2, "account_id")
    assert secret_text not in refused.stderr


def test_a_duplicate_key_error_does_not_quote_a_secret_name(run, tmp_path):
    seed, public = key_pair()
    for name in (f"ed25519:{base58.b58encode(seed + public).decode()}", base58.b58encode(seed).decode()):
        path = tmp_path / "validator_key.json"
        path.write_text(json.dumps({"account_id": POOL}).replace("}", f', "{name}": 1, "{name}": 2}}'))
        refused = run("keys", "inspect", str(path))
        assert_one_line_error(refused, 2, str(path), "duplicate key", "not shown")
        assert name.removeprefix("ed25519:") not in refused.stderr


def test_a_password_in_an_ssh_host_is_refused_without_echoing_it(run, tmp_path, fixtures_dir):
    make_home(tmp_path, fixtures_dir)
    inventory = write_inventory(tmp_path / "inventory.toml", "http://127.0.0.1:9", host="ssh://near:Hunter2Secret@10.0.0.11:22")
    refused = run("status", "-c", str(inventory))
    assert_one_line_error(refused, 2, "node[0].host", "ssh://***@10.0.0.11:22", "contains a password")
    assert "Hunter2Secret" not in refused.stderr + refused.stdout
