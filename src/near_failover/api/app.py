"""The agent's REST API (Patroni's REST API is the model): health for load balancers and
systemd, status and cluster views, history, Prometheus metrics, a status page, and the few
actions (switchover, pause, resume, the failsafe confirmation) behind a bearer token.

Rules every route keeps:
- answers are JSON (the page and /metrics excepted); errors are ``{"error": <code>, "message":
  <what happened and what to do>}``, never a traceback;
- everything that comes from the agent passes through ``redact_record`` before it is sent, so
  key material cannot leave through the API even if some layer below let it into a message;
- every call into the agent has a deadline, except a running switchover: cancelling one half-way
  is worse than waiting for its own deadlines, so it is shielded from the client going away.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from near_failover.api.agent_view import AgentView
from near_failover.api.metrics import CONTENT_TYPE, agent_registry, exposition
from near_failover.api.page import render_page
from near_failover.ha.lease import LeaseStoreUnavailable
from near_failover.limits import API_BODY_BYTES, human_size
from near_failover.redact import redact_record, redact_text

log = logging.getLogger("near_failover.api")

# Deadlines for calls into the agent. A store request of the agent has its own retry_timeout;
# these only keep a wedged call from holding an HTTP connection forever.
CLUSTER_TIMEOUT = 10.0
PAUSE_TIMEOUT = 10.0
# The failsafe caller (another agent) waits retry_timeout for our answer; no point in longer.
FAILSAFE_TIMEOUT = 5.0
HEALTHY_ROLES = ("leader", "standby")

NO_TOKEN_MESSAGE = (
    "this agent has no API token, so it refuses every POST; write a random token to a file "
    "readable only by the agent (e.g. `umask 077; openssl rand -hex 32 > /etc/near-failover/api-token`), "
    "set api_token_file to that path in the inventory's [lease] table, and restart the agents"
)

T = TypeVar("T")


class ApiError(Exception):
    """An answer other than 2xx, with a code for scripts and a sentence for people."""

    def __init__(self, status: int, error: str, message: str, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.extra = extra or {}
        self.headers = headers


def error_response(status: int, error: str, message: str, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(redact_record({"error": error, "message": message, **(extra or {})}), status_code=status, headers=headers)


def safe_json(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(redact_record(content), status_code=status)


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` with key material scrubbed, for an answer or a log line (no traceback)."""
    text = redact_text(str(exc)).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- authentication -----------------------------------------------------------------------------


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other shape."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(expected: str, given: str) -> bool:
    # compare_digest on bytes: constant time, and no TypeError for non-ASCII input.
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


class BearerAuth:
    """Refuse every state-changing request without the right token *before* the app parses it, so
    an anonymous caller learns nothing (not even whether its body would have been valid)."""

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.strip() if token and token.strip() else None  # an empty file is no token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in self.SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(dict(scope["headers"]).get(b"authorization"))
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def refusal(self, header: bytes | None) -> JSONResponse | None:
        if self.token is None:
            return error_response(403, "no-token-configured", NO_TOKEN_MESSAGE)
        given = bearer_token(header.decode("latin-1") if header is not None else None)
        if given is None:
            return error_response(
                401, "unauthorized", "this request changes the agent's state and needs the header `Authorization: Bearer <token>` "
                "with the token from the inventory's [lease] api_token_file",
                headers={"WWW-Authenticate": 'Bearer realm="near-failover"'},
            )
        if not token_matches(self.token, given):
            return error_response(
                401, "invalid-token", "the bearer token does not match this agent's api_token_file; check that every agent and client use the same file",
                headers={"WWW-Authenticate": 'Bearer realm="near-failover", error="invalid_token"'},
            )
        return None


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413 before it is read whole: a declared
    Content-Length at once, a chunked body as soon as its count passes the limit. The body (at most
    ``max_bytes``) is read here and handed on, so the app never sees more than that."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> JSONResponse:
        return error_response(
            413, "body-too-large",
            f"the request body is larger than the {human_size(self.max_bytes)} allowed; every API request body is a small JSON object",
            headers={"Connection": "close"},  # the rest of the body is not read: drop it with the connection
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_bytes):
            await self.too_large()(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body ended
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self.too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


# --- request bodies -----------------------------------------------------------------------------


class SwitchoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, description="the node that becomes the signer")
    mode: Literal["hot-swap", "rpc"] | None = Field(default=None, description="the target's standby mode; default from the inventory")


class FailsafeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leader: str = Field(min_length=1)
    generation: int = Field(ge=0)


# --- the app ------------------------------------------------------------------------------------


def healthy_in_role(snapshot: dict[str, Any]) -> bool:
    """Patroni's /health: 200 only for a member doing its job (a healthy leader or standby)."""
    return bool(snapshot.get("healthy")) and snapshot.get("role") in HEALTHY_ROLES


