"""The etcd lease store as production etcd runs: over TLS with client certificates
(--client-cert-auth; [lease] ca_file, cert_file, key_file) and with authentication enabled
([lease] username, password_file), each against a real etcd configured as an operator would."""

from __future__ import annotations

import asyncio
import base64
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from near_failover.ha.etcd import EtcdLeaseStore
from near_failover.ha.lease import (
    LeaseConfigError,
    LeaseStoreError,
    LeaseStoreUnavailable,
    MemberRecord,
)
from near_failover.ha.stores import open_lease_store
from near_failover.inventory import Inventory, InventoryError, load_inventory
from tests.integration.etcd_server import (
    NF_ROLE,
    EtcdServer,
    TlsFiles,
    as_root,
    enable_auth,
    jwt_token_args,
    make_tls,
    running_etcd,
    write_password_file,
)
from tests.integration.localnet_harness import CLI
from tests.unit import lease_contract as contract

pytestmark = pytest.mark.integration

_accounts = itertools.count()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path_factory.mktemp("etcd-tls"), tls=tls) as server:
        yield server


def inventory(tmp_path: Path, endpoint: str, **lease: Any) -> Path:
    """A one-node inventory whose [lease] reaches etcd at `endpoint` with the given TLS settings."""
    data = {
        "validator": {"account_id": f"pool{next(_accounts)}.poolv1.near", "chain_id": "localnet"},
        "node": [{
            "name": "val-a", "host": "local", "home": str(tmp_path / "home"), "rpc": "http://127.0.0.1:3030",
            "control": "pidfile:" + str(tmp_path / "neard.pid"), "start": ["neard", "run"],
            "key_store": str(tmp_path / "validator_key.json"), "standby": "hot-swap",
        }],
        "lease": {"store": "etcd", "endpoints": [endpoint], "ttl": 4.0, "loop_wait": 0.5, "retry_timeout": 1.0,
                  **{k: str(v) for k, v in lease.items()}},
    }
    path = tmp_path / f"inventory-{next(_accounts)}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def client_files(tls: TlsFiles) -> dict[str, Path]:
    return {"ca_file": tls.ca, "cert_file": tls.client_cert, "key_file": tls.client_key}


async def test_the_lease_works_over_tls_with_a_client_certificate(etcd: EtcdServer, tls: TlsFiles, tmp_path: Path) -> None:
    assert etcd.url.startswith("https://")
    for check in (contract.only_one_of_concurrent_acquirers_wins, contract.generation_grows_across_leaders, contract.pause_flag):
        inv: Inventory = load_inventory(inventory(tmp_path, etcd.url, **client_files(tls)))  # a pool of its own
        await check(lambda inv=inv: open_lease_store(inv))


@pytest.mark.parametrize("mistake", ["no client certificate", "another CA"])
async def test_a_tls_mistake_is_named_and_reaches_no_lease(etcd: EtcdServer, tls: TlsFiles, tmp_path: Path, mistake: str) -> None:
    if mistake == "no client certificate":
        files: dict[str, Path] = {"ca_file": tls.ca}
    else:
        files = {**client_files(tls), "ca_file": make_tls(tmp_path / "other-pki").ca}
    inv = load_inventory(inventory(tmp_path, etcd.url, **files))
    async with open_lease_store(inv) as store:
        with pytest.raises(LeaseStoreUnavailable) as caught:
            await store.acquire_leader("val-a", 4)
    message = str(caught.value)
    assert etcd.url in message, message
    if mistake == "another CA":
        assert "TLS:" in message and "CERTIFICATE_VERIFY_FAILED" in message and "[lease] ca_file, cert_file, key_file" in message, message
    else:  # a TLS alert or, as often with TLS 1.3, a dropped connection: both point at the certificate
        assert "cert_file" in message, message
    # Nothing was taken: with the right files, the same pool has no leader.
    right = inv.model_copy(update={"lease": inv.lease.model_copy(update=client_files(tls))})  # type: ignore[union-attr]
    async with open_lease_store(right) as store:
        assert await store.leader() is None


