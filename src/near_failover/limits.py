"""Bounds on everything the tool reads: files by kind, HTTP answers, API request bodies.

A symlink to /dev/zero, a FIFO, a 300 MB file or a gzip bomb must end in a clean error naming the
input and its limit, never in a hang or unbounded memory. Files are opened with O_NONBLOCK (a FIFO
cannot block the open) and checked with fstat on the opened descriptor: symlinks are followed, but
the target must be a regular file. HTTP answers are counted while they stream, after decoding, so
the decompressed size is what is bounded.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from dataclasses import dataclass

_KIB = 1024
_MIB = 1024 * _KIB


@dataclass(frozen=True)
class FileLimit:
    """The most bytes a file of one kind may hold; ``kind`` names it in the refusal."""

    kind: str
    max_bytes: int

    def describe(self) -> str:
        return f"the {human_size(self.max_bytes)} allowed for {self.kind}"


def human_size(size: int) -> str:
    """4194304 -> "4 MiB", 65536 -> "64 KiB" (the limits are whole KiB or MiB)."""
    return f"{size // _MIB} MiB" if size % _MIB == 0 else f"{size // _KIB} KiB"


# neard's config.json is a few KiB; 4 MiB leaves room for any real one.
CONFIG_JSON = FileLimit("config.json", 4 * _MIB)
# genesis.json can be gigabytes: only this prefix is scanned for chain_id.
GENESIS_PREFIX = FileLimit("the scanned head of genesis.json", 64 * _KIB)
LOG_CONFIG = FileLimit("log_config.json", 1 * _MIB)
# A key file (validator_key.json, node_key.json) is under 300 bytes.
KEY_FILE = FileLimit("a key file", 64 * _KIB)
INVENTORY = FileLimit("an inventory", 1 * _MIB)
SECRET_FILE = FileLimit("a token or password file", 4 * _KIB)
PID_FILE = FileLimit("a pid file", 4 * _KIB)
PROC_FILE = FileLimit("a /proc file", 1 * _MIB)  # /proc/stat grows with CPUs and IRQs
STATE_FILE = FileLimit("a state file", 1 * _MIB)
LOG_TAIL = FileLimit("a log read back", 16 * _MIB)
ANY_FILE = FileLimit("a file", 16 * _MIB)

# HTTP answers and bodies, counted after decoding.
RPC_ANSWER_BYTES = 16 * _MIB  # `validators` on mainnet and /metrics are a few MiB
ETCD_ANSWER_BYTES = 4 * _MIB  # etcd's own default request limit is 1.5 MiB
WEBHOOK_ANSWER_BYTES = 64 * _KIB
API_BODY_BYTES = 64 * _KIB  # every API request body is a small JSON object
API_ANSWER_BYTES = 1 * _MIB  # another agent's answer (/switchover, /failsafe)


class FileRejected(OSError):
    """A file that is not a regular file or is larger than its kind allows.

    An OSError, so every reader's existing "cannot be read (...)" handling reports it with the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(errno.EINVAL, reason, str(path))


def _file_type(mode: int) -> str:
    for test, name in (
        (_stat.S_ISFIFO, "a FIFO"), (_stat.S_ISCHR, "a character device"),
        (_stat.S_ISBLK, "a block device"), (_stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | os.PathLike[str], mode: int, size: int, limit: FileLimit) -> None:
    """Refuse anything but a regular file, and one larger than ``limit`` (from its stat)."""
    if _stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    if not _stat.S_ISREG(mode):
        raise FileRejected(path, f"is {_file_type(mode)}, not a regular file; point it at a file")
    if size > limit.max_bytes:
        raise FileRejected(path, f"is {size} bytes, more than {limit.describe()}")


def read_regular_file(path: str | os.PathLike[str], limit: FileLimit, *, prefix: bool = False) -> bytes:
    """The bytes of ``path``, a regular file (symlinks followed) of at most ``limit`` bytes.

    With ``prefix`` a longer file is not refused: its first ``limit.max_bytes`` are returned (a
    bounded scan of a file that can be gigabytes, such as genesis.json). A file that grows past its
    stat size while read (or a /proc file, whose stat size is 0) is still cut at the limit.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        check_regular(path, st.st_mode, 0 if prefix else st.st_size, limit)
        chunks: list[bytes] = []
        total = 0
        while total <= limit.max_bytes:
            chunk = os.read(fd, min(1 * _MIB, limit.max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if total > limit.max_bytes:
        if prefix:
            return data[: limit.max_bytes]
        raise FileRejected(path, f"grew past {limit.describe()} while read")
    return data


def read_regular_text(path: str | os.PathLike[str], limit: FileLimit) -> str:
    """``read_regular_file`` decoded as UTF-8 (UnicodeDecodeError when it is not)."""
    return read_regular_file(path, limit).decode("utf-8")
