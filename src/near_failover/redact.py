"""The one redaction rule set: what of a text, a URL or a record may leave the process.

Used by the journal, the agent API, alerts, the logs (a structlog processor) and the CLI's error
lines, so that a secret is kept out the same way everywhere. The rules, in order:

1. **Known keys.** Every key file this process parsed is remembered (``remember_secret``); its
   64-byte secret and its 32-byte seed are replaced wherever they appear, in base58, hex (any
   case) or base64 (standard or URL-safe, padded or not), whatever surrounds them. A seed has the
   shape of a hash, so only knowing it tells the two apart.
2. **Key shapes.** Any value that decodes to 64 bytes (an ed25519 secret key, whoever's) is
   replaced: base58 runs that decode to 64 bytes (all of 87 characters or more), hex runs of 128
   digits or more, base64 runs of 86 characters or more with both letter cases. Signatures share
   the length and go too.
3. **Secret context.** A value written after ``seed``, ``secret``, ``private_key``,
   ``password``, ``token`` or ``api_key`` and ``=`` or ``:`` is replaced, whatever its length,
   and so is the credential after ``Bearer`` or ``Basic`` (an HTTP authorization, as a fence
   command's or a webhook's error output may quote it).
4. **URL credentials.** The userinfo of a URL (``ssh://near:PW@host``) becomes ``***``.
5. **Records.** A field named like a secret (``secret_key``, ``private_key``, ``seed``,
   ``password``...) is replaced whatever it holds; everything else is walked.

Public keys (32 bytes) and hashes (32 bytes) pass, in every encoding, unless they are the seed of
a key this process has seen.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, Final
from urllib.parse import urlsplit

REDACTED: Final = "<redacted>"
URL_CREDENTIALS: Final = "***"

SECRET_LEN: Final = 64  # an ed25519 secret key: the 32-byte seed followed by the public key
SEED_LEN: Final = 32

_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {char: index for index, char in enumerate(_B58_ALPHABET)}
# Base58 text of 64 bytes: 64 characters (all zero bytes) to 88.
_B58_MIN, _B58_MAX = 64, 88
_B64_SECRET_CHARS: Final = 86  # 64 bytes in base64 without padding
_HEX_SECRET_CHARS: Final = 128

# Every character of any of the three encodings; a run of them is examined as one candidate.
_RUN = re.compile(r"[A-Za-z0-9+/_-]{32,}")
_B58_RUN = re.compile(rf"[{_B58_ALPHABET}]{{{_B58_MIN},}}")
_HEX_RUN = re.compile(rf"[0-9a-fA-F]{{{_HEX_SECRET_CHARS},}}")
_B64_RUNS = (
    re.compile(rf"[A-Za-z0-9+/]{{{_B64_SECRET_CHARS},}}"),
    re.compile(rf"[A-Za-z0-9_-]{{{_B64_SECRET_CHARS},}}"),
)
_SECRET_WORD = (
    r"(?:seed|secret(?:[_ -]?key)?|private(?:[_ -]?key)?|passw(?:or)?d|passphrase"
    r"|(?:api|access|auth|bot)?[_ -]?token|api[_ -]?key)"
)
_SECRET_CONTEXT = re.compile(
    rf"(?i)(\b{_SECRET_WORD}\b[\"']?\s*[:=]\s*[\"']?(?:ed25519:)?)([^\s\"',;&)}}\]]+)"
)
# scheme://userinfo@ : everything up to the last '@' before the path is the userinfo.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s?#@]*(?:@[^/\s?#@]*)*)@")
# An HTTP credential in a header or an error text: "Authorization: Bearer abc", "Basic dXNlcjpwdw==".
_AUTH_SCHEME = re.compile(r"(?i)(\b(?:bearer|basic)\s+)([^\s\"',;&)}\]]+)")
_SECRET_FIELD = re.compile(rf"(?i){_SECRET_WORD}|private|credential")
_PATH_FIELD_SUFFIXES: Final = ("_file", "_path", "_dir", "_files")

_PREFIX_LEN: Final = 16


class _KnownSecrets:
    """The encodings of every secret and seed this process has seen, indexed by their first
    characters so that a text is checked in time linear in its length, not in the keys known."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: dict[str, tuple[str, ...]] = {}  # base58 and base64: case matters
        self._folded: dict[str, tuple[str, ...]] = {}  # hex: any case
        self._values: set[bytes] = set()

    def add(self, value: bytes) -> None:
        if value in self._values:
            return
        exact = [_b58encode(value), base64.b64encode(value).decode().rstrip("="),
                 base64.urlsafe_b64encode(value).decode().rstrip("=")]
        with self._lock:
            self._values.add(value)
            exact_index, folded_index = dict(self._exact), dict(self._folded)
            for text in exact:
                exact_index[text[:_PREFIX_LEN]] = (*exact_index.get(text[:_PREFIX_LEN], ()), text)
            hex_text = value.hex()
            folded_index[hex_text[:_PREFIX_LEN]] = (*folded_index.get(hex_text[:_PREFIX_LEN], ()), hex_text)
            self._exact, self._folded = exact_index, folded_index

    def __contains__(self, value: bytes) -> bool:
        return value in self._values

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where known encodings occur in ``text`` (one run of encoding characters)."""
        exact, folded = self._exact, self._folded
        if not exact:
            return []
        found: list[tuple[int, int]] = []
        lowered = text.lower()
        for start in range(len(text) - SEED_LEN + 1):
            for index, haystack in ((exact, text), (folded, lowered)):
                for candidate in index.get(haystack[start : start + _PREFIX_LEN], ()):
                    if haystack.startswith(candidate, start):
                        found.append((start, start + len(candidate)))
        return found


_known = _KnownSecrets()


def remember_secret(secret: bytes) -> None:
    """Redact ``secret`` (a 64-byte ed25519 secret key or a 32-byte seed) from now on, and the
    seed of a secret key too. Called by whatever parses a key file."""
    if len(secret) not in (SECRET_LEN, SEED_LEN):
        raise ValueError(f"a secret key is {SECRET_LEN} bytes or a seed {SEED_LEN}, not {len(secret)}")
    _known.add(bytes(secret))
    if len(secret) == SECRET_LEN:
        _known.add(bytes(secret[:SEED_LEN]))


def is_known_secret(value: bytes) -> bool:
    return bytes(value) in _known


def _b58encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(_B58_ALPHABET[rest])
    return "1" * zeros + "".join(reversed(digits))


def _holds_64_byte_base58(run: str) -> bool:
    """Whether some window of a base58 run decodes to exactly 64 bytes (the key may run straight
    into other base58 characters, "...keyABC").

    A 64-byte value whose first byte is not zero is at least 2^504 > 58^86: 87 characters or
    more, and nearly every window of 87 characters decodes to 64 bytes, so such a run goes whole.
    A shorter window holds 64 bytes only if it starts with zero bytes, written '1': only windows
    starting at a '1' are decoded, which keeps a hostile text from costing much.
    """
    if len(run) >= _B58_MAX - 1:
        return True
    for start in (index for index, char in enumerate(run) if char == "1"):
        zeros, number = 0, 0
        for end in range(start, min(len(run), start + _B58_MAX)):
            digit = _B58_INDEX[run[end]]
            if number == 0 and digit == 0:
                zeros += 1
            else:
                number = number * 58 + digit
            if end - start + 1 >= _B58_MIN and zeros + (number.bit_length() + 7) // 8 == SECRET_LEN:
                return True
    return False


def _looks_random(run: str) -> bool:
    """Both letter cases: base64 of key material has them, identifiers and words rarely do."""
    return any(c.isupper() for c in run) and any(c.islower() for c in run)


def _shape_spans(run: str) -> list[tuple[int, int]]:
    """Where in one candidate run a value has the shape of a 64-byte key."""
    spans = [m.span() for m in _HEX_RUN.finditer(run)]
    spans += [m.span() for m in _B58_RUN.finditer(run) if _holds_64_byte_base58(m.group())]
    for pattern in _B64_RUNS:
        spans += [m.span() for m in pattern.finditer(run) if _looks_random(m.group())]
    return spans


def _cut(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with each of ``spans`` (merged where they overlap) replaced by REDACTED, and any
    base64 padding right after one dropped with it."""
    out: list[str] = []
    position = 0
    for start, end in sorted(spans):
        if end <= position:
            continue
        if start < position:
            start = position
        else:
            out.append(text[position:start])
        while end < len(text) and text[end] == "=":
            end += 1
        if not out or out[-1] != REDACTED:
            out.append(REDACTED)
        position = end
    out.append(text[position:])
    return "".join(out)


