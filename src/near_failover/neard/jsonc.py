"""JSON as neard reads and writes it: comments allowed on input, serde_json's pretty format on output.

neard passes config.json and key files through the `json_comments` crate before serde_json
(neard-behaviour §1.4, §3), so `//`, `/* */` and `#` comments outside strings are legal. It
writes JSON with serde_json's pretty printer: 2-space indent, non-ASCII kept as is, no trailing
newline (neard-behaviour §1.5). Both config.py and keys.py share this module so that a file
loads the same way whichever of them reads it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# serde_json refuses input nested this deep (src/de.rs: `remaining_depth: 128`, decremented by
# each array or object, "recursion limit exceeded" when it reaches 0), so neard does too; Python's
# parser would instead hit its own recursion limit and raise RecursionError.
SERDE_JSON_RECURSION_LIMIT = 128
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)  # a whole string, or a bracket
# A key name is quoted in an error only when it looks like a field name: a key file's secret
# pasted as a name must not be echoed.
_SHOWN_KEY = re.compile(r"[a-z0-9_.-]{1,64}")


class JsoncError(ValueError):
    """Text that neard would refuse to parse; `line`/`column` are 1-based positions in the input."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        self.problem = problem
        self.line = line
        self.column = column
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"{problem}{where}")


class JsonFloat(float):
    """A float that remembers the literal it was parsed from, so a rewrite keeps the operator's spelling."""

    literal: str

    def __new__(cls, literal: str) -> "JsonFloat":
        obj = super().__new__(cls, literal)
        obj.literal = literal
        return obj


def strip_comments(text: str) -> str:
    """Blank out comments like json_comments does (same length, newlines kept, strings untouched).

    Keeping every other character in place means a JSON error position still points at the
    operator's own line and column.
    """
    out: list[str] = []
    i = 0
    n = len(text)
    state = "top"
    block_start = 0
    while i < n:
        ch = text[i]
        if state == "top":
            if ch == '"':
                state = "string"
                out.append(ch)
            elif ch == "/" and i + 1 < n and text[i + 1] == "/":
                state = "line"
                out.append("  ")
                i += 1
            elif ch == "/" and i + 1 < n and text[i + 1] == "*":
                state = "block"
                block_start = i
                out.append("  ")
                i += 1
            elif ch == "#":
                state = "line"
                out.append(" ")
            else:
                out.append(ch)
        elif state == "string":
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif ch == '"':
                state = "top"
        elif state == "line":
            if ch == "\n":
                out.append(ch)
                state = "top"
            else:
                out.append(" ")
        else:  # block comment
            if ch == "*" and i + 1 < n and text[i + 1] == "/":
                out.append("  ")
                i += 1
                state = "top"
            elif ch in "\r\n":
                out.append(ch)
            else:
                out.append(" ")
        i += 1
    if state == "block":
        line, column = _line_col(text, block_start)
        raise JsoncError("unterminated /* comment", line, column)
    return "".join(out)


def has_comments(text: str) -> bool:
    """Whether ``text`` holds a comment neard would skip (and a rewrite in neard's format drops)."""
    return strip_comments(text) != text


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # serde_json refuses a repeated struct field ("duplicate field"); silently keeping the last one
    # would also make a rewrite drop the operator's other value, so every repeat is an error here.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            shown = json.dumps(key) if _SHOWN_KEY.fullmatch(key) else f"(a {len(key)}-character name, not shown)"
            raise JsoncError(f"duplicate key {shown} in one object")
        obj[key] = value
    return obj


def _too_deep(text: str) -> tuple[int, int] | None:
    """The line and column of the first array or object nested past serde_json's limit."""
    depth = 0
    for match in _STRUCTURE.finditer(text):
        char = match.group()[0]
        if char in "[{":
            depth += 1
            if depth >= SERDE_JSON_RECURSION_LIMIT:
                return _line_col(text, match.start())
        elif char in "]}":
            depth -= 1
    return None


def _reject_constant(name: str) -> Any:
    raise JsoncError(f"{name} is not valid JSON (serde_json refuses it)")


def _parse_float(literal: str) -> JsonFloat:
    value = JsonFloat(literal)
    if math.isinf(value):
        raise JsoncError(f"number {literal} is out of range")
    return value


def _check_strings(value: Any) -> None:
    """serde_json refuses lone UTF-16 surrogate escapes; Python accepts them, so look for them."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_string(key)
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsoncError("a string contains a lone UTF-16 surrogate escape (\\ud800-\\udfff)") from None


def loads(text: str) -> Any:
    """Parse JSON with comments, keeping key order; raise JsoncError with a position on bad input."""
    stripped = strip_comments(text)
    problem: JsoncError | None = None
    if (deep_at := _too_deep(stripped)) is not None:
        raise JsoncError("recursion limit exceeded", *deep_at)
    try:
        value = json.loads(
            stripped,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as exc:
        problem = JsoncError(exc.msg, exc.lineno, exc.colno)
    except JsoncError as exc:
        problem = JsoncError(exc.problem, exc.line, exc.column)
    if problem is not None:
        # Raised outside the except block so that no context (which may hold the text) is chained.
        raise problem
    _check_strings(value)
    return value


def format_float(value: float) -> str:
    """serde_json (ryu) spelling for a float that has no literal of its own."""
    if isinstance(value, JsonFloat):
        return value.literal
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be written as JSON")
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else ""
        text = f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def dumps(value: Any, indent: int = 2) -> str:
    """serde_json::to_string_pretty output: `indent` spaces, ": " separator, empty containers as []/{}."""
    parts: list[str] = []
    _encode(value, 0, " " * indent, parts)
    return "".join(parts)


def _encode(value: Any, level: int, pad: str, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for index, item in enumerate(value):
            out.append(",\n" if index else "\n")
            out.append(pad * (level + 1))
            _encode(item, level + 1, pad, out)
        out.append("\n" + pad * level + "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
            out.append(",\n" if index else "\n")
            out.append(pad * (level + 1))
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(": ")
            _encode(item, level + 1, pad, out)
        out.append("\n" + pad * level + "}")
    else:
        raise TypeError(f"{type(value).__name__} cannot be written as JSON")
