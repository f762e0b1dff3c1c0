"""Key files (`validator_key.json`, `node_key.json`) as neard reads and writes them (neard-behaviour §3).

The secret never leaves a `KeyFile` by accident: it is held in a wrapper whose repr, str and
format are redacted and which refuses to be pickled, and no error raised here quotes it (errors are
raised outside `except` blocks so that no chained exception carries the file text either).
`KeyFile.secret_key_text()` is the only way to read it.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from near_failover.limits import KEY_FILE, FileRejected, read_regular_file
from near_failover.neard import jsonc
from near_failover.neard.account import account_id_problem
from near_failover.redact import remember_secret

ED25519: Final = "ed25519"
PUBLIC_KEY_LEN: Final = 32
SECRET_KEY_LEN: Final = 64  # 32-byte seed followed by the 32-byte public key
KEY_FILE_MODE: Final = 0o600
BASE58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_SET: Final = frozenset(BASE58_ALPHABET)
# Key types neard knows (core/crypto); only ed25519 can be a validator or node key here.
_KNOWN_KEY_TYPES: Final = ("ed25519", "secp256k1", "ml-dsa-65")
_REDACTED: Final = "<redacted>"


class KeyFileError(Exception):
    """A key file neard would refuse; the message names the file and the problem, never the secret."""

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class _Secret:
    """Holds secret key text; every way of printing it prints `<redacted>`."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def reveal(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Secret):
            return NotImplemented
        return hmac.compare_digest(self._text.encode(), other._text.encode())

    def __hash__(self) -> int:
        return hash(self._text)

    def __copy__(self) -> "_Secret":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "_Secret":
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("secret key material cannot be pickled")


@dataclass(frozen=True, repr=False)
class KeyFile:
    """An ed25519 key file whose public key has been checked against its secret."""

    account_id: str
    public_key: str  # "ed25519:<base58 of 32 bytes>"
    _secret: _Secret = field(repr=False, compare=True)

    def __repr__(self) -> str:
        return f"KeyFile(account_id={self.account_id!r}, public_key={self.public_key!r}, secret_key={_REDACTED})"

    __str__ = __repr__

    def secret_key_text(self) -> str:
        """The "ed25519:<base58>" secret; call it only to hand the key to neard or to sign."""
        return self._secret.reveal()

    def public_key_bytes(self) -> bytes:
        return public_key_of(self.public_key)

    def to_json_text(self) -> str:
        """Exactly what neard's `KeyFile::write_to_file` writes: 2-space JSON, no trailing newline."""
        return jsonc.dumps(
            {"account_id": self.account_id, "public_key": self.public_key, "secret_key": self.secret_key_text()},
            indent=2,
        )

    def sign(self, message: bytes) -> bytes:
        """An ed25519 signature of `message` (64 bytes), as the validator would sign."""
        secret = base58.b58decode(self.secret_key_text().partition(":")[2])
        return Ed25519PrivateKey.from_private_bytes(secret[:32]).sign(message)

    @staticmethod
    def generate(account_id: str) -> "KeyFile":
        """A fresh key pair for `account_id` (tests, localnet, node keys)."""
        problem = _account_problem(account_id)
        if problem:
            raise ValueError(f"cannot generate a key: account id {problem}")
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes_raw()
        public = private.public_key().public_bytes_raw()
        remember_secret(seed + public)
        return KeyFile(
            account_id=account_id,
            public_key=_key_text(public),
            _secret=_Secret(_key_text(seed + public)),
        )


def _key_text(data: bytes) -> str:
    return f"{ED25519}:{base58.b58encode(data).decode('ascii')}"


def _account_problem(account_id: object) -> str | None:
    if not isinstance(account_id, str):
        return "must be a string"
    if "\n" in account_id:
        return f"{account_id!r} is not a NEAR account id"
    return account_id_problem(account_id)


