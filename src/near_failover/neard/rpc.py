"""Async client for one neard's JSON-RPC and plain HTTP routes.

Every call has a deadline, and every failure becomes an `RpcError` that names the node, says
what went wrong in plain words and hints at the fix: callers (checks, procedures, the agent)
print it as is and never see a raw httpx, json or pydantic exception.

The models are lenient (unknown fields ignored, fields that differ between neard versions
optional) because one tool must read 2.4 nodes and 2.13 nodes alike (neard-behaviour §4).
Transport rules (HTTP status per outcome) follow neard-behaviour §4.1, error shapes §4.6.
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    RootModel,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from near_failover.http_limits import BoundedAsyncClient, ResponseTooLarge
from near_failover.limits import RPC_ANSWER_BYTES
from near_failover.neard.metrics import Metrics, MetricsParseError, parse_metrics
from near_failover.urls import checked_http_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "FINALITIES",
    "BlockHeader",
    "BlockResponse",
    "CallTarget",
    "ChunkHeader",
    "ClientConfig",
    "CurrentValidator",
    "Kickout",
    "KnownProducer",
    "MaintenanceWindow",
    "MaintenanceWindows",
    "MalformedResponse",
    "MethodNotFound",
    "Metrics",
    "NeardRpc",
    "NetworkInfo",
    "NextValidator",
    "NoNewBlocks",
    "NodeSyncing",
    "NodeUnreachable",
    "PeerInfo",
    "RpcError",
    "RpcHandlerError",
    "RpcHttpError",
    "RpcTimeout",
    "StatusResponse",
    "StatusValidator",
    "SyncInfo",
    "ValidatorStake",
    "ValidatorsResponse",
    "Version",
    "interpret_rpc_body",
    "parse_rfc3339_ns",
]

DEFAULT_TIMEOUT = 5.0
FINALITIES = ("optimistic", "near-final", "final")  # openapi `Finality`
_EXCERPT_CHARS = 160

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallTarget:
    """Who we talked to and about what: every RpcError message is built from it."""

    node: str  # the node's name, or its URL when it has none
    url: str
    what: str  # e.g. "JSON-RPC `status`" or "GET /health"
    timeout: float

    @property
    def label(self) -> str:
        return f"node {self.node} ({self.url})" if self.node != self.url else f"node at {self.url}"


class RpcError(Exception):
    """A call to neard failed. `str()` names the node, the cause and a hint."""

    def __init__(self, target: CallTarget, cause: str, hint: str | None = None) -> None:
        self.node = target.node
        self.url = target.url
        self.what = target.what
        self.cause = cause
        self.hint = hint
        message = f"{target.label}: {target.what}: {cause}"
        if hint:
            message += f". Hint: {hint}"
        super().__init__(message)


class NodeUnreachable(RpcError):
    """No HTTP conversation was possible: connection refused, DNS failure, connection reset."""


class RpcTimeout(RpcError):
    """No complete answer within the deadline (ours, or neard's own TIMEOUT_ERROR / HTTP 408)."""

    def __init__(self, target: CallTarget, cause: str, hint: str | None = None) -> None:
        self.timeout = target.timeout
        super().__init__(target, cause, hint)


class RpcHandlerError(RpcError):
    """neard answered with a JSON-RPC error object (neard-behaviour §4.6)."""

    def __init__(
        self,
        target: CallTarget,
        cause: str,
        hint: str | None = None,
        *,
        name: str | None = None,
        cause_name: str | None = None,
        info: dict[str, Any] | None = None,
        data: Any = None,
        code: int | None = None,
        http_status: int | None = None,
    ) -> None:
        self.name = name  # REQUEST_VALIDATION_ERROR | HANDLER_ERROR | INTERNAL_ERROR
        self.cause_name = cause_name  # e.g. NODE_IS_SYNCING, UNKNOWN_EPOCH, METHOD_NOT_FOUND
        self.info = info
        self.data = data
        self.code = code
        self.http_status = http_status
        super().__init__(target, cause, hint)


class NodeSyncing(RpcHandlerError):
    """NODE_IS_SYNCING: the node is catching up and cannot be trusted for chain facts."""


class NoNewBlocks(RpcHandlerError):
    """NO_NEW_BLOCKS: the head is older than 10 x max_block_production_delay (§4.3)."""

    def __init__(self, *args: Any, elapsed_seconds: float | None = None, **kwargs: Any) -> None:
        self.elapsed_seconds = elapsed_seconds
        super().__init__(*args, **kwargs)


class MethodNotFound(RpcHandlerError):
    """METHOD_NOT_FOUND (HTTP 400): this neard does not serve the method (too old?)."""


class RpcHttpError(RpcError):
    """An HTTP status that is not a JSON-RPC answer (e.g. 503 from GET /health, 502 proxy)."""

    def __init__(
        self, target: CallTarget, status: int, cause: str, hint: str | None = None
    ) -> None:
        self.status = status
        super().__init__(target, cause, hint)


class MalformedResponse(RpcError):
    """The answer is not what neard sends: not HTTP, not JSON, or not the expected shape."""


_HINT_NOT_NEARD = (
    "is this neard's RPC address (rpc.addr in config.json, default port 3030)? "
    "a proxy or another service may be answering"
)

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class _Lenient(BaseModel):
    """Unknown fields are ignored: newer neard adds fields, and that must not break us."""

    model_config = ConfigDict(extra="ignore")


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339_ns(text: str) -> int:
    """Unix time in nanoseconds from neard's RFC 3339 time with up to 9 fraction digits.

    datetime.fromisoformat drops the digits past microseconds; head-age checks at 0.6 s
    block times do not need them, but keeping them exact costs nothing.
    """
    match = _RFC3339.match(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError(f"not a valid date/time: {text!r}")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    nanos = int((fraction or "0").ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


class Version(_Lenient):
    version: str
    build: str = ""
    commit: str | None = None  # absent before ~2.5 (genuine 2.4.0-rc.1 example has none)
    rustc_version: str = ""


class StatusValidator(_Lenient):
    account_id: str
    is_slashed: bool | None = None  # only nodes built before April 2025 (#13340), §4.2


class SyncInfo(_Lenient):
    latest_block_hash: str
    latest_block_height: int
    latest_state_root: str | None = None
    latest_block_time: str
    syncing: bool
    earliest_block_hash: str | None = None
    earliest_block_height: int | None = None
    earliest_block_time: str | None = None
    epoch_id: str | None = None
    epoch_start_height: int | None = None

    @field_validator("latest_block_time")
    @classmethod
    def _time_parses(cls, value: str) -> str:
        parse_rfc3339_ns(value)
        return value

    @property
    def latest_block_time_ns(self) -> int:
        """Head block time as Unix nanoseconds (to compute the head's age)."""
        return parse_rfc3339_ns(self.latest_block_time)


class StatusResponse(_Lenient):
    """`status` / `GET /status` (neard-behaviour §4.2)."""

    version: Version
    chain_id: str
    protocol_version: int | None = None
    latest_protocol_version: int | None = None
    rpc_addr: str | None = None
    validators: list[StatusValidator] = Field(default_factory=list)
    sync_info: SyncInfo
    validator_account_id: str | None = None  # from the hot-swappable signer; None = no key
    validator_public_key: str | None = None
    node_public_key: str | None = None
    node_key: str | None = None  # deprecated alias of validator_public_key
    uptime_sec: int | None = None
    genesis_hash: str | None = None


def _token_to_str(value: Any) -> Any:
    """NearToken is a yoctoNEAR decimal string; tolerate a bare integer too."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


YoctoNear = Annotated[str, BeforeValidator(_token_to_str), StringConstraints(pattern=r"^[0-9]+$")]


class CurrentValidator(_Lenient):
    """One entry of `validators.current_validators` (neard-behaviour §4.4)."""

    account_id: str
    public_key: str
    is_slashed: bool = False  # always false today; kept for older nodes
    stake: YoctoNear
    shards: list[int] = Field(default_factory=list)  # chunk-producer shards
    shards_endorsed: list[int] = Field(default_factory=list)  # chunk-validator shards, 2026+
    num_produced_blocks: int = 0
    num_expected_blocks: int = 0
    num_produced_chunks: int = 0
    num_expected_chunks: int = 0
    num_produced_chunks_per_shard: list[int] = Field(default_factory=list)
    num_expected_chunks_per_shard: list[int] = Field(default_factory=list)
    num_produced_endorsements: int = 0
    num_expected_endorsements: int = 0
    num_produced_endorsements_per_shard: list[int] = Field(default_factory=list)
    num_expected_endorsements_per_shard: list[int] = Field(default_factory=list)

    @property
    def stake_yocto(self) -> int:
        return int(self.stake)


class NextValidator(_Lenient):
    account_id: str
    public_key: str
    stake: YoctoNear
    shards: list[int] = Field(default_factory=list)


class ValidatorStake(_Lenient):
    """`ValidatorStakeView` (proposals, fishermen)."""

    account_id: str
    public_key: str
    stake: YoctoNear
    validator_stake_struct_version: str | None = None


class Kickout(_Lenient):
    """`prev_epoch_kickout` entry; `reason` is externally tagged ("Unstaked" or {"X": {...}})."""

    account_id: str
    reason: str | dict[str, Any]

    @property
    def reason_name(self) -> str:
        if isinstance(self.reason, str):
            return self.reason
        return next(iter(self.reason), "")

    @property
    def reason_info(self) -> dict[str, Any]:
        if isinstance(self.reason, dict) and self.reason:
            info = next(iter(self.reason.values()))
            return info if isinstance(info, dict) else {"value": info}
        return {}


class ValidatorsResponse(_Lenient):
    """`validators` result (`EpochValidatorInfo`, neard-behaviour §4.4)."""

    current_validators: list[CurrentValidator]
    next_validators: list[NextValidator] = Field(default_factory=list)
    current_fishermen: list[ValidatorStake] = Field(default_factory=list)
    next_fishermen: list[ValidatorStake] = Field(default_factory=list)
    current_proposals: list[ValidatorStake] = Field(default_factory=list)
    prev_epoch_kickout: list[Kickout] = Field(default_factory=list)
    epoch_start_height: int
    epoch_height: int | None = None
    validator_reward_paid_prev_epoch: dict[str, str] = Field(default_factory=dict)  # #15617

    def find_current(self, account_id: str) -> CurrentValidator | None:
        return next((v for v in self.current_validators if v.account_id == account_id), None)

    def find_next(self, account_id: str) -> NextValidator | None:
        return next((v for v in self.next_validators if v.account_id == account_id), None)

    def find_kickout(self, account_id: str) -> Kickout | None:
        return next((k for k in self.prev_epoch_kickout if k.account_id == account_id), None)


class PeerInfo(_Lenient):
    id: str
    addr: str | None = None
    account_id: str | None = None


class KnownProducer(_Lenient):
    account_id: str
    addr: str | None = None
    peer_id: str
    next_hops: list[str] | None = None


class NetworkInfo(_Lenient):
    """`network_info` / `GET /network_info` (neard-behaviour §4.5)."""

    active_peers: list[PeerInfo]
    num_active_peers: int
    peer_max_count: int | None = None
    sent_bytes_per_sec: int | None = None
    received_bytes_per_sec: int | None = None
    known_producers: list[KnownProducer] = Field(default_factory=list)


class ClientConfig(BaseModel):
    """`client_config`: the ClientConfig the running process uses (neard-behaviour §4.5).

    Every field is kept (`raw`, item access), because which fields exist differs by version;
    `tracked_shards_config` is the effective tracking in neard's external-tagging JSON, e.g.
    "AllShards" or {"ShadowValidator": "pool.poolv1.near"}. It is None on nodes old enough to
    report only legacy fields (`tracked_shards`, ...), which stay readable through `raw`.
    """

    model_config = ConfigDict(extra="allow")

    chain_id: str | None = None
    archive: bool | None = None
    tracked_shards_config: str | dict[str, Any] | None = None
    epoch_length: int | None = None
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: Any) -> ClientConfig:
        model = handler(data)
        if isinstance(data, dict):
            model._raw = copy.deepcopy(data)
        return model

    @property
    def raw(self) -> dict[str, Any]:
        """The result exactly as neard sent it (a copy), key order kept."""
        return copy.deepcopy(self._raw)

    def __getitem__(self, key: str) -> Any:
        return self._raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def get(self, key: str, default: Any = None) -> Any:
        return self._raw.get(key, default)

    def keys(self) -> list[str]:
        return list(self._raw)


class BlockHeader(_Lenient):
    height: int
    hash: str
    prev_hash: str | None = None
    prev_height: int | None = None
    epoch_id: str
    next_epoch_id: str | None = None
    timestamp: int | None = None
    timestamp_nanosec: str | None = None
    last_final_block: str | None = None
    last_ds_final_block: str | None = None
    chunk_mask: list[bool] = Field(default_factory=list)
    chunks_included: int | None = None
    latest_protocol_version: int | None = None
    approvals: list[str | None] = Field(default_factory=list)

    @property
    def timestamp_ns(self) -> int | None:
        if self.timestamp_nanosec is not None:
            return int(self.timestamp_nanosec)
        return self.timestamp


class ChunkHeader(_Lenient):
    chunk_hash: str
    shard_id: int
    height_created: int
    height_included: int
    prev_block_hash: str | None = None


class BlockResponse(_Lenient):
    """`block` (neard-behaviour §4.5)."""

    author: str
    header: BlockHeader
    chunks: list[ChunkHeader] = Field(default_factory=list)


class MaintenanceWindow(_Lenient):
    """openapi `Range_of_uint64`: heights [start, end) with no duty for the account."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)


class MaintenanceWindows(RootModel[list[MaintenanceWindow]]):
    """The whole `maintenance_windows` result: a list of ranges."""


_M = TypeVar("_M", bound=BaseModel)

# --------------------------------------------------------------------------------------------
# Interpreting answers (pure)
# --------------------------------------------------------------------------------------------


def _excerpt(body: bytes) -> str:
    if not body.strip():
        return "(empty body)"
    text = " ".join(body.decode("utf-8", errors="replace").split())
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "..."
    return repr(text)


def _decode_json(target: CallTarget, body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedResponse(target, "the answer is not UTF-8 text", _HINT_NOT_NEARD) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise MalformedResponse(
            target, f"the answer is not valid JSON ({detail}): {_excerpt(body)}", _HINT_NOT_NEARD
        ) from None


def _summarise_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _validate(target: CallTarget, model: type[_M], value: Any) -> _M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise MalformedResponse(
            target,
            f"the result does not have the shape of {model.__name__}: {_summarise_validation(exc)}",
            "is this neard's RPC address, and a neard version near-failover supports?",
        ) from None


def _elapsed_seconds(value: Any) -> float | None:
    """`info.elapsed` is a [secs, nanos] pair (time crate serde), neard-behaviour §4.3."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0] + value[1] / 1e9
    if isinstance(value, dict) and isinstance(value.get("secs"), int):
        nanos = value.get("nanos", 0)
        return value["secs"] + (nanos if isinstance(nanos, int) else 0) / 1e9
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _error_from_object(target: CallTarget, error: Any, http_status: int) -> RpcError:
    """Turn neard's JSON-RPC `error` object into the matching exception (§4.6)."""
    if not isinstance(error, dict):
        return RpcHandlerError(
            target, f"neard answered with an error: {error!r:.200}", data=error,
            http_status=http_status,
        )
    name = error.get("name") if isinstance(error.get("name"), str) else None
    cause = error.get("cause")
    cause_name = cause.get("name") if isinstance(cause, dict) else None
    cause_name = cause_name if isinstance(cause_name, str) else None
    info = cause.get("info") if isinstance(cause, dict) else None
    info = info if isinstance(info, dict) else None
    data = error.get("data")
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    fields: dict[str, Any] = dict(
        name=name, cause_name=cause_name, info=info, data=data, code=code, http_status=http_status
    )

    if cause_name == "NODE_IS_SYNCING":
        return NodeSyncing(
            target,
            "the node is syncing (NODE_IS_SYNCING)",
            "wait until `status` shows syncing=false; a syncing node cannot take over validation",
            **fields,
        )
    if cause_name == "NO_NEW_BLOCKS":
        elapsed = _elapsed_seconds((info or {}).get("elapsed"))
        since = f"for {elapsed:.1f} s " if elapsed is not None else ""
        return NoNewBlocks(
            target,
            f"the node has received no new block {since}(NO_NEW_BLOCKS)",
            "its head is older than 10 x max_block_production_delay (neard-behaviour §4.3): "
            "check its peers, its clock and its logs",
            elapsed_seconds=elapsed,
            **fields,
        )
    if cause_name == "TIMEOUT_ERROR" or http_status == 408:
        return RpcTimeout(
            target,
            f"neard's handler timed out (HTTP {http_status}, {cause_name or name or 'timeout'})",
            "the node is overloaded or stuck; retry later",
        )
    if cause_name == "METHOD_NOT_FOUND" or code == -32601:
        method = (info or {}).get("method_name") or (data if isinstance(data, str) else None)
        return MethodNotFound(
            target,
            f"neard does not know the method {method or '(unnamed)'} (METHOD_NOT_FOUND, "
            f"HTTP {http_status})",
            "this neard may be too old for this call (see `status` version), "
            "or the URL may not point at neard's RPC",
            **fields,
        )
    if cause_name == "PARSE_ERROR" or name == "REQUEST_VALIDATION_ERROR":
        detail = (info or {}).get("error_message") or data
        return RpcHandlerError(
            target,
            f"neard rejected the request ({cause_name or name}, HTTP {http_status}): {detail}",
            "this neard version may expect other parameters for this method",
            **fields,
        )
    if name == "INTERNAL_ERROR" or cause_name == "INTERNAL_ERROR":
        detail = (info or {}).get("error_message") or data or message
        return RpcHandlerError(
            target,
            f"neard had an internal error (INTERNAL_ERROR, HTTP {http_status}): {detail}",
            "'Timeout', 'Closed' or 'Dropped' mean its client actor did not answer: the node is "
            "overloaded, stuck or shutting down (neard-behaviour §4.3)",
            **fields,
        )
    detail_parts = [p for p in (cause_name, name) if p]
    summary = " / ".join(detail_parts) or (message or "unnamed error")
    extra = info if info else data
    return RpcHandlerError(
        target,
        f"neard answered with an error: {summary}" + (f" ({extra!s:.200})" if extra else ""),
        None,
        **fields,
    )


def interpret_rpc_body(target: CallTarget, http_status: int, body: bytes) -> Any:
    """The `result` of a JSON-RPC answer, or the RpcError it stands for (neard-behaviour §4.1).

    neard answers 200 on success and on handler errors, 400 on request-validation errors,
    408 on TIMEOUT_ERROR and 500 on INTERNAL_ERROR, each with a JSON-RPC body. Anything
    else (an empty 503, an HTML page from a proxy) is reported by its HTTP status.
    """
    if http_status != 200:
        try:
            envelope = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            envelope = None
        if isinstance(envelope, dict) and isinstance(envelope.get("error"), dict):
            raise _error_from_object(target, envelope["error"], http_status)
        if http_status == 408:
            raise RpcTimeout(
                target, f"neard's handler timed out (HTTP 408): {_excerpt(body)}",
                "the node is overloaded or stuck; retry later",
            )
        raise RpcHttpError(
            target, http_status, f"HTTP {http_status} instead of a JSON-RPC answer: "
            f"{_excerpt(body)}", _HINT_NOT_NEARD,
        )
    envelope = _decode_json(target, body)
    if not isinstance(envelope, dict):
        raise MalformedResponse(
            target, f"the answer is JSON but not a JSON-RPC object: {_excerpt(body)}",
            _HINT_NOT_NEARD,
        )
    if envelope.get("error") is not None:
        raise _error_from_object(target, envelope["error"], http_status)
    if "result" not in envelope:
        raise MalformedResponse(
            target, f"the answer has neither `result` nor `error`: {_excerpt(body)}",
            _HINT_NOT_NEARD,
        )
    return envelope["result"]


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


class NeardRpc:
    """One neard's RPC endpoint. Use as `async with NeardRpc(url, name) as rpc: ...`.

    `timeout` bounds each call as a whole (connect, send, every read and the total), so a
    node that trickles bytes cannot hold a caller past it. Proxy variables in the
    environment are ignored: neard's RPC is reached directly, and an http_proxy meant for the
    internet must not intercept 127.0.0.1 or a private address.
    """

    def __init__(self, url: str, name: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        # http(s), a host, no credentials; a refusal shows the URL redacted.
        checked_http_url(str(url), f"node {name or '?'}'s RPC URL", "http://127.0.0.1:3030")
        if not timeout > 0:
            raise ValueError(f"timeout for node {name or url} must be > 0 seconds, got {timeout}")
        self.url = url.rstrip("/")
        self.name = name
        self.timeout = float(timeout)
        self._ids = itertools.count(1)
        self._client = BoundedAsyncClient(
            max_response_bytes=RPC_ANSWER_BYTES,
            timeout=httpx.Timeout(self.timeout), follow_redirects=False, trust_env=False,
        )

    def __repr__(self) -> str:
        return f"NeardRpc(url={self.url!r}, name={self.name!r}, timeout={self.timeout})"

    async def __aenter__(self) -> NeardRpc:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- transport ---------------------------------------------------------------------

    def _target(self, what: str) -> CallTarget:
        return CallTarget(node=self.name or self.url, url=self.url, what=what, timeout=self.timeout)

    async def _request(
        self, target: CallTarget, method: str, path: str, **kw: Any
    ) -> httpx.Response:
        """One HTTP exchange within the deadline; transport failures become RpcErrors."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._client.request(method, self.url + path, **kw)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise RpcTimeout(
                target,
                f"no complete answer within {self.timeout:g} s ({type(exc).__name__})",
                "neard may be overloaded, stuck, or still loading memtries after a restart "
                "(neard-behaviour §6); check the node, or raise the timeout",
            ) from exc
        except httpx.ConnectError as exc:
            raise NodeUnreachable(target, *_connect_failure(exc, self.url)) from exc
        except ResponseTooLarge as exc:
            raise MalformedResponse(target, str(exc), _HINT_NOT_NEARD) from exc
        except httpx.RemoteProtocolError as exc:
            text = str(exc)
            if "disconnected" in text.lower():
                raise NodeUnreachable(
                    target, f"the connection closed without an answer ({text})",
                    "neard may have crashed or be restarting; check the process and its logs",
                ) from exc
            raise MalformedResponse(
                target, f"the answer is not valid HTTP ({text})", _HINT_NOT_NEARD
            ) from exc
        except httpx.NetworkError as exc:
            # A peer that closes with unread request bytes sends a reset (ReadError) rather
            # than a clean close (RemoteProtocolError above): same meaning for us.
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, httpx.WriteError):
                cause = f"the connection broke while sending the request ({detail})"
            else:
                cause = f"the connection closed without an answer ({detail})"
            raise NodeUnreachable(
                target, cause,
                "neard may have crashed or be restarting; check the process and its logs",
            ) from exc
        except httpx.HTTPError as exc:
            raise RpcError(target, f"HTTP failure ({type(exc).__name__}: {exc})") from exc

    async def call(self, method: str, params: Any = None) -> Any:
        """Raw JSON-RPC call: the `result` value, or the matching RpcError."""
        target = self._target(f"JSON-RPC `{method}`")
        payload = {"jsonrpc": "2.0", "id": f"near-failover-{next(self._ids)}",
                   "method": method, "params": params}
        response = await self._request(target, "POST", "/", json=payload)
        return interpret_rpc_body(target, response.status_code, response.content)

    async def _get(self, path: str, unavailable_hint: str) -> tuple[CallTarget, bytes]:
        """GET a plain route; 200 gives the body, anything else an RpcHttpError."""
        target = self._target(f"GET {path}")
        response = await self._request(target, "GET", path)
        if response.status_code == 200:
            return target, response.content
        if response.status_code == 503:
            raise RpcHttpError(target, 503, f"HTTP 503 {_excerpt(response.content)}",
                               unavailable_hint)
        raise RpcHttpError(
            target, response.status_code,
            f"HTTP {response.status_code} {_excerpt(response.content)}", _HINT_NOT_NEARD,
        )

    # ---- JSON-RPC methods --------------------------------------------------------------

    async def status(self) -> StatusResponse:
        target = self._target("JSON-RPC `status`")
        return _validate(target, StatusResponse, await self.call("status", None))

    async def health(self) -> None:
        """Returns if healthy; raises NodeSyncing / NoNewBlocks / ... otherwise (§4.3)."""
        await self.call("health", None)

    async def validators(
        self, block: int | str | None = None, *, epoch_id: str | None = None
    ) -> ValidatorsResponse:
        """Validators of the latest epoch (default), the epoch of a block, or an epoch id.

        Params per neard-behaviour §4.4: `[null]`, `[height]`, `{"block_id": hash}`,
        `{"epoch_id": hash}`.
        """
        params: Any
        if epoch_id is not None:
            if block is not None:
                raise ValueError("validators(): give a block or an epoch_id, not both")
            params = {"epoch_id": epoch_id}
        elif block is None:
            params = [None]
        elif isinstance(block, bool) or not isinstance(block, (int, str)):
            raise TypeError(f"validators(): block must be a height or a hash, got {block!r}")
        elif isinstance(block, int):
            params = [block]
        else:
            params = {"block_id": block}
        target = self._target("JSON-RPC `validators`")
        return _validate(target, ValidatorsResponse, await self.call("validators", params))

    async def network_info(self) -> NetworkInfo:
        target = self._target("JSON-RPC `network_info`")
        return _validate(target, NetworkInfo, await self.call("network_info", None))

    async def client_config(self) -> ClientConfig:
        """The running process's ClientConfig: what it really tracks, not what the file says."""
        target = self._target("JSON-RPC `client_config`")
        result = await self.call("client_config", None)
        if not isinstance(result, dict):
            raise MalformedResponse(
                target, f"the result is not an object: {str(result)[:100]!r}", _HINT_NOT_NEARD
            )
        return _validate(target, ClientConfig, result)

    async def block(
        self, finality: str = "final", *, block_id: int | str | None = None
    ) -> BlockResponse:
        if block_id is not None:
            params: dict[str, Any] = {"block_id": block_id}
        elif finality in FINALITIES:
            params = {"finality": finality}
        else:
            raise ValueError(f"block(): finality must be one of {FINALITIES}, got {finality!r}")
        target = self._target("JSON-RPC `block`")
        return _validate(target, BlockResponse, await self.call("block", params))

    async def maintenance_windows(self, account_id: str) -> list[tuple[int, int]]:
        """Height ranges [start, end) in this epoch where `account_id` has no duty.

        The result is a list of `Range_of_uint64` objects {"start", "end"} (openapi). Nodes
        that predate the stable name only serve `EXPERIMENTAL_maintenance_windows`.
        """
        params = {"account_id": account_id}
        try:
            result = await self.call("maintenance_windows", params)
            what = "JSON-RPC `maintenance_windows`"
        except MethodNotFound:
            result = await self.call("EXPERIMENTAL_maintenance_windows", params)
            what = "JSON-RPC `EXPERIMENTAL_maintenance_windows`"
        windows = _validate(self._target(what), MaintenanceWindows, result).root
        return [(w.start, w.end) for w in windows]

    # ---- plain HTTP routes (neard-behaviour §4.1) ------------------------------------

    async def status_http(self) -> StatusResponse:
        """`GET /status`: the status without a JSON-RPC envelope; 503 when neard cannot say."""
        target, body = await self._get(
            "/status", "neard could not produce its status (busy or shutting down); retry"
        )
        return _validate(target, StatusResponse, _decode_json(target, body))

    async def health_http(self) -> None:
        """`GET /health`: returns if 200, raises RpcHttpError(503) when unhealthy."""
        await self._get(
            "/health",
            "the node is syncing or has had no new block recently (neard-behaviour §4.3); "
            "call the JSON-RPC `health` for the reason",
        )

    async def network_info_http(self) -> NetworkInfo:
        target, body = await self._get("/network_info", "neard could not answer; retry")
        return _validate(target, NetworkInfo, _decode_json(target, body))

    async def metrics(self, only: Iterable[str] | None = None) -> Metrics:
        """`GET /metrics`, parsed with prometheus_client's parser (only the families ``only``
        names, when given)."""
        target, body = await self._get("/metrics", "neard could not export metrics; retry")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedResponse(target, "the metrics are not UTF-8 text",
                                    _HINT_NOT_NEARD) from None
        try:
            return parse_metrics(text, only)
        except MetricsParseError as exc:
            raise MalformedResponse(target, f"{exc}: {_excerpt(body)}", _HINT_NOT_NEARD) from None


def _connect_failure(exc: httpx.ConnectError, url: str) -> tuple[str, str]:
    """Plain words and a hint for a failed connect, from the OS error underneath."""
    text = str(exc) or type(exc).__name__
    refused = False
    inner: BaseException | None = exc
    for _ in range(6):  # bounded walk down the exception chain to the OS error
        inner = inner.__cause__ or inner.__context__ if inner is not None else None
        refused = refused or isinstance(inner, ConnectionRefusedError)
    lowered = text.lower()
    if refused or "refused" in lowered:
        return (f"connection refused ({text})", "is neard running? is rpc.addr right?")
    if "name or service not known" in lowered or "nodename nor servname" in lowered or (
        "temporary failure in name resolution" in lowered
    ) or "getaddrinfo" in lowered:
        return (f"the host name does not resolve ({text})", f"check the host in {url}")
    return (f"cannot connect ({text})",
            "is neard running? is rpc.addr right? is a firewall in the way?")
