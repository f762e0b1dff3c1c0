"""The inventory: one TOML file that describes a validator pool and the nodes that may sign for it.

Every mistake in it is reported with the file, the key (``node[1].control``) and what was
expected, because an operator reads these errors at the worst moment: in the middle of an outage.
Paths are resolved once, here, so nothing downstream has to guess what a relative path meant.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from near_failover.limits import INVENTORY, SECRET_FILE, FileRejected, read_regular_text
from near_failover.neard.account import account_id_problem
from near_failover.redact import redact_url, url_origin
from near_failover.urls import checked_http_url

DEFAULT_JOURNAL_PATH = "~/.local/state/near-failover/journal.sqlite"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CONTROL_EXPECTED = 'expected "systemd:<unit>", "pidfile:<path>" or "command"'
_HOST_EXPECTED = 'expected "local" or "ssh://[user@]host[:port]"'


class AlertTarget(BaseModel):
    """One ``[[alert]]`` table of the inventory: where and in which format to send alerts.

    ``kind = "telegram"``: ``url`` is the bot's ``https://api.telegram.org/bot<token>/sendMessage``
    (or the same without ``/sendMessage``) and ``chat_id`` is required. ``kind = "apprise"``:
    ``url_file`` names a file (mode 0600) with one or more apprise URLs (``discord://...``,
    ``pagerduty://...``, ``mailtos://...``), one per line; it is read at each send. A delivery
    is tried ``attempts`` times, ``backoff`` seconds apart, doubling.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["json", "slack", "telegram", "apprise"]
    url: str | None = Field(default=None, repr=False)
    url_file: Path | None = None
    chat_id: str | None = None
    timeout: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=3, ge=1, le=10)
    backoff: float = Field(default=1.0, ge=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The value itself is not echoed: a webhook URL is a credential.
            raise ValueError('expected a webhook URL such as "https://hooks.example.com/..."')
        return value

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("url_file", mode="before")
    @classmethod
    def _url_file(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, (str, Path)) else value

    @model_validator(mode="after")
    def _kind_needs(self) -> AlertTarget:
        if self.kind == "apprise":
            if self.url is not None or self.url_file is None:
                raise ValueError('kind = "apprise" takes url_file = "<file with the apprise URLs, mode 0600>", not url: an apprise URL holds its credentials')
            apprise_urls(self.url_file)  # a missing, empty or readable-by-others file is an inventory error now
        elif self.url is None or self.url_file is not None:
            raise ValueError(f'kind = "{self.kind}" needs url = "https://..." (url_file is for kind = "apprise")')
        if self.kind == "telegram" and not self.chat_id:
            raise ValueError('kind = "telegram" needs chat_id = "<chat id or @channel>"')
        if self.kind != "telegram" and self.chat_id is not None:
            raise ValueError('chat_id is used only with kind = "telegram"')
        return self

    @property
    def redacted_url(self) -> str:
        """What logs and errors may show of the URL: scheme://host[:port], or for apprise the
        file's name (its URLs are credentials from the scheme on)."""
        return str(self.url_file) if self.url is None else url_origin(self.url)

    @property
    def post_url(self) -> str:
        assert self.url is not None
        if self.kind == "telegram" and not self.url.rstrip("/").endswith("/sendMessage"):
            return self.url.rstrip("/") + "/sendMessage"
        return self.url

    def label(self) -> str:
        return f"{self.kind} {self.redacted_url}"


def apprise_urls(path: Path) -> list[str]:
    """The apprise URLs in ``path`` (one per line, # comments): ValueError naming the file and
    the fix, never its content, when it is missing, empty or readable by others."""
    try:
        mode = path.stat().st_mode
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"url_file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); write the apprise URLs there, one per line, mode 0600") from None
    if mode & 0o077:
        raise ValueError(f"url_file {path}: readable by others (mode {mode & 0o777:o}); run chmod 600 {path}")
    urls = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not urls:
        raise ValueError(f"url_file {path}: no apprise URL in it; put one per line (e.g. discord://webhook_id/webhook_token)")
    return urls


