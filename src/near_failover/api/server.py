"""Serve the API with uvicorn inside the agent's own event loop.

The agent owns the process: its signals (uvicorn must not install handlers for SIGINT/SIGTERM,
which would swallow the agent's own shutdown), its exit (uvicorn calls ``sys.exit`` when it cannot
bind; here the socket is bound first so that failure is an ordinary, explained exception), and
stdout (uvicorn's access log goes to stdout by default; here all logging goes to stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

log = logging.getLogger("near_failover.api")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8008
# On stop, requests in flight get this long; then connections are closed.
GRACEFUL_SHUTDOWN = 3  # uvicorn takes whole seconds
TICKS_PER_SECOND = 10  # uvicorn's main loop refreshes its Date header every tenth tick

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "near_failover.api": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


class ApiServerError(Exception):
    """The API cannot listen where the inventory says; the message names the address and the fix."""


@dataclass(frozen=True)
class ServerTls:
    """The agent API's certificate and private key (PEM), from the node's api_cert_file/api_key_file."""

    cert_file: Path
    key_file: Path

    def check(self) -> None:
        """Load them now, so a wrong file stops the agent at start with the file named."""
        mode = self.key_file.stat().st_mode if self.key_file.exists() else 0
        if mode & 0o077:
            raise ApiServerError(f"api_key_file {self.key_file}: readable by others (mode {mode & 0o777:o}); run chmod 600 {self.key_file}")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ApiServerError(
                f"cannot use api_cert_file {self.cert_file} with api_key_file {self.key_file}: {reason}; "
                "give the node's PEM certificate and its private key"
            ) from None


class _AgentOwnedServer(uvicorn.Server):
    """uvicorn's server without its signal handlers: the agent decides when the process stops.

    Nor its ten wake-ups a second: uvicorn's main loop sleeps 0.1 s between looks at
    ``should_exit``, and its Date header changes once a second. Here the loop looks once a
    second, and at once when told to exit (issue 13: the agent is under 1 % of a core)."""

    def __init__(self, config: uvicorn.Config, ready: asyncio.Event | None) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)
        self._ready = ready

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        ticks = 0  # uvicorn counts tenths of a second: each of ours is ten
        while not await self.on_tick(ticks):
            ticks = (ticks + TICKS_PER_SECOND) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._ready is not None:
            self._ready.set()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket, or an ApiServerError that says what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ApiServerError(f"cannot listen on {host}:{port}: {exc.strerror}; fix the node's api address in the inventory") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiServerError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; another process may use the port "
            "(ss -ltnp), or change the node's api address in the inventory"
        ) from None
    return sock


class ApiServer:
    """One running API. ``port`` is the bound port (useful with port 0); ``stop()`` ends ``run()``."""

    def __init__(self, app: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, tls: ServerTls | None = None) -> None:
        self.app, self.host, self.tls = app, host, tls
        if tls is not None:
            tls.check()
        self.sock = bind_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        self._server: _AgentOwnedServer | None = None
        if not _is_loopback(host):
            log.warning("the agent API listens on %s:%s, beyond this machine; only POSTs need the token%s", host, self.port,
                        "" if tls else ", and without TLS the token travels in clear: give the node an https:// api")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def run(self, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop()``, ``stop`` is set, or the task is cancelled; each ends gracefully."""
        tls = self.tls
        config = uvicorn.Config(
            self.app, log_config=LOG_CONFIG, access_log=False, lifespan="off", server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN, proxy_headers=False,
            ssl_certfile=str(tls.cert_file) if tls else None, ssl_keyfile=str(tls.key_file) if tls else None,
        )
        self._server = server = _AgentOwnedServer(config, ready)
        serving = asyncio.ensure_future(server.serve(sockets=[self.sock]))
        watcher = asyncio.ensure_future(self._stop_when(stop)) if stop is not None else None
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(serving, GRACEFUL_SHUTDOWN + 2)
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
            self.sock.close()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


async def serve(app: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
                tls: ServerTls | None = None) -> None:
    """Serve ``app`` in the running loop until ``stop`` is set or this task is cancelled.

    ``ready`` is set once the socket accepts connections. Raises ApiServerError when the address
    cannot be bound (before anything else happens).
    """
    await ApiServer(app, host, port, tls).run(ready=ready, stop=stop)
