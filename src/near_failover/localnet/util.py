"""Small helpers shared by the localnet processes: neard-style log lines, atomic files, times."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

LEVELS = {"ERROR": 1, "WARN": 2, "INFO": 3, "DEBUG": 4}


def rfc3339_nanos(ns: int) -> str:
    """`2025-02-12T22:10:10.530341781Z`: neard's block time format (neard-behaviour §4.2)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _log_time() -> str:
    ns = time.time_ns()
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"


def _field(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class Log:
    """Writes lines shaped like neard's tracing output: `<time>  INFO <target>: <message> k=v`."""

    def __init__(self, stream: TextIO | None = None, level: str = "INFO") -> None:
        self.stream = stream or sys.stderr
        self.level = LEVELS.get(level, 3)

    def emit(self, level: str, target: str, message: str, **fields: object) -> None:
        if LEVELS[level] > self.level:
            return
        extra = "".join(f" {k}={_field(v)}" for k, v in fields.items())
        try:
            self.stream.write(f"{_log_time()} {level:>5} {target}: {message}{extra}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed log must not take the process down

    def info(self, target: str, message: str, **fields: object) -> None:
        self.emit("INFO", target, message, **fields)

    def warn(self, target: str, message: str, **fields: object) -> None:
        self.emit("WARN", target, message, **fields)

    def error(self, target: str, message: str, **fields: object) -> None:
        self.emit("ERROR", target, message, **fields)

    def debug(self, target: str, message: str, **fields: object) -> None:
        self.emit("DEBUG", target, message, **fields)


def write_json_atomic(path: Path, obj: Any, mode: int = 0o644, fsync: bool = True) -> None:
    """Write JSON via temp file + (fsync) + rename so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def process_cmdline(pid: int) -> list[str] | None:
    """argv of a live (non-zombie) process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"Z":
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_alive(pid: int) -> bool:
    return process_cmdline(pid) is not None
