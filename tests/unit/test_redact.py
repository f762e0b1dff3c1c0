"""The one redaction rule set (near_failover.redact), property-tested: a key file's secret and its
seed never get through in base58, hex or base64, whatever surrounds them or names them; public
keys and hashes do. The example budget is fixed and derandomized, so `make test` always runs the
same examples in the same time."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import base58
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from near_failover.ha.alerts import AlertEvent, event_text, json_body
from near_failover.neard.keys import parse_key_file
from near_failover.redact import (
    REDACTED,
    is_known_secret,
    redact_log_event,
    redact_record,
    redact_text,
    redact_url,
)

BUDGET = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ENCODINGS = {
    "base58": lambda raw: base58.b58encode(raw).decode(),
    "ed25519-base58": lambda raw: "ed25519:" + base58.b58encode(raw).decode(),
    "hex": lambda raw: raw.hex(),
    "HEX": lambda raw: raw.hex().upper(),
    "base64": lambda raw: base64.b64encode(raw).decode(),
    "base64-unpadded": lambda raw: base64.b64encode(raw).decode().rstrip("="),
    "base64url": lambda raw: base64.urlsafe_b64encode(raw).decode(),
}


def key_pair(seed: bytes) -> tuple[bytes, bytes]:
    """(64-byte secret = seed + public key, 32-byte public key), as cryptography derives them."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return seed + public, public


def key_file_text(secret: bytes, public: bytes, account_id: str = "pool.near") -> str:
    return json.dumps({
        "account_id": account_id,
        "public_key": "ed25519:" + base58.b58encode(public).decode(),
        "secret_key": "ed25519:" + base58.b58encode(secret).decode(),
    })


def load_key(seed: bytes) -> tuple[bytes, bytes]:
    """A key pair whose key file this process has parsed, as any command that reads one does."""
    secret, public = key_pair(seed)
    parse_key_file(key_file_text(secret, public), "validator_key.json")
    return secret, public


def embeddings(encoded: str, before: str, after: str, field: str) -> dict[str, str]:
    """The secret text in a message, a record and URLs, each as redacted by the module."""
    record = {"evidence": [{field: encoded, "note": f"{before}{encoded}{after}"}], encoded: 1,
              "nested": {"deeper": (f"{before}{encoded}", encoded.encode())}}
    urls = [f"https://user:{encoded}@rpc.example:3030/", f"http://127.0.0.1:3030/{encoded}?key={encoded}",
            f"ssh://near:{encoded}@10.0.0.1:22", f"https://{encoded}@hooks.example/x"]
    return {
        "message": redact_text(f"{before}{encoded}{after}"),
        "record": json.dumps(redact_record(record)),
        "urls": " ".join(redact_url(url) for url in urls),
        "url-in-text": redact_text(" ".join(urls)),
    }


def assert_hidden(encoded: str, outputs: dict[str, str]) -> None:
    for where, text in outputs.items():
        assert encoded.lower() not in text.lower(), f"{encoded} got through in the {where}: {text}"


seeds = st.binary(min_size=32, max_size=32)
surroundings = st.text(max_size=12)
field_names = st.text(min_size=1, max_size=12)
encodings = st.sampled_from(sorted(ENCODINGS))


@BUDGET
@given(seed=seeds, encoding=encodings, before=surroundings, after=surroundings, field=field_names, which=st.sampled_from(["secret", "seed"]))
def test_a_loaded_keys_secret_and_seed_never_get_through(seed: bytes, encoding: str, before: str, after: str, field: str, which: str) -> None:
    secret, _ = load_key(seed)
    raw = secret if which == "secret" else seed
    encoded = ENCODINGS[encoding](raw).removeprefix("ed25519:")
    assert_hidden(encoded.rstrip("="), embeddings(ENCODINGS[encoding](raw), before, after, field))


@BUDGET
@given(seed=seeds, encoding=encodings, before=surroundings, after=surroundings, field=field_names)
def test_any_64_byte_secret_never_gets_through_even_from_an_unknown_key(seed: bytes, encoding: str, before: str, after: str, field: str) -> None:
    secret, _ = key_pair(seed)
    assume(not is_known_secret(secret))
    encoded = ENCODINGS[encoding](secret)
    assert_hidden(encoded.removeprefix("ed25519:").rstrip("="), embeddings(encoded, before, after, field))


words = st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P", "Zs"]), max_size=12)