class StandbyMode(StrEnum):
    """How a node waits when it does not sign, and so how a move activates it: the guide's
    Option 2 (hot swap: ShadowValidator, memtries on, the key copied in and SIGHUP) or Option 1
    (rpc: an RPC node, restarted as validator)."""

    HOT_SWAP = "hot-swap"
    RPC = "rpc"


class InventoryError(Exception):
    """A problem with the inventory; the message names the file, the key and the fix."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class UnknownNode(InventoryError):
    """A node name that the inventory does not define."""


# --- parsed forms of the compact string fields ---------------------------------------------------


@dataclass(frozen=True)
class HostSpec:
    """Where a node's machine is: this machine, or an SSH endpoint."""

    kind: Literal["local", "ssh"]
    hostname: str | None = None
    port: int = 22
    user: str | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return "local"
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.hostname}]" if self.hostname and ":" in self.hostname else self.hostname
        return f"ssh://{user}{host}:{self.port}"


def parse_host(value: str) -> HostSpec:
    """Parse ``local`` or ``ssh://[user@]host[:port]``; raises ValueError with what is expected."""
    if value == "local":
        return HostSpec(kind="local")
    shown = redact_url(value)  # a password in the URL is refused, never echoed
    if not value.startswith("ssh://"):
        raise ValueError(f"{_HOST_EXPECTED}, got {shown!r}")
    parts = urlsplit(value)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{_HOST_EXPECTED} with no path or query, got {shown!r}")
    if parts.password is not None:
        raise ValueError(
            f"{shown!r} contains a password; passwords are not accepted: use a key or an agent"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{_HOST_EXPECTED} with a port from 1 to 65535, got {shown!r}") from None
    if not parts.hostname:
        raise ValueError(f"{_HOST_EXPECTED}, the host name is missing in {shown!r}")
    if port == 0:
        raise ValueError(f"{_HOST_EXPECTED} with a port from 1 to 65535, got {shown!r}")
    return HostSpec(kind="ssh", hostname=parts.hostname, port=port or 22, user=parts.username)


@dataclass(frozen=True)
class ControlSpec:
    """How neard is stopped and started on a node."""

    kind: Literal["systemd", "pidfile", "command"]
    unit: str | None = None
    pidfile: PurePosixPath | None = None


def parse_control(value: str) -> ControlSpec:
    """Parse the ``control`` field (paths must already be absolute)."""
    if value == "command":
        return ControlSpec(kind="command")
    kind, sep, rest = value.partition(":")
    if sep and kind == "systemd" and rest.strip():
        return ControlSpec(kind="systemd", unit=rest.strip())
    if sep and kind == "pidfile" and rest.strip():
        return ControlSpec(kind="pidfile", pidfile=PurePosixPath(rest.strip()))
    raise ValueError(f"{_CONTROL_EXPECTED}, got {value!r}")


# --- path resolution -----------------------------------------------------------------------------


def _resolve_path(value: str, info: ValidationInfo, remote: bool) -> str:
    """Resolve ``value`` as the inventory documents: ``~`` expanded, relative to the file's folder.

    On an SSH node neither makes sense (it would be this machine's folder and home), so such a path
    must be absolute.
    """
    if not value:
        raise ValueError("expected a path, got an empty string")
    if remote:
        if not value.startswith("/"):
            raise ValueError(
                f"expected an absolute path on the SSH host, got {value!r} "
                "(relative and ~ paths are resolved on this machine, not on the node)"
            )
        return value
    expanded = os.path.expanduser(value)
    base = (info.context or {}).get("base_dir")
    path = Path(expanded)
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    return os.path.normpath(path)


def _argv(value: Any, what: str) -> list[str]:
    """An argv from a list of strings, or from a string split like a shell would (no shell runs)."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"{what}: cannot split {value!r} into arguments: {exc}") from None
    elif isinstance(value, list) and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        raise ValueError(f"{what}: expected a list of strings (argv) or a string, got {value!r}")
    if not argv or not argv[0]:
        raise ValueError(f"{what}: expected a non-empty command")
    return argv


# --- models --------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Validator(_Strict):
    """The pool the nodes sign for."""

    account_id: str
    chain_id: str

    @field_validator("account_id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        problem = account_id_problem(value)
        if problem:
            raise ValueError(f"expected the pool's account id: {problem}")
        return value

    @field_validator("chain_id")
    @classmethod
    def _chain_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('expected a chain id such as "mainnet", "testnet" or "localnet"')
        return value


class JournalSettings(_Strict):
    """Where runs and steps are recorded (a local SQLite file)."""

    path: Path = Field(default=Path(DEFAULT_JOURNAL_PATH), validate_default=True)

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (str, Path)):
            return _resolve_path(str(value), info, remote=False)
        return value


class SshSettings(_Strict):
    """How SSH nodes are reached. Host keys are always checked; there is no switch to disable it."""

    known_hosts: Path = Field(default=Path(DEFAULT_KNOWN_HOSTS), validate_default=True)
    identity: list[Path] | None = None
    connect_timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("known_hosts", mode="before")
    @classmethod
    def _known_hosts(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (str, Path)):
            return _resolve_path(str(value), info, remote=False)
        return value

    @field_validator("identity", mode="before")
    @classmethod
    def _identity(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (str, Path)):
            value = [value]
        if isinstance(value, list):
            return [
                _resolve_path(str(v), info, remote=False) if isinstance(v, (str, Path)) else v
                for v in value
            ]
        return value


class NodeCommands(_Strict):
    """User-given commands for ``control = "command"``; each an argv (a string is split, no shell).

    ``is_active`` exits 0 when neard runs. ``main_pid`` prints the pid; ``mask``/``unmask`` keep
    neard from being started again and ``is_masked`` exits 0 while masked; ``restart`` defaults to
    stop then start.
    """

    start: list[str] | None = None
    stop: list[str] | None = None
    reload: list[str] | None = None
    is_active: list[str] | None = None
    restart: list[str] | None = None
    mask: list[str] | None = None
    unmask: list[str] | None = None
    is_masked: list[str] | None = None
    main_pid: list[str] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _command(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        return _argv(value, "command")


# --- [timeouts] and [node.timeouts]: the deadline of each step of a move -------------------------
# Defaults live with the steps (procedures/plan.py MoveSettings); these tables only override them.

MAX_TIMEOUT = 24 * 3600.0
# The deadlines that depend on one node's neard: how long it takes to stop (fence, as the old
# signer), to apply a SIGHUP or to restart through its memtrie load (activate), to sign (verify).
NODE_TIMEOUT_KEYS = ("fence", "activate_hot_swap", "activate_rpc", "verify")
MOVE_TIMEOUT_KEYS = ("preflight", "stage", "settle", "window_wait")


def _seconds(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise ValueError(f"expected a number of seconds greater than 0 and at most {MAX_TIMEOUT:.0f} (e.g. 120), got {value!r}")
    return float(value)


class NodeTimeouts(_Strict):
    """``[node.timeouts]``: this node's own deadlines (seconds), over ``[timeouts]``."""

    fence: float | None = None
    activate_hot_swap: float | None = None
    activate_rpc: float | None = None
    verify: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if key in MOVE_TIMEOUT_KEYS and cls is NodeTimeouts:
                    raise ValueError(f"{key}: set it for the whole move in [timeouts]; per node only {', '.join(NODE_TIMEOUT_KEYS)}")
                if key not in cls.model_fields:
                    raise ValueError(f"{key}: unknown timeout (a typo?); expected one of {', '.join(cls.model_fields)}")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return _seconds(value)

    def overrides(self) -> dict[str, float]:
        """The keys this table sets."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Timeouts(NodeTimeouts):
    """``[timeouts]``: every step's deadline (seconds) for every move; unset keys keep the defaults."""

    preflight: float | None = None
    stage: float | None = None
    settle: float | None = None
    window_wait: float | None = None


class Node(_Strict):
    """One machine running neard that may sign for the pool."""

    name: str
    host: str = "local"
    home: PurePosixPath
    rpc: str
    control: str
    start: list[str] | None = None
    commands: NodeCommands | None = None
    key_store: PurePosixPath
    standby: StandbyMode
    priority: int = Field(default=100, ge=0)
    ssh: SshSettings | None = None
    # The automatic mode's agent API on this node (`near-failover agent` listens there; other
    # agents call it for the failsafe confirmation), e.g. "http://127.0.0.1:8008".
    api: str | None = None
    # The local IP address this node's agent sends its lease-store (etcd) requests from, when the
    # machine has several and the route to etcd must use one of them, e.g. "10.0.0.11".
    lease_source_address: str | None = None
    # [node.timeouts]: this node's stop, activation and verify deadlines over [timeouts].
    timeouts: NodeTimeouts | None = None
    # TLS for the agent API at an https:// `api`: its certificate and private key (PEM, the key
    # 0600), read by this node's agent; clients verify it with [lease] api_ca_file.
    api_cert_file: Path | None = None
    api_key_file: Path | None = None
    # A STONITH hook (an argv, run on the machine that promotes another node): power this node's
    # machine off through the cloud's or hypervisor's API, or cut its network. A promotion that
    # proves this node fenced only by the chain's silence runs it, and needs its exit 0, before
    # any key is given: a paused machine that wakes later cannot sign then.
    fence_command: list[str] | None = None
    # How the user this tool logs in as (neard's own user, who owns its home) gets the actions only
    # root may do, systemctl on neard's unit: "root" logs in as root; "sudo" runs each through
    # `sudo -n` with the fixed rules of deploy/sudoers/near-failover (`check --control` proves them).
    privilege: Literal["root", "sudo"] = "root"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NODE_NAME.match(value):
            raise ValueError(
                "expected a node name of letters, digits, '.', '_' or '-' "
                f"(1 to 63 characters, starting with a letter or digit), got {value!r}"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return str(parse_host(value))

    @field_validator("lease_source_address")
    @classmethod
    def _lease_source_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(
                f'expected an IP address of the agent\'s machine for its etcd requests, such as "10.0.0.11", got {value!r}'
            ) from None

    @field_validator("rpc")
    @classmethod
    def _rpc(cls, value: str) -> str:
        return checked_http_url(value, "neard's RPC URL", "http://127.0.0.1:3030")

    @field_validator("api")
    @classmethod
    def _api(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return checked_http_url(value, "the agent API's URL", "http://127.0.0.1:8008")

    @field_validator("home", "key_store", mode="before")
    @classmethod
    def _node_path(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (str, PurePosixPath)):
            return _resolve_path(str(value), info, remote=_is_remote(info))
        return value

    @field_validator("api_cert_file", "api_key_file", mode="before")
    @classmethod
    def _api_tls_path(cls, value: Any, info: ValidationInfo) -> Any:
        # Read by the agent on its own machine, from its copy of the inventory.
        if isinstance(value, (str, Path)):
            return _resolve_path(str(value), info, remote=False)
        return value

    @model_validator(mode="after")
    def _api_tls(self) -> Node:
        if (self.api_cert_file is None) != (self.api_key_file is None):
            raise ValueError("api_cert_file and api_key_file go together: the agent API's certificate and its private key")
        https = self.api is not None and urlsplit(self.api).scheme == "https"
        if https and self.api_cert_file is None:
            raise ValueError(f"api {self.api} is https: set api_cert_file and api_key_file (the agent's certificate and key, PEM)")
        if self.api_cert_file is not None and not https:
            raise ValueError(f"api_cert_file and api_key_file are for an https:// api, got api = {self.api!r}; use https://")
        return self

    @field_validator("control")
    @classmethod
    def _control(cls, value: str, info: ValidationInfo) -> str:
        spec = parse_control(value)
        if spec.kind == "pidfile":
            assert spec.pidfile is not None
            return "pidfile:" + _resolve_path(str(spec.pidfile), info, remote=_is_remote(info))
        return value

    @field_validator("start", "fence_command", mode="before")
    @classmethod
    def _argv_field(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        return _argv(value, info.field_name or "command")

    @model_validator(mode="after")
    def _control_needs(self) -> Node:
        spec = self.control_spec
        if spec.kind == "pidfile" and not self.start:
            raise ValueError(
                'control = "pidfile:..." needs start = [argv that runs neard in the foreground], '
                'e.g. start = ["neard", "--home", "<home>", "run"]'
            )
        if spec.kind == "command":
            needed = ["start", "stop", "is_active"] + (["reload"] if self.standby == StandbyMode.HOT_SWAP else [])
            missing = [c for c in needed if self.commands is None or getattr(self.commands, c) is None]
            if missing:
                raise ValueError(
                    'control = "command" needs [node.commands] with '
                    + ", ".join(needed)
                    + " (reload because standby is hot-swap)" * (self.standby == StandbyMode.HOT_SWAP)
                    + "; missing: "
                    + ", ".join(missing)
                )
        if self.privilege == "sudo" and spec.kind != "systemd":
            raise ValueError(
                'privilege = "sudo" is for control = "systemd:<unit>" (its systemctl runs through sudo -n); '
                "a pid file's or commands' control runs as the login user: put sudo in [node.commands] if they need it"
            )
        if self.commands is not None and spec.kind != "command":
            raise ValueError('[node.commands] is used only with control = "command"')
        if self.home == self.key_store or self.home in self.key_store.parents:
            raise ValueError(
                f"key_store {self.key_store} must be outside neard's home {self.home}: "
                "neard would load a key staged inside its home"
            )
        return self

    @property
    def host_spec(self) -> HostSpec:
        return parse_host(self.host)

    @property
    def control_spec(self) -> ControlSpec:
        return parse_control(self.control)

    @property
    def is_remote(self) -> bool:
        return self.host != "local"

    @property
    def validator_key_path(self) -> PurePosixPath:
        """neard's default key path in its home; config.json's ``validator_key_file`` may name
        another, so code that touches the key asks NodeAccess.validator_key_path()."""
        return self.home / "validator_key.json"

    @property
    def config_path(self) -> PurePosixPath:
        return self.home / "config.json"

    @property
    def log_path(self) -> PurePosixPath:
        """Where pid-file control appends neard's output."""
        return self.home / "neard.log"


def _is_remote(info: ValidationInfo) -> bool:
    host = info.data.get("host") if info.data else None
    return isinstance(host, str) and host != "local"


class LeaseSettings(_Strict):
    """The lease store of the automatic mode (``[lease]``)."""

    store: Literal["etcd", "sqlite"]
    endpoints: list[str] = Field(default_factory=list)
    path: Path | None = None
    ttl: float = Field(default=10.0, gt=0)
    # Patroni's timings: the agent acts every loop_wait seconds and gives up on a store request
    # after retry_timeout; a leader that could not renew fences itself before the ttl runs out.
    loop_wait: float = Field(default=1.0, gt=0)
    retry_timeout: float = Field(default=2.0, gt=0)
    # Consecutive unhealthy checks before a leader steps down (hysteresis against flapping).
    unhealthy_loops: int = Field(default=3, ge=1)
    # Automatic rejoin (ha/rejoin_policy.py): a fenced node whose key is out of its home comes back
    # as a standby on its own, and may lead again once its neard has been healthy for
    # rejoin_settle seconds; one that fenced itself max_self_fences times within
    # self_fence_window seconds stays out until `near-failover rejoin` (no ping-pong).
    auto_rejoin: bool = True
    rejoin_settle: float = Field(default=60.0, ge=0)
    max_self_fences: int = Field(default=2, ge=1)
    self_fence_window: float = Field(default=3600.0, gt=0)
    # A bearer token shared by the agents: their APIs' POST routes and the failsafe calls need it.
    api_token_file: Path | None = None
    # The CA that signed the agents' API certificates (https:// `api`), which the agents (the
    # failsafe calls) and the CLI verify them with; default: the system's CAs.
    api_ca_file: Path | None = None
    # etcd over TLS (https:// endpoints): the CA that signed etcd's certificate (default: the
    # system's), and a client certificate for etcd's --client-cert-auth.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # etcd with authentication enabled: the user, and a file holding its password (mode 0600).
    username: str | None = Field(default=None, min_length=1)
    password_file: Path | None = None

    @field_validator("path", "api_token_file", "api_ca_file", "ca_file", "cert_file", "key_file", "password_file", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (str, Path)):
            return _resolve_path(str(value), info, remote=False)
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for endpoint in value:
            parts = urlsplit(endpoint)
            if parts.username is not None or parts.password is not None:
                # It would be shown wherever the endpoint is named: errors, the journal, the API.
                raise ValueError(f"{parts.hostname}: no credentials in etcd URLs; use username and password_file")
            checked_http_url(endpoint, "etcd URLs", "http://10.0.0.21:2379")
        return value

    @model_validator(mode="after")
    def _store_needs(self) -> LeaseSettings:
        if self.store == "etcd" and not self.endpoints:
            raise ValueError('store = "etcd" needs endpoints = ["http://host:2379", ...]')
        tls_files = [name for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if tls_files and self.store != "etcd":
            raise ValueError(f"{', '.join(tls_files)}: TLS settings are for the etcd store only")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together: etcd's user and the file with its password")
        if self.username is not None and self.store != "etcd":
            raise ValueError("username and password_file are for the etcd store only")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: the client certificate and its private key")
        plain = [e for e in self.endpoints if urlsplit(e).scheme == "http"]
        if tls_files and plain:
            raise ValueError(f"{', '.join(tls_files)} set, but {', '.join(plain)} is plain http; use https:// endpoints")
        if self.loop_wait + 2 * self.retry_timeout >= self.ttl:
            raise ValueError(
                f"loop_wait + 2 * retry_timeout must be less than ttl, got {self.loop_wait:g} + "
                f"2 * {self.retry_timeout:g} >= {self.ttl:g}: a leader that cannot renew must be "
                "able to fence itself before its lease expires; raise ttl or lower the others"
            )
        if self.self_fence_window <= self.rejoin_settle:
            raise ValueError(
                f"self_fence_window = {self.self_fence_window:g} must exceed rejoin_settle = {self.rejoin_settle:g}: "
                "a node that fences itself again soon after a rejoin must still count its earlier fence"
            )
        if self.store == "etcd" and self.ttl < 2:
            raise ValueError(
                f"ttl = {self.ttl:g} is below etcd's minimum lease TTL (about 2 s with etcd's "
                "default election timeout); use ttl >= 2"
            )
        return self


class Inventory(_Strict):
    """The whole file. ``node`` is the TOML array-of-tables name; ``nodes`` reads better in code."""

    validator: Validator
    journal: JournalSettings = Field(default_factory=JournalSettings)
    ssh: SshSettings = Field(default_factory=SshSettings)
    nodes: list[Node] = Field(alias="node", min_length=1)
    lease: LeaseSettings | None = None
    alerts: list[AlertTarget] = Field(default_factory=list, alias="alert")
    timeouts: Timeouts = Field(default_factory=Timeouts)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("journal", mode="before")
    @classmethod
    def _journal_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _unique_names(self) -> Inventory:
        seen: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            if node.name in seen:
                raise ValueError(
                    f"node[{index}].name: duplicate node name {node.name!r} "
                    f"(also node[{seen[node.name]}]); expected a unique name per node"
                )
            seen[node.name] = index
        return self

    @property
    def source(self) -> Path | None:
        """The file this inventory was loaded from."""
        return self._source

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> Node:
        """The node called ``name``; the error lists the names that exist."""
        for node in self.nodes:
            if node.name == name:
                return node
        where = f"{self._source}: " if self._source else ""
        raise UnknownNode(f"{where}no node named {name!r}; known nodes: {', '.join(self.names)}")

    def ssh_for(self, node: Node) -> SshSettings:
        """The node's own ``[node.ssh]`` table, else the file's ``[ssh]`` table."""
        return node.ssh or self.ssh

    def by_priority(self) -> list[Node]:
        """Nodes from the most preferred (highest priority) to the least; ties keep file order."""
        return sorted(self.nodes, key=lambda n: -n.priority)

    @model_validator(mode="after")
    def _homes_apart(self) -> Inventory:
        """Local nodes compared by real path now; SSH nodes lexically here, by the real paths
        their host resolves at preflight and in `check -c`."""
        problems: list[str] = []
        for where, group in nodes_by_machine(self.nodes).items():
            resolve = _local_real_path if where == "local" else PurePosixPath
            problems += layout_problems([NodePaths(n.name, resolve(n.home), resolve(n.key_store)) for n in group], where)
        if problems:
            raise ValueError("; ".join(problems))
        return self


# --- homes and key stores by machine ---------------------------------------------------------------


@dataclass(frozen=True)
class NodePaths:
    """A node's home and key_store as its machine resolves them (symlinks followed)."""

    name: str
    home: PurePosixPath
    key_store: PurePosixPath


def machine_of(node: Node) -> str:
    """Which machine a node is on: "local", or the SSH host and port (the user does not matter)."""
    spec = node.host_spec
    return "local" if spec.kind == "local" else f"{spec.hostname}:{spec.port}"


def nodes_by_machine(nodes: list[Node]) -> dict[str, list[Node]]:
    groups: dict[str, list[Node]] = {}
    for node in nodes:
        groups.setdefault(machine_of(node), []).append(node)
    return groups


def _local_real_path(path: PurePosixPath) -> PurePosixPath:
    return PurePosixPath(os.path.realpath(path))


def layout_problems(nodes: list[NodePaths], machine: str) -> list[str]:
    """Nodes of one machine by real path: a key store inside any node's home would be loaded by
    that neard (a symlink into a home included), and two nodes on one home would share one key."""
    problems = []
    for index, home_owner in enumerate(nodes):
        for staged in nodes:
            if staged.key_store == home_owner.home or home_owner.home in staged.key_store.parents:
                whose = "its own home" if staged is home_owner else f"node {home_owner.name}'s home"
                problems.append(
                    f"node {staged.name}: key_store resolves to {staged.key_store}, inside {whose} "
                    f"{home_owner.home} on {machine}: that neard would load a key staged there; "
                    "put key_store outside every neard home"
                )
        for other in nodes[index + 1 :]:
            if other.home == home_owner.home:
                problems.append(
                    f"nodes {home_owner.name} and {other.name} share the home {other.home} on "
                    f"{machine}: give each node its own neard home"
                )
    return problems


# --- loading -------------------------------------------------------------------------------------


def _loc_text(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """``('node', 1, 'control')`` -> ``node[1].control`` (with the node's name when known)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part:  # pydantic's validator tags, not keys of the file
            continue
        else:
            out += ("." if out else "") + str(part)
    if len(loc) >= 2 and loc[0] == "node" and isinstance(loc[1], int):
        nodes = data.get("node")
        if isinstance(nodes, list) and loc[1] < len(nodes) and isinstance(nodes[loc[1]], dict):
            name = nodes[loc[1]].get("name")
            if isinstance(name, str):
                out += f' (node "{name}")'
    return out or "(top level)"


def _describe(error: Any) -> str:
    """A pydantic error as 'expected ...' wording."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "missing":
        return "missing; this key is required"
    if kind == "extra_forbidden":
        return "unknown key (a typo?); remove it or check the inventory format"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {error.get('input')!r}"
    if kind == "too_short" and error["loc"] == ("node",):
        return "expected at least one [[node]] table"
    return f"{error['msg']}, got {error.get('input')!r}"


def parse_inventory(text: str, source: Path) -> Inventory:
    """Parse inventory text; ``source`` names the file in errors and anchors relative paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or table
        raise InventoryError(f"{source}: not valid TOML: arrays or tables nested too deeply; an inventory needs two levels") from None
    if isinstance(data.get("node"), dict):
        raise InventoryError(f"{source}: node: expected [[node]] tables (an array), got one [node] table")
    try:
        inventory = Inventory.model_validate(
            data, context={"base_dir": str(Path(source).resolve().parent)}
        )
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = _describe(error)
            loc = _loc_text(error["loc"], data)
            if message.startswith("node[") and loc == "(top level)":
                problems.append(f"{source}: {message}")
            else:
                problems.append(f"{source}: {loc}: {message}")
        raise InventoryError("\n".join(problems), problems) from None
    inventory._source = Path(source)
    return inventory


SYSTEM_INVENTORY = Path("/etc/near-failover/inventory.toml")
INVENTORY_ENV = "NEAR_FAILOVER_CONFIG"


def inventory_path(given: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """Which inventory a command uses: ``-c``, else ``$NEAR_FAILOVER_CONFIG``, else the system
    file. An explicit ``-c`` is returned as given (its loader names it if it is missing); else the
    first place set is used only if it exists, so a stale variable never falls through to another
    inventory. The text says what each place held, for the error when none is usable."""
    if given is not None:
        return given, ""
    from_env = environ.get(INVENTORY_ENV, "").strip()
    chosen = Path(os.path.expanduser(from_env)) if from_env else SYSTEM_INVENTORY
    env_text = f"${INVENTORY_ENV} names {from_env}, which does not exist" if from_env else f"${INVENTORY_ENV} is not set"
    system_text = f"{SYSTEM_INVENTORY} {'is not read while it is set' if from_env else 'does not exist'}"
    if chosen.exists():
        return chosen, ""
    return None, f"-c was not given, {env_text}, {system_text}"


def load_inventory(path: Path | str) -> Inventory:
    """Read and validate the inventory file at ``path``."""
    path = Path(os.path.expanduser(str(path)))
    try:
        text = read_regular_text(path, INVENTORY)
    except FileNotFoundError:
        raise InventoryError(f"{path}: inventory file not found; pass the path with -c") from None
    except FileRejected as exc:
        raise InventoryError(f"{path}: {exc.strerror}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from None
    return parse_inventory(text, path)


def read_secret_file(path: Path, setting: str) -> str:
    """A secret the inventory points at (API token, etcd password): one line, readable by its
    owner only, like a key file. The error names the setting and the file, never the content."""
    try:
        mode = path.stat().st_mode
        text = read_regular_text(path, SECRET_FILE).strip()
    except UnicodeDecodeError:
        raise InventoryError(f"[lease] {setting} {path}: not UTF-8 text; put the secret on one line") from None
    except OSError as exc:
        raise InventoryError(f"[lease] {setting} {path}: cannot read it ({exc.strerror or exc}); create it with the secret on one line, mode 0600") from None
    if mode & 0o077:
        raise InventoryError(f"[lease] {setting} {path}: readable by others (mode {mode & 0o777:o}); run chmod 600 {path}")
    if not text:
        raise InventoryError(f"[lease] {setting} {path}: the file is empty; put the secret on its first line")
    return text
