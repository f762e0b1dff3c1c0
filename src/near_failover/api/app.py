"""The agent's REST API (Patroni's REST API is the model): health for load balancers and
systemd (/health, /leader, /standby), status and cluster views, history and runs, Prometheus
metrics, a status page, and the few actions (switchover, failover, pause, resume, the failsafe
confirmation) behind a bearer token.

Rules every route keeps:
- answers are JSON (the page and /metrics excepted); errors are ``{"error": <code>, "message":
  <what happened and what to do>}``, never a traceback;
- everything that comes from the agent passes through ``redact_record`` before it is sent, so
  key material cannot leave through the API even if some layer below let it into a message;
- every call into the agent has a deadline, except a running move: cancelling one half-way is
  worse than waiting for its own deadlines, so it runs on when the client goes away. A move is
  answered 202 with its journal run id as soon as the journal has it; GET /runs/{id} follows it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from near_failover.api.agent_view import AgentView
from near_failover.api.metrics import CONTENT_TYPE, agent_registry, exposition
from near_failover.api.models import (
    ErrorAnswer,
    FailsafeAnswer,
    HistoryAnswer,
    HistoryRun,
    MoveRefusedAnswer,
    MoveStarted,
    RunAnswer,
)
from near_failover.api.page import render_page
from near_failover.api.state_models import AgentSnapshot, CheckAnswer, ClusterAnswer
from near_failover.ha.lease import LeaseStoreUnavailable, MemberRole
from near_failover.inventory import StandbyMode
from near_failover.limits import API_BODY_BYTES, human_size
from near_failover.procedures.journal import JournalError
from near_failover.procedures.move import MoveResult
from near_failover.procedures.plan import MoveOptions
from near_failover.redact import redact_record, redact_text

log = logging.getLogger("near_failover.api")

# Deadlines for calls into the agent. A store request of the agent has its own retry_timeout;
# these only keep a wedged call from holding an HTTP connection forever.
CLUSTER_TIMEOUT = 10.0
PAUSE_TIMEOUT = 10.0
# The failsafe caller (another agent) waits retry_timeout for our answer; no point in longer.
FAILSAFE_TIMEOUT = 5.0
# /leader asks neard's RPC (its own 2.5 s bound); a load balancer's check should not wait longer.
LEADER_CHECK_TIMEOUT = 5.0
KEPT_RESULTS = 50  # results of moves started here, for GET /runs/{id}
HEALTHY_ROLES = (MemberRole.LEADER, MemberRole.STANDBY)

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


class MoveRequest(BaseModel):
    """The options every move takes, as the CLI's."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, description="the node that becomes the signer")
    mode: StandbyMode | None = Field(default=None, description="the target's standby mode; default from the inventory")
    take_over_interrupted: bool = Field(default=False, description="start even though an earlier run was interrupted (after checking each node)")

    def options(self) -> MoveOptions:
        return MoveOptions(**self.model_dump(exclude={"confirm"}))


class SwitchoverRequest(MoveRequest):
    """POST /switchover, sent to the leader's agent."""

    in_window: bool = Field(default=False, description="wait (bounded) for a gap in the pool's duties long enough for the swap")


class FailoverRequest(MoveRequest):
    """POST /failover, sent to the target's agent. ``force`` skips the chain-silence proof for an
    unreachable signer; as the CLI asks to type the pool id, ``confirm`` must be the pool id."""

    force: bool = Field(default=False, description="skip the proof that the old signer is silent")
    confirm: str | None = Field(default=None, description="with force: the pool id, to accept a double sign if the old signer still signs")

    @model_validator(mode="after")
    def _confirm_with_force(self) -> FailoverRequest:
        if self.confirm is not None and not self.force:
            raise ValueError("confirm goes with force: it accepts skipping the silence proof")
        return self


class FailsafeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leader: str = Field(min_length=1)
    generation: int = Field(ge=0)


class HandoverHint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=200)
    generation: int = Field(ge=0)


# --- the app ------------------------------------------------------------------------------------


def healthy_in_role(snapshot: AgentSnapshot) -> bool:
    """Patroni's /health: 200 only for a member doing its job (a healthy leader or standby)."""
    return snapshot.healthy and snapshot.role in HEALTHY_ROLES


