"""The client side of the agents' API, shared by the agents (failsafe calls) and the CLI.

One place decides how an agent's certificate is verified ([lease] api_ca_file, else the system's
CAs), how the bearer token is sent and how each answer is read (api/models.py), so the CLI and
the agents cannot drift apart from each other or from the server.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import ValidationError

from near_failover.api.models import FailsafeAnswer, MoveStarted, RunAnswer
from near_failover.http_limits import BoundedAsyncClient
from near_failover.inventory import Inventory, InventoryError
from near_failover.limits import API_ANSWER_BYTES
from near_failover.procedures.move import MoveResult, Outcome
from near_failover.procedures.plan import MoveKind, MoveOptions

Verify = ssl.SSLContext | bool
Answer = TypeVar("Answer", MoveStarted, RunAnswer, FailsafeAnswer)


def api_verify(inventory: Inventory) -> Verify:
    """How https:// agent APIs are verified: the inventory's api_ca_file, else the system's CAs."""
    ca = inventory.lease.api_ca_file if inventory.lease else None
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InventoryError(f"[lease] api_ca_file {ca}: cannot load it as a CA certificate ({reason}); point it at the PEM file of the CA that signed the agents' api_cert_file") from None


def api_client(verify: Verify, token: str | None, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for agent APIs: never the environment's proxies, always verified TLS, answers
    capped in size."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return BoundedAsyncClient(max_response_bytes=API_ANSWER_BYTES, timeout=timeout, trust_env=False, verify=verify, headers=headers)


def api_error_text(body: Any) -> str:
    """An agent API's error answer as one sentence: its message, else its error code or detail;
    never the raw object."""
    if isinstance(body, dict):
        for field in ("message", "detail", "error"):
            value = body.get(field)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                return "; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value)
        return "no reason given"
    return str(body) if body else "no reason given"



class AgentApiError(Exception):
    """An agent's API did not answer as asked; the message names the agent and the cause."""

    def __init__(self, message: str, refused_connection: bool = False) -> None:
        super().__init__(message)
        self.refused_connection = refused_connection  # nothing listens there (a stopped agent)


def refused_connection(exc: BaseException) -> bool:
    """Nothing listens at the address (a stopped agent), unlike a TLS or a network failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def move_body(kind: MoveKind, options: MoveOptions, confirm: str | None) -> dict[str, Any]:
    """POST /switchover or /failover's body for the operator's options (api/app.py's requests)."""
    body: dict[str, Any] = {"to": options.to, "mode": options.mode, "take_over_interrupted": options.take_over_interrupted}
    if kind == MoveKind.SWITCHOVER:
        body["in_window"] = options.in_window
    elif options.force:  # the pool id the operator typed
        body.update(force=True, confirm=confirm)
    return body


class AgentClient:
    """One agent's API at ``api`` (node ``node``'s), with typed answers."""

    def __init__(self, node: str, api: str, verify: Verify, token: str | None, timeout: float) -> None:
        self.node = node
        self.api = api.rstrip("/")
        self.http = api_client(verify, token, timeout)

    async def __aenter__(self) -> Self:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.http.__aexit__(kind, exc, tb)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        try:
            answer = await self.http.request(method, f"{self.api}{path}", json=body)
        except httpx.HTTPError as exc:
            raise AgentApiError(f"{self.node}'s agent API at {self.api} did not answer ({exc})", refused_connection(exc)) from None
        try:
            return answer.status_code, answer.json()
        except ValueError:
            raise AgentApiError(f"{self.node}'s agent API answered HTTP {answer.status_code} without JSON") from None

    async def start_move(self, kind: MoveKind, options: MoveOptions, confirm: str | None = None) -> MoveStarted:
        """Ask the agent to run the move; its run id once its journal has the run (HTTP 202)."""
        status, data = await self._call("POST", f"/{kind}", move_body(kind, options, confirm))
        if status != 202:
            raise AgentApiError(f"{self.node}'s agent refused the {kind} (HTTP {status}): {api_error_text(data)}")
        return self._read(MoveStarted, data, f"POST /{kind}")

    async def run(self, run_id: int) -> RunAnswer:
        status, data = await self._call("GET", f"/runs/{run_id}")
        if status != 200:
            raise AgentApiError(f"{self.node}'s agent cannot show run {run_id} (HTTP {status}): {api_error_text(data)}")
        return self._read(RunAnswer, data, f"GET /runs/{run_id}")

    async def follow(self, run_id: int, on_answer: Callable[[RunAnswer], None], interval: float, failures: int) -> MoveResult:
        """Poll the run until its move has ended, telling ``on_answer`` each answer; the move's
        result (or, when the agent kept none, the run's outcome as the journal has it). Up to
        ``failures`` failed polls in a row are retried; then AgentApiError."""
        misses = 0
        while True:
            try:
                answer = await self.run(run_id)
                misses = 0
            except AgentApiError as exc:
                if "cannot show run" in str(exc):
                    raise
                misses += 1
                if misses >= failures:
                    raise AgentApiError(f"lost {self.node}'s agent API while following run {run_id} ({exc})") from None
                await asyncio.sleep(interval)
                continue
            on_answer(answer)
            if answer.ended:
                return answer.result or self._result_from_journal(answer)
            await asyncio.sleep(interval)

    @staticmethod
    def _result_from_journal(answer: RunAnswer) -> MoveResult:
        extra = answer.model_extra or {}
        outcome = answer.state if answer.state in set(Outcome) else Outcome.STOPPED
        return MoveResult(kind=MoveKind(extra["kind"]), mode=extra["mode"], source=extra.get("from"), target=extra["to"],
                          ok=answer.state == Outcome.OK, outcome=Outcome(outcome), run_id=answer.id,
                          message=str(answer.detail.get("message", "")))

    async def confirm_leader(self, leader: str, generation: int) -> bool:
        """The failsafe question: does this agent still see ``leader`` at ``generation``?"""
        status, data = await self._call("POST", "/failsafe", {"leader": leader, "generation": generation})
        return status == 200 and self._read(FailsafeAnswer, data, "POST /failsafe").confirmed

    async def hint_handover(self, source: str, generation: int) -> None:
        """Wake this agent's loop: ``source`` handed its lease over to it (a hint; the store decides)."""
        status, data = await self._call("POST", "/handover", {"source": source, "generation": generation})
        if status != 200:
            raise AgentApiError(f"{self.node}'s agent answered POST /handover with HTTP {status}: {str(data)[:200]}")

    def _read(self, model: type[Answer], data: Any, what: str) -> Answer:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise AgentApiError(f"{self.node}'s agent answered {what} with an unexpected shape ({exc.error_count()} problems)") from None