def test_unusable_tls_settings_are_refused_before_any_request(etcd: EtcdServer, tls: TlsFiles, tmp_path: Path) -> None:
    plain = inventory(tmp_path, etcd.url.replace("https://", "http://"), **client_files(tls))
    with pytest.raises(InventoryError) as caught:
        load_inventory(plain)
    assert str(plain) in str(caught.value) and "use https:// endpoints" in str(caught.value)

    half = inventory(tmp_path, etcd.url, cert_file=tls.client_cert)
    with pytest.raises(InventoryError) as caught:
        load_inventory(half)
    assert "cert_file and key_file go together" in str(caught.value)

    missing = tmp_path / "no-such-client.pem"
    broken = inventory(tmp_path, etcd.url, ca_file=tls.ca, cert_file=missing, key_file=tls.client_key)
    with pytest.raises(LeaseConfigError) as caught_config:
        open_lease_store(load_inventory(broken))
    assert str(missing) in str(caught_config.value) and "cannot load the client certificate" in str(caught_config.value)

    # The commands that open the store say so and exit 2: the agent does not start, nor does
    # neard behind the boot guard.
    for command in (["agent"], ["guard"]):
        done = subprocess.run([*CLI, *command, "-c", str(broken), "--node", "val-a"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert str(missing) in " ".join(done.stderr.split()) and "Traceback" not in done.stderr, done.stderr


# --- authentication ------------------------------------------------------------------------------

USER, PASSWORD = "near-failover", "a-password-for-tests-7f3a"
TOKEN_TTL = 1  # seconds: etcd's simple tokens expire fast here, so the store must fetch new ones


@pytest.fixture(scope="module")
def etcd_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path_factory.mktemp("etcd-auth"), extra_args=("--auth-token-ttl", str(TOKEN_TTL))) as server:
        enable_auth(server, USER, PASSWORD)
        yield server


def password_file(tmp_path: Path, password: str = PASSWORD, mode: int = 0o600) -> Path:
    return write_password_file(tmp_path / f"etcd-password-{next(_accounts)}", password, mode)


async def test_the_lease_works_with_etcd_authentication_across_token_expiry(etcd_auth: EtcdServer, tmp_path: Path) -> None:
    for check in (contract.only_one_of_concurrent_acquirers_wins, contract.pause_flag):
        inv = load_inventory(inventory(tmp_path, etcd_auth.url, username=USER, password_file=password_file(tmp_path)))
        await check(lambda inv=inv: open_lease_store(inv))

    inv = load_inventory(inventory(tmp_path, etcd_auth.url, username=USER, password_file=password_file(tmp_path)))
    async with open_lease_store(inv) as store:
        lease = await store.acquire_leader("val-a", 4)
        assert lease is not None
        for _ in range(3):  # each renewal after the token expired: a new token, the same lease
            await asyncio.sleep(TOKEN_TTL + 1.5)
            assert await store.renew(lease)
        assert (await store.leader()).member == "val-a"  # type: ignore[union-attr]
        await store.release(lease)


@pytest.fixture(scope="module")
def etcd_jwt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """etcd with authentication and JWT tokens: a token carries the auth store's revision."""
    directory = tmp_path_factory.mktemp("etcd-jwt")
    with running_etcd(directory / "etcd", extra_args=jwt_token_args(directory / "jwt")) as server:
        enable_auth(server, USER, PASSWORD)
        yield server


AUTH_OLD_REVISION = "etcdserver: revision of auth store is old"


async def test_a_change_to_etcds_users_or_roles_does_not_refuse_the_leader(etcd_jwt: EtcdServer, tmp_path: Path) -> None:
    """An operator adds an unrelated user, grants a permission, changes a password: etcd then
    refuses every token issued before (400, "revision of auth store is old"). The store takes a
    new token and goes on; the leader must not read that as "the store refuses the renewal"."""
    inv = load_inventory(inventory(tmp_path, etcd_jwt.url, username=USER, password_file=password_file(tmp_path)))
    changes = [
        ("/v3/auth/user/add", {"name": "backup-operator", "password": "another-password-5d1e"}),
        ("/v3/auth/role/add", {"name": "backup"}),
        ("/v3/auth/role/grant", {"name": NF_ROLE, "perm": {"permType": "READ", "key": base64.b64encode(b"/other/").decode()}}),
        ("/v3/auth/user/changepw", {"name": "backup-operator", "password": "a-new-password-0b7c"}),
    ]
    async with open_lease_store(inv) as store, httpx.AsyncClient(base_url=etcd_jwt.url, trust_env=False) as raw:
        assert isinstance(store, EtcdLeaseStore)
        key = base64.b64encode(store.leader_key.encode()).decode()
        lease = await store.acquire_leader("val-a", 4)
        assert lease is not None
        assert await store.renew(lease)
        await store.put_member(MemberRecord(name="val-a", role="leader", healthy=True), ttl=30)
        for path, body in changes:
            # A token issued now, by the same user, is refused once the change is made: the store's is too.
            issued = (await raw.post("/v3/auth/authenticate", json={"name": USER, "password": PASSWORD})).json()["token"]
            as_root(etcd_jwt, path, body)
            old = await raw.post("/v3/kv/range", json={"key": key}, headers={"Authorization": issued})
            assert old.status_code == 400 and old.json() == {"error": AUTH_OLD_REVISION, "message": AUTH_OLD_REVISION, "code": 3}, old.text

            assert await store.renew(lease), path
            info = await store.leader()
            assert info is not None and info.member == "val-a" and info.generation == lease.generation, (path, info)
            assert [m.name for m in await store.members()] == ["val-a"]
        await store.release(lease)
        assert await store.leader() is None


async def test_a_wrong_password_is_refused_by_name_never_shown(etcd_auth: EtcdServer, tmp_path: Path) -> None:
    wrong = "not-the-password-91c2"
    inv = load_inventory(inventory(tmp_path, etcd_auth.url, username=USER, password_file=password_file(tmp_path, wrong)))
    async with open_lease_store(inv) as store:
        with pytest.raises(LeaseStoreError) as caught:
            await store.acquire_leader("val-a", 4)
    message = str(caught.value)
    assert not isinstance(caught.value, LeaseStoreUnavailable)  # a configuration error, not an outage
    assert "authentication failed" in message and repr(USER) in message and "check [lease] username and password_file" in message
    assert wrong not in message and PASSWORD not in message
    # The agent stops at once with that reason, rather than looping on a store that refuses it.
    agent = subprocess.run([*CLI, "agent", "-c", str(inv.source), "--node", "val-a"], capture_output=True, text=True, timeout=60)
    said = " ".join(agent.stderr.split())
    assert agent.returncode == 1 and "val-a: the lease store refuses this agent" in said and "authentication failed" in said, agent.stderr
    assert wrong not in agent.stderr + agent.stdout

    for mode, why in ((0o644, "readable by others"), (0o600, "cannot read it")):
        path = password_file(tmp_path, mode=mode)
        if mode == 0o600:
            path.unlink()
        broken = inventory(tmp_path, etcd_auth.url, username=USER, password_file=path)
        with pytest.raises(LeaseConfigError) as refused:
            open_lease_store(load_inventory(broken))
        assert str(path) in str(refused.value) and why in str(refused.value)
        done = subprocess.run([*CLI, "agent", "-c", str(broken), "--node", "val-a"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and why in " ".join(done.stderr.split()), done.stderr

    half = inventory(tmp_path, etcd_auth.url, username=USER)
    with pytest.raises(InventoryError) as caught_half:
        load_inventory(half)
    assert "username and password_file go together" in str(caught_half.value)