@BUDGET
@given(seed=seeds, block_hash=st.binary(min_size=32, max_size=32), encoding=encodings, before=words, after=words)
def test_public_keys_and_hashes_pass(seed: bytes, block_hash: bytes, encoding: str, before: str, after: str) -> None:
    secret, public = load_key(seed)
    assume(not is_known_secret(block_hash))
    public_text = "ed25519:" + base58.b58encode(public).decode()
    hash_text = ENCODINGS[encoding](block_hash)
    message = f"{before} key {public_text} signed block {hash_text} {after}"
    assert public_text in redact_text(message) and hash_text in redact_text(message)
    shown = json.dumps(redact_record({"public_key": public_text, "block_hash": hash_text, "note": message}))
    assert public_text in shown and hash_text in shown
    url = f"http://127.0.0.1:3030/block/{hash_text}"
    assert redact_url(url) == url


def test_secret_fields_are_redacted_whatever_they_hold_and_paths_to_them_are_not() -> None:
    record = {"seed": "short", "Secret_Key": 42, "private_key": ["x"], "etcd_password": "pw", "secret_key_file": "/etc/k.json",
              "password_file": "/etc/pw", "seed_none": None, "height": 7, "path": Path("/x/validator_key.json")}
    assert redact_record(record) == {
        "seed": REDACTED, "Secret_Key": REDACTED, "private_key": REDACTED, "etcd_password": REDACTED,
        "secret_key_file": "/etc/k.json", "password_file": "/etc/pw", "seed_none": None, "height": 7,
        "path": "/x/validator_key.json",
    }


def test_text_after_a_secrets_name_goes_whatever_its_shape() -> None:
    assert redact_text("seed=abc123 height=5") == f"seed={REDACTED} height=5"
    assert redact_text('{"secret_key": "ed25519:tooShort"}') == '{"secret_key": "ed25519:' + REDACTED + '"}'
    assert redact_text("password: hunter2, user: near") == f"password: {REDACTED}, user: near"


def test_tokens_and_http_credentials_go_as_a_fence_commands_output_may_quote_them() -> None:
    """A STONITH command's last output line is quoted in the refusal: cloud APIs echo tokens."""
    assert redact_text("curl: 401 for Authorization: Bearer eyJhbGciOi.x-y_z") == \
        f"curl: 401 for Authorization: Bearer {REDACTED}"
    assert redact_text("auth Basic dXNlcjpwdw== refused") == f"auth Basic {REDACTED} refused"
    assert redact_text("api_token=s3cr3t region=fsn1") == f"api_token={REDACTED} region=fsn1"
    assert redact_text('{"API-Key": "abc"}') == '{"API-Key": "' + REDACTED + '"}'
    assert redact_text("token: hcloud_abc; retry") == f"token: {REDACTED}; retry"
    assert redact_record({"bot_token": "123:abc", "height": 5}) == {"bot_token": REDACTED, "height": 5}
    assert redact_text("a token was refused (expired)") == "a token was refused (expired)"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ssh://near:Hunter2@10.0.0.1:22", "ssh://***@10.0.0.1:22"),
        ("https://user:p@ss@hooks.example/path", "https://***@hooks.example/path"),
        ("https://token@hooks.example", "https://***@hooks.example"),
        ("http://127.0.0.1:3030", "http://127.0.0.1:3030"),
        ("http://[::1", "http://[::1"),
        ("not a url", "not a url"),
    ],
)
def test_url_credentials_are_replaced(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_text(f"cannot reach {url}: refused") == f"cannot reach {shown}: refused"


def test_the_journal_alerts_and_logs_share_the_rules() -> None:
    """A base58 seed under a field named ``seed`` went to alerts before: they had their own rules."""
    secret, _ = load_key(bytes(range(32)))
    seed_text = base58.b58encode(secret[:32]).decode()
    event = AlertEvent.self_fence("pool.near", "val-a", reason=f"key {seed_text} gone", details={"seed": seed_text, "note": f"x{seed_text}"})
    assert seed_text not in event_text(event) and seed_text not in json.dumps(json_body(event))
    logged = redact_log_event(None, "info", {"event": f"loaded {seed_text}", "seed": seed_text, "n": 3, "ok": True})
    assert seed_text not in json.dumps(logged) and logged["n"] == 3 and logged["ok"] is True


def test_log_lines_are_redacted_through_the_configured_processors(capsys: pytest.CaptureFixture[str]) -> None:
    secret, _ = load_key(bytes(range(1, 33)))
    secret_text = base58.b58encode(secret).decode()
    structlog.reset_defaults()
    import importlib

    import near_failover

    importlib.reload(near_failover)  # the package's structlog configuration, as every entry point has it
    log = structlog.get_logger("test")
    try:
        raise ValueError(f"bad key ed25519:{secret_text}")
    except ValueError:
        log.exception("stage failed", key=secret.hex())
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "stage failed" in text and "ValueError" in text
    assert secret_text not in text and secret.hex() not in text and REDACTED in text