def _redact_key_material(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for run in _RUN.finditer(text):
        found = _known.spans(run.group()) + _shape_spans(run.group())
        spans += [(run.start() + start, run.start() + end) for start, end in found]
    return _cut(text, spans) if spans else text


def _redact_userinfo(text: str) -> str:
    return _URL_USERINFO.sub(lambda m: f"{m.group(1)}{URL_CREDENTIALS}@", text)


def redact_text(text: str) -> str:
    """``text`` with key material, values written after a secret's name and URL credentials
    replaced (rules 1 to 4 of the module docstring)."""
    if not isinstance(text, str):
        text = str(text)
    text = _redact_userinfo(text)
    text = _SECRET_CONTEXT.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTH_SCHEME.sub(lambda m: m.group(1) + REDACTED, text)
    return _redact_key_material(text)


def redact_url(url: str) -> str:
    """``url`` with its userinfo replaced by ``***`` (``https://***@host/path``) and any key
    material in it cut; never raises, whatever ``url`` is."""
    text = str(url)
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
    except ValueError:
        return redact_text(text)
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        text = parts._replace(netloc=f"{URL_CREDENTIALS}@{host}").geturl()
    return redact_text(text)


def url_origin(url: str) -> str:
    """scheme://host[:port] only, without credentials: what may be shown of a URL whose path is
    itself a credential (Slack and Telegram webhooks)."""
    try:
        parts = urlsplit(str(url))
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return redact_url(url)


def is_secret_field(name: str) -> bool:
    """A field whose value is a secret whatever it holds (a path to one is not)."""
    lowered = name.lower()
    return bool(_SECRET_FIELD.search(lowered)) and not lowered.endswith(_PATH_FIELD_SUFFIXES)


def _may_hold_a_secret(value: Any) -> bool:
    """Under a secret's name, anything but "no value" (None, "", a flag) is taken for the secret."""
    return value is not None and value != "" and not isinstance(value, bool)


def redact_record(value: Any) -> Any:
    """A JSON-ready copy of ``value`` without secrets (rule 5, then rules 1 to 4 on every text).

    Unknown objects become ``str(obj)`` (then redacted), never their fields: a dataclass holding a
    key must not be walked into.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Enum):
        return redact_record(value.value)
    if isinstance(value, datetime):
        return redact_text(value.isoformat())
    if isinstance(value, PurePath):
        return redact_text(str(value))
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = redact_text(str(key))
            out[name] = REDACTED if is_secret_field(name) and _may_hold_a_secret(item) else redact_record(item)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_record(item) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return REDACTED if len(data) == SECRET_LEN or data in _known else redact_text(data.hex())
    return redact_text(str(value))


def redact_log_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every value of a log event redacted (put it after the processor that
    formats exceptions, so that their text is redacted too)."""
    for key, item in list(event_dict.items()):
        if key == "exc_info" and not isinstance(item, str):
            continue  # formatted (and then redacted) by a later renderer step; see __init__
        if is_secret_field(str(key)) and _may_hold_a_secret(item):
            event_dict[key] = REDACTED
        elif isinstance(item, str):
            event_dict[key] = redact_text(item)
        elif not isinstance(item, (bool, int, float)) and item is not None:
            event_dict[key] = redact_record(item)
    return event_dict