def _decode_key(text: object, field_name: str, expected_len: int, secret: bool) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, problem). A problem about a secret never quotes any of it."""
    if not isinstance(text, str):
        return None, f"{field_name} must be a string like \"ed25519:<base58>\""
    key_type, sep, data = text.partition(":")
    if not sep:
        key_type, data = ED25519, text  # neard: the type prefix is optional, default ed25519
    if key_type.lower() != ED25519:
        shown = key_type if key_type.lower() in _KNOWN_KEY_TYPES or not secret else "(unrecognised)"
        return None, f"{field_name} has key type {shown}; validator and node keys must be ed25519"
    for index, char in enumerate(data):
        if char not in _BASE58_SET:
            what = "a character" if secret else f"the character {char!r}"
            return None, (
                f"{field_name} contains {what} outside the base58 alphabet at position {index + 1} of the "
                "key data (0, O, I, l, spaces and punctuation are not base58); the key was damaged when "
                "it was copied"
            )
    decoded = base58.b58decode(data) if data else b""
    if len(decoded) != expected_len:
        hint = " (truncated?)" if len(decoded) < expected_len else ""
        return None, f"{field_name} decodes to {len(decoded)} bytes, expected {expected_len}{hint}"
    return decoded, None


def public_key_of(key_text: str) -> bytes:
    """The 32 bytes of an "ed25519:<base58>" public key (prefix optional and case-insensitive)."""
    decoded, problem = _decode_key(key_text, "public key", PUBLIC_KEY_LEN, secret=False)
    if problem or decoded is None:
        raise ValueError(f"{key_text!r}: {problem}")
    return decoded


def parse_key_file(text: str, source: str) -> KeyFile:
    """Parse and check a key file the way neard loads one (neard-behaviour §3), plus the seed check.

    Accepts `private_key` as an alias of `secret_key` (not both), an optional case-insensitive
    `ed25519:` prefix, and comments. Requires a 32-byte public key equal to the last 32 bytes of the
    64-byte secret, and equal to the ed25519 public key of the secret's seed.
    """
    problem: str | None = None
    value: object = None
    try:
        value = jsonc.loads(text)
    except jsonc.JsoncError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line is not None else ""
        problem = f"is not valid JSON{where}: {exc.problem}; restore the file from your key backup"
    if problem is not None:
        raise KeyFileError(source, problem)
    if not isinstance(value, dict):
        raise KeyFileError(
            source, "must be a JSON object with account_id, public_key and secret_key; restore it from your key backup"
        )
    if "secret_key" in value and "private_key" in value:
        raise KeyFileError(
            source,
            "has both secret_key and private_key (private_key is only an alias; neard refuses the "
            "duplicate field); keep one of them",
        )
    secret_field = "private_key" if "private_key" in value else "secret_key"
    missing = [name for name in ("account_id", "public_key", secret_field) if name not in value]
    if missing:
        raise KeyFileError(
            source,
            "missing field " + ", ".join(f"`{name}`" for name in missing)
            + "; a key file has account_id, public_key and secret_key",
        )

    problems: list[str] = []
    account_id = value["account_id"]
    account_problem = _account_problem(account_id)
    if account_problem:
        problems.append(f"account_id {account_problem}")
    public, public_problem = _decode_key(value["public_key"], "public_key", PUBLIC_KEY_LEN, secret=False)
    secret, secret_problem = _decode_key(value[secret_field], secret_field, SECRET_KEY_LEN, secret=True)
    if secret is not None:
        remember_secret(secret)  # from here on, no output of this process shows it or its seed
    problems += [p for p in (public_problem, secret_problem) if p]
    if public is not None and secret is not None:
        if not hmac.compare_digest(public, secret[32:]):
            problems.append(
                "public key does not correspond to secret key in key file (neard refuses to load it); "
                "this public_key belongs to another key: restore the matching pair"
            )
        elif Ed25519PrivateKey.from_private_bytes(secret[:32]).public_key().public_bytes_raw() != public:
            problems.append(
                f"{secret_field} is corrupt: its last 32 bytes are not the ed25519 public key of its "
                "seed (first 32 bytes); neard would sign with a key that does not match public_key. "
                "Restore the key from your backup"
            )
    if problems:
        raise KeyFileError(source, "; ".join(problems))
    assert public is not None and secret is not None and isinstance(account_id, str)
    return KeyFile(account_id=account_id, public_key=_key_text(public), _secret=_Secret(_key_text(secret)))


def load_key_file(path: Path) -> KeyFile:
    """Read and parse a key file; every failure is a KeyFileError naming `path`."""
    path = Path(path)
    problem: str | None = None
    data = b""
    try:
        data = read_regular_file(path, KEY_FILE)
    except FileRejected as exc:
        problem = exc.strerror
    except FileNotFoundError:
        problem = "does not exist"
    except IsADirectoryError:
        problem = "is a directory, not a key file"
    except PermissionError:
        problem = "cannot be read (permission denied); run as the user that owns the key"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    if problem is not None:
        raise KeyFileError(path, problem)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise KeyFileError(path, "is not UTF-8 text; restore it from your key backup")
    return parse_key_file(text, str(path))


def write_key_file(path: Path, key: KeyFile) -> None:
    """Write `key` in neard's format, atomically, readable only by its owner from the first byte."""
    path = Path(path)
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    problem: str | None = None
    fd = -1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), KEY_FILE_MODE)
    except OSError as exc:
        problem = f"cannot create a temporary file in {directory} ({exc.strerror}); nothing was written"
    if problem is not None:
        raise KeyFileError(path, problem)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), KEY_FILE_MODE)  # umask can only narrow it; be exact anyway
            handle.write(key.to_json_text().encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        problem = f"could not be written ({exc.strerror}); the previous file, if any, is unchanged"
    if problem is not None:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise KeyFileError(path, problem)
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def permission_problems(path: Path) -> list[str]:
    """What is wrong with who can reach a key file; empty when only its owner can read and write it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [f"{path} does not exist"]
    except OSError as exc:
        return [f"{path} cannot be inspected ({exc.strerror})"]
    if not stat.S_ISREG(st.st_mode):
        return [f"{path} is not a regular file"]
    mode = stat.S_IMODE(st.st_mode)
    fix = f"run `chmod 600 {path}`"
    problems: list[str] = []
    checks = (
        (stat.S_IRGRP, "is readable by its group"),
        (stat.S_IWGRP, "is writable by its group"),
        (stat.S_IROTH, "is readable by every user"),
        (stat.S_IWOTH, "is writable by every user"),
        (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH, "is executable"),
    )
    for bits, what in checks:
        if mode & bits:
            problems.append(f"{path} {what} (mode {mode:04o}); {fix}")
    if not mode & stat.S_IRUSR:
        problems.append(f"{path} is not readable by its owner (mode {mode:04o}); neard cannot load it; {fix}")
    try:
        dir_mode = os.stat(path.parent).st_mode
    except OSError:
        dir_mode = 0
    if dir_mode & (stat.S_IWGRP | stat.S_IWOTH) and not dir_mode & stat.S_ISVTX:
        problems.append(
            f"{path.parent} is writable by other users (mode {stat.S_IMODE(dir_mode):04o}), so they can "
            f"replace the key; run `chmod go-w {path.parent}`"
        )
    return problems
