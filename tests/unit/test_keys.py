"""neard/keys.py against the genuine key fixtures: parsing, rejections without leaks, writing, modes."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import stat
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import base58
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from near_failover.neard.keys import (
    BASE58_ALPHABET,
    KeyFile,
    KeyFileError,
    load_key_file,
    parse_key_file,
    permission_problems,
    public_key_of,
    write_key_file,
)

CORE_CRYPTO = "key-file.example.core-crypto-test.json"
GENUINE = {
    CORE_CRYPTO: "example",
    "key-file.loadtester.pytest-mocknet.json": "loadtester",
    "key-file.reporter.test.near.bounty-localnet.json": "reporter.test.near",
    "node-key.reconstructed.json": "node",
}
SOURCE = "/home/near/.near/validator_key.json"


def fixture_json(fixtures_dir: Path, name: str = CORE_CRYPTO) -> dict:
    return json.loads((fixtures_dir / name).read_text(encoding="utf-8"))


def secret_data(doc: dict) -> str:
    """The base58 part of the secret in a key-file document."""
    return (doc.get("secret_key") or doc["private_key"]).partition(":")[2]


def leaked_fragments(text: str, secret_b58: str) -> list[str]:
    """Every fragment of 8+ characters of the secret that appears in `text`."""
    return [secret_b58[i : i + 8] for i in range(len(secret_b58) - 7) if secret_b58[i : i + 8] in text]


def assert_no_secret(exc: BaseException, secret_b58: str) -> None:
    rendered = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for text in rendered:
        assert secret_b58 not in text
        assert leaked_fragments(text, secret_b58) == [], text
    assert exc.__cause__ is None and exc.__context__ is None


@contextmanager
def rejected(secret_b58: str, *fragments: str) -> Iterator[None]:
    """Expect a KeyFileError naming SOURCE and containing `fragments`, and never the secret."""
    with pytest.raises(KeyFileError) as info:
        yield
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: "), message
    for fragment in fragments:
        assert fragment in message, message
    assert info.value.source == SOURCE
    assert_no_secret(info.value, secret_b58)


def text_of(doc: dict) -> str:
    return json.dumps(doc, indent=2)


# ----------------------------------------------------------------------------- accepted files


@pytest.mark.parametrize(("name", "account_id"), sorted(GENUINE.items()))
def test_genuine_key_files_are_accepted(fixtures_dir: Path, name: str, account_id: str) -> None:
    doc = fixture_json(fixtures_dir, name)
    key = load_key_file(fixtures_dir / name)
    assert key.account_id == account_id
    assert key.public_key == doc["public_key"]
    assert key.secret_key_text() == doc["secret_key"]
    assert key.public_key_bytes() == base58.b58decode(doc["public_key"].partition(":")[2])
    secret = base58.b58decode(secret_data(doc))
    assert Ed25519PrivateKey.from_private_bytes(secret[:32]).public_key().public_bytes_raw() == key.public_key_bytes()


def test_write_reproduces_neards_exact_format(fixtures_dir: Path, tmp_path: Path) -> None:
    original = (fixtures_dir / CORE_CRYPTO).read_bytes()
    key = parse_key_file(original.decode("utf-8"), CORE_CRYPTO)
    assert key.to_json_text().encode("utf-8") == original
    target = tmp_path / "validator_key.json"
    write_key_file(target, key)
    assert target.read_bytes() == original
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["validator_key.json"]


def test_four_space_files_are_rewritten_in_neards_format(fixtures_dir: Path, tmp_path: Path) -> None:
    name = "key-file.loadtester.pytest-mocknet.json"
    key = load_key_file(fixtures_dir / name)
    write_key_file(tmp_path / "k.json", key)
    text = (tmp_path / "k.json").read_text(encoding="utf-8")
    assert text == json.dumps(fixture_json(fixtures_dir, name), indent=2)
    assert load_key_file(tmp_path / "k.json") == key


def test_write_is_0600_even_with_an_open_umask_and_over_a_readable_file(fixtures_dir: Path, tmp_path: Path) -> None:
    key = load_key_file(fixtures_dir / CORE_CRYPTO)
    target = tmp_path / "validator_key.json"
    target.write_text("old", encoding="utf-8")
    os.chmod(target, 0o644)
    previous = os.umask(0)
    try:
        write_key_file(target, key)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert load_key_file(target) == key


def test_write_into_a_missing_directory_names_the_file(fixtures_dir: Path, tmp_path: Path) -> None:
    key = load_key_file(fixtures_dir / CORE_CRYPTO)
    with pytest.raises(KeyFileError) as info:
        write_key_file(tmp_path / "nope" / "validator_key.json", key)
    assert str(tmp_path / "nope" / "validator_key.json") in str(info.value)
    assert_no_secret(info.value, secret_data(fixture_json(fixtures_dir)))


def test_private_key_alias_prefix_case_and_comments(fixtures_dir: Path) -> None:
    doc = fixture_json(fixtures_dir)
    expected = parse_key_file(text_of(doc), SOURCE)
    alias = {"account_id": doc["account_id"], "public_key": doc["public_key"], "private_key": doc["secret_key"]}
    assert parse_key_file(text_of(alias), SOURCE) == expected
    bare = dict(doc, public_key=doc["public_key"].upper()[:8] + doc["public_key"][8:], secret_key=secret_data(doc))
    assert bare["public_key"].startswith("ED25519:")
    assert parse_key_file(text_of(bare), SOURCE) == expected  # normalised back to "ed25519:"
    commented = "// staged by near-failover\n" + text_of(doc).replace("{", "{ /* key */", 1)
    assert parse_key_file(commented, SOURCE) == expected
    assert parse_key_file(text_of(dict(doc, extra_field=1)), SOURCE) == expected  # serde ignores unknown fields


# ----------------------------------------------------------------------------- rejections


def test_public_key_of_another_key_is_rejected(fixtures_dir: Path) -> None:
    doc = fixture_json(fixtures_dir)
    other = fixture_json(fixtures_dir, "key-file.loadtester.pytest-mocknet.json")
    with rejected(secret_data(doc), "public key does not correspond to secret key"):
        parse_key_file(text_of(dict(doc, public_key=other["public_key"])), SOURCE)


@pytest.mark.parametrize("cut", [3, 10, 40])
def test_truncated_secret_is_rejected(fixtures_dir: Path, cut: int) -> None:
    doc = fixture_json(fixtures_dir)
    truncated = doc["secret_key"][:-cut]
    with rejected(secret_data(doc), "secret_key decodes to", "expected 64 (truncated?)"):
        parse_key_file(text_of(dict(doc, secret_key=truncated)), SOURCE)


def test_secret_short_by_one_character_still_fails_the_public_key_check(fixtures_dir: Path) -> None:
    # 87 and 88 base58 characters can both hold 64 bytes, so the cut shows up as a key mismatch.
    doc = fixture_json(fixtures_dir)
    with rejected(secret_data(doc), "public key does not correspond to secret key"):
        parse_key_file(text_of(dict(doc, secret_key=doc["secret_key"][:-1])), SOURCE)


@pytest.mark.parametrize("bad_char", ["0", "O", "I", "l", " ", "+", "é"])
def test_character_outside_base58_is_rejected_without_quoting_it(fixtures_dir: Path, bad_char: str) -> None:
    doc = fixture_json(fixtures_dir)
    data = secret_data(doc)
    damaged = "ed25519:" + data[:30] + bad_char + data[31:]
    with rejected(data, "secret_key contains a character outside the base58 alphabet at position 31"):
        parse_key_file(text_of(dict(doc, secret_key=damaged)), SOURCE)


def test_bad_public_key_character_is_named(fixtures_dir: Path) -> None:
    doc = fixture_json(fixtures_dir)
    with rejected(secret_data(doc), "public_key contains the character '0'"):
        parse_key_file(text_of(dict(doc, public_key=doc["public_key"][:-1] + "0")), SOURCE)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda text: text[:-1],  # closing brace lost
        lambda text: text.replace('",', '"', 1),  # missing comma
        lambda text: text.replace('"secret_key": "', '"secret_key": ', 1),  # unquoted secret
        lambda text: "",
        lambda text: text + "\n{}",
    ],
)
def test_invalid_json_is_rejected_without_echoing_the_text(fixtures_dir: Path, mangle) -> None:
    doc = fixture_json(fixtures_dir)
    with rejected(secret_data(doc), "is not valid JSON"):
        parse_key_file(mangle(text_of(doc)), SOURCE)


@pytest.mark.parametrize("field", ["account_id", "public_key", "secret_key"])
def test_missing_field_is_rejected(fixtures_dir: Path, field: str) -> None:
    doc = fixture_json(fixtures_dir)
    del doc[field]
    with rejected(secret_data(fixture_json(fixtures_dir)), f"missing field `{field}`"):
        parse_key_file(text_of(doc), SOURCE)


def test_both_secret_key_and_private_key_is_rejected(fixtures_dir: Path) -> None:
    doc = fixture_json(fixtures_dir)
    with rejected(secret_data(doc), "has both secret_key and private_key"):
        parse_key_file(text_of(dict(doc, private_key=doc["secret_key"])), SOURCE)


def test_secret_whose_seed_does_not_give_its_public_half_is_rejected(fixtures_dir: Path) -> None:
    # Last 32 bytes equal public_key (neard's only check) but the seed belongs to another key.
    doc = fixture_json(fixtures_dir)
    public = base58.b58decode(doc["public_key"].partition(":")[2])
    forged = Ed25519PrivateKey.generate().private_bytes_raw() + public
    forged_b58 = base58.b58encode(forged).decode()
    with rejected(forged_b58, "secret_key is corrupt", "seed"):
        parse_key_file(text_of(dict(doc, secret_key="ed25519:" + forged_b58)), SOURCE)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"public_key": "ed25519:" + base58.b58encode(bytes(31)).decode()}, "public_key decodes to 31 bytes"),
        ({"secret_key": "secp256k1:abc"}, "key type secp256k1"),
        ({"secret_key": "Zm9vYmFy:abc"}, "key type (unrecognised)"),
        ({"secret_key": 42}, "secret_key must be a string"),
        ({"account_id": "Not An Account"}, "account_id"),
        ({"account_id": ""}, "account_id"),
        ({"account_id": None}, "account_id must be a string"),
    ],
)
def test_other_malformed_fields_are_rejected(fixtures_dir: Path, change: dict, fragment: str) -> None:
    doc = fixture_json(fixtures_dir)
    with rejected(secret_data(doc), fragment):
        parse_key_file(text_of(dict(doc, **change)), SOURCE)


def test_several_problems_are_reported_together(fixtures_dir: Path) -> None:
    doc = fixture_json(fixtures_dir)
    with rejected(secret_data(doc), "account_id", "public_key decodes to", "secret_key decodes to"):
        parse_key_file(text_of(dict(doc, account_id="X", public_key="ed25519:abc", secret_key=doc["secret_key"][:-5])), SOURCE)


def test_top_level_must_be_an_object(fixtures_dir: Path) -> None:
    doc = fixture_json(fixtures_dir)
    with rejected(secret_data(doc), "must be a JSON object"):
        parse_key_file(json.dumps([doc["secret_key"]]), SOURCE)


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=f"^{tmp_path / 'missing.json'}: does not exist$"):
        load_key_file(tmp_path / "missing.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe")
    with pytest.raises(KeyFileError, match="is not UTF-8"):
        load_key_file(tmp_path / "binary.json")
    with pytest.raises(KeyFileError, match="is a directory"):
        load_key_file(tmp_path)


SECRET_PROPERTY_SETTINGS = settings(max_examples=120, deadline=None)


@SECRET_PROPERTY_SETTINGS
@given(st.binary(min_size=32, max_size=32), st.integers(0, 10**6), st.sampled_from(BASE58_ALPHABET + "0OIl/+=_-"))
def test_any_single_character_change_to_the_secret_is_rejected_without_leaking(
    seed: bytes, where: int, replacement: str
) -> None:
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes_raw()
    secret_b58 = base58.b58encode(seed + public).decode()
    position = where % len(secret_b58)
    assume(replacement != secret_b58[position])
    damaged = secret_b58[:position] + replacement + secret_b58[position + 1 :]
    doc = {
        "account_id": "pool.poolv1.near",
        "public_key": "ed25519:" + base58.b58encode(public).decode(),
        "secret_key": "ed25519:" + damaged,
    }
    with pytest.raises(KeyFileError) as info:
        parse_key_file(text_of(doc), "validator_key.json")
    assert_no_secret(info.value, secret_b58)
    assert_no_secret(info.value, damaged)


# ----------------------------------------------------------------------------- the secret stays in


def test_repr_str_and_introspection_do_not_show_the_secret(fixtures_dir: Path) -> None:
    key = load_key_file(fixtures_dir / CORE_CRYPTO)
    secret_b58 = secret_data(fixture_json(fixtures_dir))
    shown = [repr(key), str(key), f"{key}", f"{key!r}", repr(dataclasses.asdict(key)), repr(vars(key))]
    for text in shown:
        assert leaked_fragments(text, secret_b58) == [], text
    assert "account_id='example'" in repr(key) and "ed25519:6DSjZ8mv" in repr(key)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


def test_sign_produces_signatures_that_verify_with_the_public_key(fixtures_dir: Path) -> None:
    key = load_key_file(fixtures_dir / CORE_CRYPTO)
    signature = key.sign(b"block 1234")
    verifier = Ed25519PublicKey.from_public_bytes(key.public_key_bytes())
    verifier.verify(signature, b"block 1234")
    with pytest.raises(InvalidSignature):
        verifier.verify(signature, b"block 1235")


def test_generate_makes_distinct_valid_key_files() -> None:
    first, second = KeyFile.generate("pool.poolv1.near"), KeyFile.generate("pool.poolv1.near")
    assert first != second and first.public_key != second.public_key
    assert parse_key_file(first.to_json_text(), "generated") == first
    Ed25519PublicKey.from_public_bytes(first.public_key_bytes()).verify(first.sign(b"x"), b"x")
    with pytest.raises(ValueError, match="account id"):
        KeyFile.generate("Bad Id")


# ----------------------------------------------------------------------------- helpers


def test_public_key_of(fixtures_dir: Path) -> None:
    doc = fixture_json(fixtures_dir)
    raw = base58.b58decode(doc["public_key"].partition(":")[2])
    assert public_key_of(doc["public_key"]) == raw
    assert public_key_of(doc["public_key"].partition(":")[2]) == raw
    assert public_key_of("ED25519:" + doc["public_key"].partition(":")[2]) == raw
    with pytest.raises(ValueError, match="decodes to 64 bytes, expected 32"):
        public_key_of(doc["secret_key"])


@pytest.mark.parametrize(
    ("mode", "fragments"),
    [
        (0o600, []),
        (0o400, []),
        (0o640, ["is readable by its group (mode 0640)"]),
        (0o620, ["is writable by its group"]),
        (0o644, ["is readable by its group (mode 0644)", "is readable by every user (mode 0644)"]),
        (0o606, ["is readable by every user", "is writable by every user"]),
        (0o700, ["is executable"]),
        (0o200, ["is not readable by its owner"]),
    ],
)
def test_permission_problems(tmp_path: Path, mode: int, fragments: list[str]) -> None:
    key_dir = tmp_path / "home"
    key_dir.mkdir(mode=0o700)
    path = key_dir / "validator_key.json"
    path.write_text("{}", encoding="utf-8")
    os.chmod(path, mode)
    problems = permission_problems(path)
    assert len(problems) == len(fragments), problems
    for problem, fragment in zip(problems, fragments):
        assert problem.startswith(str(path)) and fragment in problem
        assert f"chmod 600 {path}" in problem


def test_permission_problems_of_the_directory_and_of_missing_files(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    path = shared / "validator_key.json"
    path.write_text("{}", encoding="utf-8")
    os.chmod(path, 0o600)
    assert permission_problems(path) == [
        f"{shared} is writable by other users (mode 0777), so they can replace the key; run `chmod go-w {shared}`"
    ]
    os.chmod(shared, 0o1777)  # sticky, like /tmp: others cannot replace our file
    assert permission_problems(path) == []
    assert permission_problems(shared / "absent.json") == [f"{shared / 'absent.json'} does not exist"]
    assert permission_problems(shared) == [f"{shared} is not a regular file"]