def answer(model: BaseModel, status: int = 200) -> JSONResponse:
    """A typed answer as the JSON its response_model declares, redacted like every answer."""
    return safe_json(model.model_dump(mode="json", by_alias=True), status)


def create_app(agent: AgentView, token: str | None) -> FastAPI:
    """The API of one agent. ``token`` None refuses every POST (with a message saying how to set one)."""
    app = FastAPI(
        title="near-failover agent",
        description="Automatic failover agent of a NEAR validator: health, status, cluster, history, metrics and actions.",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the agent serves nothing external
        redoc_url=None,
    )
    registry = agent_registry(agent)
    move_lock = asyncio.Lock()
    running: dict[asyncio.Future[Any], int | None] = {}  # moves started here, with their run id once known
    results: dict[int, MoveResult] = {}  # their results by run id, the latest KEPT_RESULTS

    def move_done(task: asyncio.Future[Any]) -> None:
        running.pop(task, None)
        move_lock.release()
        if task.cancelled() or task.exception() is not None:
            return  # the journal has the run and says where it stopped
        result = MoveResult.model_validate(task.result())
        if result.run_id is not None:
            results[result.run_id] = result
            while len(results) > KEPT_RESULTS:
                results.pop(next(iter(results)))

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
        except (ValueError, JournalError) as exc:  # a refusal, or a run in progress or interrupted
            raise ApiError(409, "refused", f"could not {what}: {redact_text(str(exc))}") from None
        except Exception as exc:  # noqa: BLE001 - any agent failure becomes a 500 with its type and message, never a traceback
            log.error("API call failed: %s: %s", what, describe_exception(exc))
            raise ApiError(500, "agent-error", f"could not {what}: {describe_exception(exc)}") from None

    def snapshot() -> AgentSnapshot:
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

    def checked(problem: str | None, confirmed: str) -> JSONResponse:
        """/leader and /standby: the snapshot and the check's verdict, 503 when it found a problem."""
        return answer(CheckAnswer(**dict(snapshot()), check=problem or confirmed), 503 if problem else 200)

    @app.get("/health", summary="200 when this member is healthy in its role (leader or standby), else 503; body = /status",
             response_model=AgentSnapshot, responses={503: {"model": AgentSnapshot}})
    async def health() -> JSONResponse:
        state = snapshot()
        return answer(state, 200 if healthy_in_role(state) else 503)

    @app.get("/leader", summary="200 only when this node holds the lease and its neard's RPC shows the pool's key loaded, else 503",
             response_model=CheckAnswer, responses={503: {"model": CheckAnswer}})
    async def leader() -> JSONResponse:
        problem = await call("check whether this node signs", agent.leader_problem(), LEADER_CHECK_TIMEOUT)
        return checked(problem, "leader")

    @app.get("/standby", summary="200 only on a standby ready to take over (healthy, key staged, not signing), else 503",
             response_model=CheckAnswer, responses={503: {"model": CheckAnswer}})
    async def standby() -> JSONResponse:
        return checked(agent.standby_problem(), "ready standby")

    @app.get("/status", summary="This agent's view: role, leader, generation, health, production", response_model=AgentSnapshot)
    async def status() -> JSONResponse:
        return answer(snapshot())

    @app.get("/cluster", summary="The lease store's view: leader, pause flag, every member's record", response_model=ClusterAnswer)
    async def cluster() -> JSONResponse:
        return answer(ClusterAnswer.of(await call("read the cluster from the lease store", agent.cluster(), CLUSTER_TIMEOUT)))

    @app.get("/history", summary="The journal's latest runs with their steps, newest first", response_model=HistoryAnswer)
    async def history(limit: int = Query(20, ge=1, le=500, description="how many runs")) -> JSONResponse:
        try:
            runs = agent.history(limit)
        except Exception as exc:  # noqa: BLE001 - as in call()
            log.error("API call failed: history: %s", describe_exception(exc))
            raise ApiError(500, "agent-error", f"could not read the journal: {describe_exception(exc)}") from None
        return answer(HistoryAnswer(runs=[HistoryRun.model_validate(r) for r in runs]))

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

    @app.get("/runs/{run_id}", summary="One run of the journal with its steps as they happen; `active` while a move started here runs, then its `result`",
             response_model=RunAnswer, responses={404: {"model": ErrorAnswer}})
    async def run(run_id: int = Path(ge=1)) -> JSONResponse:
        try:
            found = agent.journal_run(run_id)
        except JournalError as exc:
            raise ApiError(404, "not-found", f"{redact_text(str(exc))}; /history lists the runs") from None
        return answer(RunAnswer.model_validate({**found, "active": run_id in running.values(), "result": results.get(run_id)}))

    async def start_move(what: str, begin: Callable[[Callable[[int], None]], Awaitable[dict[str, Any]]]) -> JSONResponse:
        """202 with the run id once the journal has the run; an answer before that is a refusal."""
        if move_lock.locked():
            ids = [i for i in running.values() if i is not None]
            raise ApiError(409, "move-running", "a move requested through this API is still running" + (f": follow it at /runs/{ids[0]}" if ids else "; see /history"))
        # The lock is released when the move ends, not when this request does: a client that
        # hangs up must not let a second move start beside the first.
        await move_lock.acquire()
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_start(run_id: int) -> None:  # called inside the move, so while it is in `running`
            running[task] = run_id
            started.set_result(run_id)

        try:
            task = asyncio.ensure_future(begin(on_start))
        except BaseException:
            move_lock.release()
            raise
        running[task] = None
        task.add_done_callback(move_done)
        await asyncio.wait((task, started), return_when=asyncio.FIRST_COMPLETED)  # never cancels the move
        if started.done():
            run_id = started.result()
            return safe_json(MoveStarted(run_id=run_id, run=f"/runs/{run_id}").model_dump(mode="json"), 202)
        result = MoveResult.model_validate(await call(what, task, None))
        raise ApiError(409, "refused", f"could not {what}: {result.message or result.outcome}", {"result": result.to_json()})

    refused: dict[int | str, dict[str, Any]] = {409: {"model": MoveRefusedAnswer}}

    @app.post("/switchover", summary="Move the validator to `to` through the lease (send it to the leader's agent); 202 with the run id",
              response_model=MoveStarted, status_code=202, responses=refused)
    async def switchover(body: SwitchoverRequest) -> JSONResponse:
        return await start_move(f"switch the validator over to {body.to}", lambda on_start: agent.request_switchover(body.options(), on_start))

    @app.post("/failover", summary="Fail the validator over to this node (send it to the target's agent) with the CLI's rules; 202 with the run id",
              response_model=MoveStarted, status_code=202, responses=refused)
    async def failover(body: FailoverRequest) -> JSONResponse:
        return await start_move(f"fail the validator over to {body.to}", lambda on_start: agent.request_failover(body.options(), body.confirm, on_start))

    @app.post("/pause", summary="Stop automatic decisions (no promotion); leaders keep renewing")
    async def pause() -> JSONResponse:
        await call("pause automatic decisions", agent.set_paused(True), PAUSE_TIMEOUT)
        return safe_json({"paused": True})

    @app.post("/resume", summary="Restart automatic decisions after /pause")
    async def resume() -> JSONResponse:
        await call("resume automatic decisions", agent.set_paused(False), PAUSE_TIMEOUT)
        return safe_json({"paused": False})

    @app.post("/failsafe", summary="Another agent's leader asks: do you still see me as leader at this generation?", response_model=FailsafeAnswer)
    async def failsafe(body: FailsafeRequest) -> JSONResponse:
        confirmed = await call("answer the failsafe confirmation", agent.confirm_leader(body.leader, body.generation), FAILSAFE_TIMEOUT)
        return safe_json(FailsafeAnswer(confirmed=bool(confirmed)).model_dump())

    @app.post("/handover", summary=("Another agent's hint that it handed its lease over to this node: check the lease store now "
                                     "rather than at the next loop (the store decides, the hint only wakes the loop)"))
    async def handover(body: HandoverHint) -> JSONResponse:
        agent.wake_up(f"{body.source} says it handed its lease (generation {body.generation}) over to this node")
        return safe_json({"woken": True})

    app.add_middleware(BodyLimit, max_bytes=API_BODY_BYTES)  # inside the token check: strangers get 401
    app.add_middleware(BearerAuth, token=token)
    return app