def create_app(agent: AgentView, token: str | None) -> FastAPI:
    """The API of one agent. ``token`` None refuses every POST (with a message saying how to set one)."""
    app = FastAPI(
        title="near-failover agent",
        description="Automatic failover agent of a NEAR validator: health, status, cluster, history, metrics and actions.",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the agent serves nothing external
        redoc_url=None,
    )
    registry = agent_registry(agent)
    switchover_lock = asyncio.Lock()
    running: set[asyncio.Future[Any]] = set()  # switchovers shielded from their request's cancellation

    def switchover_done(task: asyncio.Future[Any]) -> None:
        running.discard(task)
        switchover_lock.release()
        if not task.cancelled():
            task.exception()  # retrieved even when its request went away; the journal has the run

    async def call(what: str, awaitable: Awaitable[T], timeout: float | None) -> T:
        """Await the agent with a deadline; turn its failures into clean API errors."""
        try:
            return await (asyncio.wait_for(awaitable, timeout) if timeout is not None else awaitable)
        except ApiError:
            raise
        except asyncio.TimeoutError:
            raise ApiError(504, "agent-timeout", f"the agent did not {what} within {timeout:g} s; see its log") from None
        except LeaseStoreUnavailable as exc:
            raise ApiError(503, "lease-store-unavailable", f"could not {what}: {describe_exception(exc)}") from None
        except ValueError as exc:
            raise ApiError(409, "refused", f"could not {what}: {redact_text(str(exc))}") from None
        except Exception as exc:  # noqa: BLE001 - any agent failure becomes a 500 with its type and message, never a traceback
            log.error("API call failed: %s: %s", what, describe_exception(exc))
            raise ApiError(500, "agent-error", f"could not {what}: {describe_exception(exc)}") from None

    def snapshot() -> dict[str, Any]:
        try:
            return agent.snapshot()
        except Exception as exc:  # noqa: BLE001 - as in call()
            log.error("API call failed: snapshot: %s", describe_exception(exc))
            raise ApiError(500, "agent-error", f"could not read the agent's state: {describe_exception(exc)}") from None

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.extra, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return error_response(422, "invalid-request", "the request is not valid: " + "; ".join(problems), {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /openapi.json for the routes"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, "not-found" if exc.status_code == 404 else "http-error", message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("API failure: %s", describe_exception(exc))
        return error_response(500, "internal-error", f"the API failed: {describe_exception(exc)}")

    @app.get("/health", summary="200 when this member is healthy in its role (leader or standby), else 503; body = /status")
    async def health() -> JSONResponse:
        state = snapshot()
        return safe_json(state, 200 if healthy_in_role(state) else 503)

    @app.get("/status", summary="This agent's view: role, leader, generation, health, production")
    async def status() -> JSONResponse:
        return safe_json(snapshot())

    @app.get("/cluster", summary="The lease store's view: leader, pause flag, every member's record")
    async def cluster() -> JSONResponse:
        return safe_json(await call("read the cluster from the lease store", agent.cluster(), CLUSTER_TIMEOUT))

    @app.get("/history", summary="The journal's latest runs with their steps, newest first")
    async def history(limit: int = Query(20, ge=1, le=500, description="how many runs")) -> JSONResponse:
        try:
            runs = agent.history(limit)
        except Exception as exc:  # noqa: BLE001 - as in call()
            log.error("API call failed: history: %s", describe_exception(exc))
            raise ApiError(500, "agent-error", f"could not read the journal: {describe_exception(exc)}") from None
        return safe_json({"runs": runs})

    @app.get("/metrics", summary="Prometheus text exposition")
    async def metrics() -> Response:
        try:
            body = exposition(registry)
        except Exception as exc:  # noqa: BLE001 - a failed scrape must say why, not dump a traceback
            log.error("API call failed: metrics: %s", describe_exception(exc))
            raise ApiError(500, "agent-error", f"could not read the agent's state for metrics: {describe_exception(exc)}") from None
        return Response(body, media_type=CONTENT_TYPE)

    @app.get("/", summary="The status page", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        document, policy = render_page(agent.node)
        return HTMLResponse(document, headers={"Content-Security-Policy": policy, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @app.post("/switchover", summary="Move the validator to `to` through the lease (send it to the leader's agent)")
    async def switchover(body: SwitchoverRequest) -> JSONResponse:
        if switchover_lock.locked():
            raise ApiError(409, "switchover-running", "a switchover requested through this API is still running; wait for it and check /history")
        await switchover_lock.acquire()
        # The lock is released when the switchover ends, not when this request does: a client
        # that hangs up must not let a second switchover start beside the first.
        try:
            task = asyncio.ensure_future(agent.request_switchover(body.to, body.mode))
        except BaseException:
            switchover_lock.release()
            raise
        running.add(task)
        task.add_done_callback(switchover_done)
        result = await call(f"switch the validator over to {body.to}", asyncio.shield(task), None)
        if not result.get("ok"):
            message = result.get("message") or f"the switchover to {body.to} did not complete"
            raise ApiError(409, "switchover-failed", f"{message}; the result below says each node's state and the commands to finish or revert", {"result": result})
        return safe_json(result)

    @app.post("/pause", summary="Stop automatic decisions (no promotion); leaders keep renewing")
    async def pause() -> JSONResponse:
        await call("pause automatic decisions", agent.set_paused(True), PAUSE_TIMEOUT)
        return safe_json({"paused": True})

    @app.post("/resume", summary="Restart automatic decisions after /pause")
    async def resume() -> JSONResponse:
        await call("resume automatic decisions", agent.set_paused(False), PAUSE_TIMEOUT)
        return safe_json({"paused": False})

    @app.post("/failsafe", summary="Another agent's leader asks: do you still see me as leader at this generation?")
    async def failsafe(body: FailsafeRequest) -> JSONResponse:
        confirmed = await call("answer the failsafe confirmation", agent.confirm_leader(body.leader, body.generation), FAILSAFE_TIMEOUT)
        return safe_json({"confirmed": bool(confirmed)})

    app.add_middleware(BodyLimit, max_bytes=API_BODY_BYTES)  # inside the token check: strangers get 401
    app.add_middleware(BearerAuth, token=token)
    return app
