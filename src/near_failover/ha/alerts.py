"""Webhook notifications: every role change, refused promotion and self-fence reaches a human.

An alert must never make things worse: sending never raises into the agent (failures are logged
and returned), every request has a timeout, and nothing secret leaves the process: no key
material in a message, and the webhook URLs themselves (Slack and Telegram put their token in
the URL) appear in logs and errors only as scheme://host.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from near_failover.limits import WEBHOOK_ANSWER_BYTES, BoundedAsyncClient
from near_failover.redact import REDACTED, redact_record, redact_text, url_origin

log = structlog.get_logger(__name__)

TELEGRAM_TEXT_LIMIT = 4096


class AlertTarget(BaseModel):
    """One ``[[alert]]`` table of the inventory: where and in which format to send alerts.

    ``kind = "telegram"``: ``url`` is the bot's ``https://api.telegram.org/bot<token>/sendMessage``
    (or the same without ``/sendMessage``) and ``chat_id`` is required.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["json", "slack", "telegram"]
    url: str = Field(repr=False)
    chat_id: str | None = None
    timeout: float = Field(default=5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
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

    @model_validator(mode="after")
    def _kind_needs(self) -> AlertTarget:
        if self.kind == "telegram" and not self.chat_id:
            raise ValueError('kind = "telegram" needs chat_id = "<chat id or @channel>"')
        if self.kind != "telegram" and self.chat_id is not None:
            raise ValueError('chat_id is used only with kind = "telegram"')
        return self

    @property
    def redacted_url(self) -> str:
        """scheme://host[:port] only: what logs and errors may show of the URL."""
        return url_origin(self.url)

    @property
    def post_url(self) -> str:
        if self.kind == "telegram" and not self.url.rstrip("/").endswith("/sendMessage"):
            return self.url.rstrip("/") + "/sendMessage"
        return self.url

    def label(self) -> str:
        return f"{self.kind} {self.redacted_url}"


class AlertKind(StrEnum):
    ROLE_CHANGE = "role_change"
    PROMOTION_REFUSED = "promotion_refused"
    SELF_FENCE = "self_fence"


@dataclass(frozen=True)
class AlertEvent:
    """What happened, to whom, and why; built with the class methods below."""

    kind: AlertKind
    account_id: str
    node: str
    reason: str
    generation: int | None = None
    old_role: str | None = None
    new_role: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def role_change(
        cls, account_id: str, node: str, old_role: str, new_role: str, *, reason: str,
        generation: int | None = None, details: Mapping[str, Any] | None = None,
    ) -> AlertEvent:
        return cls(AlertKind.ROLE_CHANGE, account_id, node, reason, generation, old_role,
                   new_role, dict(details or {}))

    @classmethod
    def promotion_refused(
        cls, account_id: str, node: str, *, reason: str, generation: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AlertEvent:
        return cls(AlertKind.PROMOTION_REFUSED, account_id, node, reason, generation,
                   details=dict(details or {}))

    @classmethod
    def self_fence(
        cls, account_id: str, node: str, *, reason: str, generation: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AlertEvent:
        return cls(AlertKind.SELF_FENCE, account_id, node, reason, generation,
                   details=dict(details or {}))


def event_text(event: AlertEvent) -> str:
    """One human-readable message (Slack, Telegram, and the ``text`` of the JSON body)."""
    generation = f" (lease generation {event.generation})" if event.generation is not None else ""
    if event.kind is AlertKind.ROLE_CHANGE:
        what = f"role {event.old_role} -> {event.new_role}{generation}"
    elif event.kind is AlertKind.PROMOTION_REFUSED:
        what = f"promotion refused{generation}"
    else:
        what = f"fenced itself{generation}"
    lines = [f"near-failover: {event.account_id}: node {event.node}: {what}", f"reason: {event.reason}"]
    lines += [f"{k}: {v}" for k, v in redact_record(dict(event.details)).items()]
    lines.append(f"at: {event.at.isoformat(timespec='seconds')}")
    return redact_text("\n".join(lines))


def json_body(event: AlertEvent) -> dict[str, Any]:
    """The generic JSON body: machine-readable fields plus the same ``text`` humans get."""
    body = {
        "source": "near-failover",
        "event": event.kind.value,
        "account_id": event.account_id,
        "node": event.node,
        "old_role": event.old_role,
        "new_role": event.new_role,
        "generation": event.generation,
        "reason": event.reason,
        "details": dict(event.details),
        "at": event.at.isoformat(),
    }
    body = redact_record(body)
    body["text"] = event_text(event)
    return body


def request_for(target: AlertTarget, event: AlertEvent) -> dict[str, Any]:
    """The httpx request arguments (json= or data=) for ``target``'s format."""
    if target.kind == "json":
        return {"json": json_body(event)}
    text = event_text(event)
    if target.kind == "slack":
        return {"json": {"text": text}}
    if len(text) > TELEGRAM_TEXT_LIMIT:
        text = text[: TELEGRAM_TEXT_LIMIT - 1] + "…"
    return {"data": {"chat_id": target.chat_id, "text": text, "disable_web_page_preview": "true"}}


@dataclass(frozen=True)
class AlertResult:
    """The outcome for one target; ``error`` never contains the URL's secret parts."""

    target: str
    ok: bool
    status: int | None = None
    error: str | None = None


class AlertSender:
    """Sends each event to every target at once; never raises (an alert must not stop a fence)."""

    def __init__(
        self, targets: Sequence[AlertTarget], client: httpx.AsyncClient | None = None
    ) -> None:
        self.targets = list(targets)
        self._client = client or BoundedAsyncClient(
            max_response_bytes=WEBHOOK_ANSWER_BYTES, trust_env=False, follow_redirects=False
        )
        self._own_client = client is None

    async def notify(self, event: AlertEvent) -> list[AlertResult]:
        if not self.targets:
            return []
        return list(await asyncio.gather(*(self._send(t, event) for t in self.targets)))

    async def _send(self, target: AlertTarget, event: AlertEvent) -> AlertResult:
        label = target.label()
        try:
            response = await self._client.post(
                target.post_url, timeout=target.timeout, **request_for(target, event)
            )
        except httpx.TimeoutException:
            return self._failed(target, event, None, f"no answer within {target.timeout:g}s")
        except Exception as exc:  # an alert must never break the agent that sends it
            return self._failed(target, event, None, _safe_error(target, exc))
        if not 200 <= response.status_code < 300:
            return self._failed(
                target, event, response.status_code,
                f"HTTP {response.status_code}: {_safe_body(target, response)}",
            )
        if target.kind == "telegram" and not _telegram_ok(response):
            return self._failed(
                target, event, response.status_code, f"Telegram refused: {_safe_body(target, response)}"
            )
        log.info("alert sent", target=label, alert=event.kind.value, node=event.node)
        return AlertResult(label, True, response.status_code)

    def _failed(
        self, target: AlertTarget, event: AlertEvent, status: int | None, error: str
    ) -> AlertResult:
        log.warning("alert not delivered", target=target.label(), alert=event.kind.value,
                    node=event.node, error=error)
        return AlertResult(target.label(), False, status, error)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> AlertSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _safe_error(target: AlertTarget, exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    for _ in range(8):  # the OS error under httpx's wrapping says more ("connection refused")
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno:
            text = os.strerror(cause.errno).lower()
            break
        cause = cause.__cause__ or cause.__context__
    for secret in {target.url, target.post_url, urlsplit(target.url).path}:
        if secret and secret != "/":
            text = text.replace(secret, REDACTED)
    return redact_text(f"{type(exc).__name__}: {text}")


def _safe_body(target: AlertTarget, response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        text = data["description"]
    else:
        text = response.text[:200]
    for secret in {target.url, urlsplit(target.url).path}:
        if secret and secret != "/":
            text = text.replace(secret, REDACTED)
    return redact_text(text)


def _telegram_ok(response: httpx.Response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("ok") is True


async def send_alert(targets: Sequence[AlertTarget], event: AlertEvent) -> list[AlertResult]:
    """One-shot: send ``event`` to ``targets`` with a client of its own."""
    async with AlertSender(targets) as sender:
        return await sender.notify(event)
