"""Notifications: every role change, refused promotion, self-fence, manual move and risk
(an unready standby, a kickout ahead, the lease store down, a long pause) reaches a human.

An alert must never make things worse: sending never raises into the agent (failures are logged
and returned), every request has a timeout, a failed delivery is retried with backoff in the
background (the agent's loop never waits for it), and nothing secret leaves the process: no key
material in a message (``near_failover.redact``), and the URLs themselves (Slack, Telegram and
most apprise services put their token in the URL) appear in logs and errors only as
scheme://host, or for apprise as its scheme alone. Apprise reaches everything else (Discord,
PagerDuty, email, ...); it is synchronous, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from near_failover.http_limits import BoundedAsyncClient
from near_failover.inventory import AlertTarget, apprise_urls
from near_failover.limits import WEBHOOK_ANSWER_BYTES
from near_failover.redact import REDACTED, redact_record, redact_text

log = structlog.get_logger(__name__)

TELEGRAM_TEXT_LIMIT = 4096


class AlertKind(StrEnum):
    ROLE_CHANGE = "role_change"
    PROMOTION_REFUSED = "promotion_refused"
    SELF_FENCE = "self_fence"
    MOVE = "move"  # a switchover or failover run by hand (CLI, or POST /switchover)
    STANDBY_UNREADY = "standby_unready"
    KICKOUT_RISK = "kickout_risk"
    STORE_DOWN = "lease_store_down"
    LONG_PAUSE = "long_pause"
    TEST = "test"  # near-failover alert test


# How each kind reads in a message's first line (role changes and generations are added).
_HEADLINES = {
    AlertKind.PROMOTION_REFUSED: "promotion refused",
    AlertKind.SELF_FENCE: "fenced itself",
    AlertKind.STANDBY_UNREADY: "standby NOT READY to take over",
    AlertKind.KICKOUT_RISK: "kickout ahead: production below neard's threshold",
    AlertKind.STORE_DOWN: "the lease store does not answer",
    AlertKind.LONG_PAUSE: "automatic failover paused for long",
    AlertKind.TEST: "test message (near-failover alert test)",
}


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

    @classmethod
    def move(cls, account_id: str, result: Mapping[str, Any]) -> AlertEvent:
        """A manual switchover or failover, from its ``MoveResult.to_json()``."""
        what = f"{result.get('kind')} ({result.get('mode')}) {result.get('from') or '?'} -> {result.get('to')}: {result.get('outcome')}"
        details = {k: result[k] for k in ("kind", "mode", "from", "outcome", "missed", "seconds") if result.get(k) is not None}
        return cls(AlertKind.MOVE, account_id, str(result.get("to")), f"{what}. {result.get('message') or ''}".strip(), details=details)

    @classmethod
    def condition(cls, kind: AlertKind, account_id: str, node: str, reason: str, details: Mapping[str, Any] | None = None) -> AlertEvent:
        """A risk the agent watches (standby unready, kickout ahead, store down, long pause) or a test."""
        return cls(kind, account_id, node, reason, details=dict(details or {}))


def event_text(event: AlertEvent) -> str:
    """One human-readable message (Slack, Telegram, apprise, and the ``text`` of the JSON body)."""
    generation = f" (lease generation {event.generation})" if event.generation is not None else ""
    if event.kind is AlertKind.ROLE_CHANGE:
        what = f"role {event.old_role} -> {event.new_role}{generation}"
    elif event.kind is AlertKind.MOVE:
        what = f"manual {event.details.get('kind', 'move')} {'done' if event.details.get('outcome') == 'ok' else 'NOT done'}"
    else:
        what = _HEADLINES[event.kind] + generation
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
    attempts: int = 1


def retry_delays(target: AlertTarget) -> list[float]:
    """The pauses before each retry: ``backoff``, doubling (1 s, 2 s, 4 s ... by default)."""
    return [target.backoff * 2**n for n in range(target.attempts - 1)]


class AlertSender:
    """Sends each event to every target at once; never raises (an alert must not stop a fence).

    ``notify`` waits for the first attempt only and retries failed targets in the background, so
    the agent's loop is never held by a dead webhook; ``deliver`` waits for every attempt (the
    CLI); ``post`` waits for nothing. ``aclose`` lets background retries finish.
    """

    def __init__(
        self, targets: Sequence[AlertTarget], client: httpx.AsyncClient | None = None
    ) -> None:
        self.targets = list(targets)
        self._client = client or BoundedAsyncClient(
            max_response_bytes=WEBHOOK_ANSWER_BYTES, trust_env=False, follow_redirects=False
        )
        self._own_client = client is None
        self._background: set[asyncio.Task[Any]] = set()

    async def notify(self, event: AlertEvent) -> list[AlertResult]:
        """First attempt of every target; failed ones are retried in the background."""
        results = await asyncio.gather(*(self._send(t, event) for t in self.targets))
        for target, result in zip(self.targets, results):
            if not result.ok and target.attempts > 1:
                self._spawn(self._retry(target, event, retry_delays(target)))
        return list(results)

    async def deliver(self, event: AlertEvent) -> list[AlertResult]:
        """Every attempt of every target, with backoff: the final result of each."""
        return list(await asyncio.gather(*(self._retry(t, event, [0.0, *retry_delays(t)]) for t in self.targets)))

    def post(self, event: AlertEvent) -> None:
        """Deliver in the background (an event the caller must not wait for)."""
        if self.targets:
            self._spawn(self.deliver(event))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retry(self, target: AlertTarget, event: AlertEvent, delays: Sequence[float]) -> AlertResult:
        result = AlertResult(target.label(), False, error="not sent")
        for attempt, delay in enumerate(delays, 1):
            await asyncio.sleep(delay)
            result = await self._send(target, event)
            result = AlertResult(result.target, result.ok, result.status, result.error, attempt)
            if result.ok:
                break
        return result

    async def _send(self, target: AlertTarget, event: AlertEvent) -> AlertResult:
        if target.kind == "apprise":
            return await self._send_apprise(target, event)
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

    async def _send_apprise(self, target: AlertTarget, event: AlertEvent) -> AlertResult:
        """Apprise is synchronous: one thread per send, waited for at most ``timeout`` per URL
        (apprise's own connect and read timeouts end the thread soon after)."""
        assert target.url_file is not None
        try:
            urls = apprise_urls(target.url_file)
        except ValueError as exc:
            return self._failed(target, event, None, str(exc))
        title, _, body = event_text(event).partition("\n")
        try:
            sent = await asyncio.wait_for(  # None, or why not
                asyncio.to_thread(_apprise_notify, urls, title, body, target.timeout),
                target.timeout * len(urls) + 1,
            )
        except asyncio.TimeoutError:
            return self._failed(target, event, None, f"no answer within {target.timeout:g}s")
        except Exception as exc:  # noqa: BLE001 - an apprise plugin that raises is a failed alert
            text = str(exc)
            for url in urls:  # each one is a credential from its scheme on
                text = text.replace(url, REDACTED)
            return self._failed(target, event, None, redact_text(f"{type(exc).__name__}: {text}"))
        if sent is not None:
            return self._failed(target, event, None, sent)
        log.info("alert sent", target=target.label(), alert=event.kind.value, node=event.node)
        return AlertResult(target.label(), True)

    def _failed(
        self, target: AlertTarget, event: AlertEvent, status: int | None, error: str
    ) -> AlertResult:
        log.warning("alert not delivered", target=target.label(), alert=event.kind.value,
                    node=event.node, error=error)
        return AlertResult(target.label(), False, status, error)

    async def aclose(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> AlertSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _apprise_notify(urls: list[str], title: str, body: str, timeout: float) -> str | None:
    """Send through apprise; None when every URL was notified, else why not (without the URLs)."""
    import apprise

    # Apprise's and urllib3's debug lines print the service URLs, i.e. their credentials: they
    # never go below warnings, whatever the process's log level.
    for name in ("apprise", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))

    notifier = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
    for url in urls:
        # cto/rto: apprise's connect and read timeouts for the HTTP-based services.
        notifier.add(url + ("&" if "?" in url else "?") + f"cto={timeout:g}&rto={timeout:g}")
    if len(notifier) != len(urls):
        return f"apprise accepts {len(notifier)} of the {len(urls)} URLs in url_file: the others name no service it knows, or are malformed"
    if not notifier.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT):
        return "apprise could not notify every URL (its warnings above say which service)"
    return None


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
    return f"{type(exc).__name__}: {_without_url(target, text)}"


def _without_url(target: AlertTarget, text: str) -> str:
    """``text`` without the target's URL or its path (a webhook's credential), then redacted."""
    if target.url is not None:
        for secret in {target.url, target.post_url, urlsplit(target.url).path}:
            if secret and secret != "/":
                text = text.replace(secret, REDACTED)
    return redact_text(text)


def _safe_body(target: AlertTarget, response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        text = data["description"]
    else:
        text = response.text[:200]
    return _without_url(target, text)


def _telegram_ok(response: httpx.Response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("ok") is True


async def send_alert(targets: Sequence[AlertTarget], event: AlertEvent) -> list[AlertResult]:
    """One-shot: deliver ``event`` to ``targets`` (every attempt) with a client of its own."""
    async with AlertSender(targets) as sender:
        return await sender.deliver(event)
