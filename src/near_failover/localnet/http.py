"""A small HTTP/1.1 server and keep-alive client on asyncio streams, for loopback use only.

Why not uvicorn/httpx here: the localnet runs four long-lived processes that exchange a few
requests per block; a bare asyncio server keeps each process's start-up and idle CPU low, and
lets a node bind its RPC port exactly when neard would (after the memtrie load).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

MAX_HEADER_LINES = 100
MAX_BODY = 10 * 1024 * 1024  # neard's rpc.limits_config.json_payload_max_size default
KEEP_ALIVE_IDLE = 75.0

REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(obj: Any, status: int = 200) -> "Response":
        return Response(status, json.dumps(obj, separators=(",", ":")).encode())

    @staticmethod
    def text(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> "Response":
        return Response(status, text.encode(), content_type)


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").strip().split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"malformed request line {line[:80]!r}") from exc
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadRequest("too many header lines")
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise BadRequest("body too large")
    body = await reader.readexactly(length) if length else b""
    parts = urlsplit(target)
    headers[":version"] = version
    return Request(method.upper(), parts.path or "/", dict(parse_qsl(parts.query)), headers, body)


def _encode_response(resp: Response, head_only: bool, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}",
        f"content-type: {resp.content_type}",
        f"content-length: {len(resp.body)}",
        f"connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines += [f"{k}: {v}" for k, v in resp.headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + resp.body


async def _serve_connection(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_error: Callable[[BaseException], None]) -> None:
    try:
        while True:
            try:
                req = await asyncio.wait_for(_read_request(reader), KEEP_ALIVE_IDLE)
            except (BadRequest, ValueError, asyncio.IncompleteReadError) as exc:
                writer.write(_encode_response(Response.text(f"bad request: {exc}", 400), False, False))
                await writer.drain()
                return
            if req is None:
                return
            try:
                resp = await handler(req)
            except Exception as exc:  # a handler bug must not kill the server; report it
                on_error(exc)
                resp = Response.text("internal error", 500)
            keep_alive = req.headers.get("connection", "").lower() != "close" and req.headers.get(":version") != "HTTP/1.0"
            writer.write(_encode_response(resp, req.method == "HEAD", keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (asyncio.TimeoutError, ConnectionError):
        return
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def start_server(handler: Handler, host: str, port: int, on_error: Callable[[BaseException], None] = lambda e: None) -> asyncio.AbstractServer:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A connection still open when the server stops is cancelled. Python 3.11's
        # StreamReaderProtocol then calls task.exception() on the cancelled task, which raises and
        # prints a traceback to the node's log (3.12 checks task.cancelled() first): end normally.
        try:
            await _serve_connection(handler, reader, writer, on_error)
        except asyncio.CancelledError:
            return

    return await asyncio.start_server(on_connect, host, port, reuse_address=True)


class HttpError(Exception):
    """A request to a localnet peer failed (connection, timeout or malformed reply)."""


class HttpClient:
    """One keep-alive connection to one server; requests are serialised on it.

    Use one client per concurrent conversation (a node has one for the head long-poll and one
    for everything else).
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    @staticmethod
    def from_url(url: str, timeout: float = 5.0) -> "HttpClient":
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"expected http://HOST:PORT, got {url!r}")
        return HttpClient(parts.hostname, parts.port, timeout)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._reader = self._writer = None

    async def _exchange(self, method: str, target: str, body: bytes | None) -> tuple[int, bytes]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        payload = body or b""
        head = f"{method} {target} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-length: {len(payload)}\r\n"
        if body is not None:
            head += "content-type: application/json\r\n"
        self._writer.write((head + "\r\n").encode("latin-1") + payload)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionResetError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            raw = await self._reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        data = await self._reader.readexactly(length) if length and method != "HEAD" else b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, data

    async def request(self, method: str, target: str, body: bytes | None = None, timeout: float | None = None) -> tuple[int, bytes]:
        """Send one request; retry once on a stale keep-alive connection."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    return await asyncio.wait_for(self._exchange(method, target, body), timeout or self.timeout)
                except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                    await self.close()
                    if attempt == 2 or isinstance(exc, ConnectionRefusedError):
                        raise HttpError(f"{method} http://{self.host}:{self.port}{target}: {exc or type(exc).__name__}") from exc
                except asyncio.TimeoutError as exc:
                    await self.close()
                    raise HttpError(f"{method} http://{self.host}:{self.port}{target}: timed out") from exc
                except (ValueError, IndexError) as exc:
                    await self.close()
                    raise HttpError(f"{method} http://{self.host}:{self.port}{target}: malformed reply ({exc})") from exc
        raise HttpError("unreachable")

    async def get_json(self, target: str, timeout: float | None = None) -> Any:
        status, data = await self.request("GET", target, None, timeout)
        return _json_reply(self, target, status, data)

    async def post_json(self, target: str, obj: Any, timeout: float | None = None) -> Any:
        status, data = await self.request("POST", target, json.dumps(obj, separators=(",", ":")).encode(), timeout)
        return _json_reply(self, target, status, data)


def _json_reply(client: HttpClient, target: str, status: int, data: bytes) -> Any:
    if status != 200:
        raise HttpError(f"http://{client.host}:{client.port}{target}: HTTP {status} {data[:200].decode('utf-8', 'replace')}")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise HttpError(f"http://{client.host}:{client.port}{target}: not JSON ({exc})") from exc
