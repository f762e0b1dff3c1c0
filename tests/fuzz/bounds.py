"""What every fuzzing test shares: the example budget, the time and memory bound, and strategies
that mutate genuine inputs (nearcore's fixtures, the example inventory) as well as invent new ones.

`make test` runs a fixed, derandomized budget; `make fuzz` sets FUZZ_EXAMPLES for a long random run.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")

LONG_RUN = int(os.environ.get("FUZZ_EXAMPLES", "0"))
# Per parser: the number of examples, a deadline per example (a hang or a quadratic blow-up
# fails, a loaded machine does not) and no example database (the run is reproducible as it is).
FUZZ = settings(
    max_examples=LONG_RUN or 40,
    derandomize=not LONG_RUN,
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
# Far above what any example here needs (inputs are a few KiB): an unbounded read or a parser
# that copies without end fails it.
MEMORY_BOUND = 64 * 1024 * 1024


def within_memory(call: Callable[[], T]) -> T:
    """Run ``call`` and fail if it allocated more than MEMORY_BOUND at its peak."""
    tracemalloc.start()
    try:
        return call()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"peak {peak} bytes"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=24,
)


@st.composite
def mutated_json(draw: st.DrawFn, seed: Any) -> Any:
    """``seed`` with some subtrees replaced, dropped or retyped: inputs that look almost right.
    How much is changed is drawn too, from one subtree in ten to every other one."""
    rate = draw(st.sampled_from([2, 4, 10]))

    def walk(value: Any) -> Any:
        if draw(st.integers(0, rate - 1)) == 0 and draw(st.booleans()):
            return draw(json_values)
        if isinstance(value, dict):
            out = {}
            for key, inner in value.items():
                if draw(st.integers(0, 2 * rate)) == 0:
                    continue  # a field dropped
                out[key] = walk(inner)
            return out
        if isinstance(value, list):
            return [walk(inner) for inner in value[: draw(st.integers(0, len(value)))]]
        return value

    return walk(seed)


@st.composite
def mutated_text(draw: st.DrawFn, seed: str) -> str:
    """``seed`` with a few characters inserted, deleted or cut off: broken files, not random ones."""
    text = seed
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.integers(0, 2))
        if action == 0:
            text = text[:at] + draw(st.text(max_size=6)) + text[at:]
        elif action == 1:
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
        else:
            text = text[:at]
    return text


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


class AnswerServer:
    """A real HTTP server on loopback that answers requests with the answers the current example
    set, in order (the last one repeats): what a broken or hostile peer could send."""

    def __init__(self) -> None:
        self._answers: list[tuple[int, bytes]] = [(200, b"")]
        self._next = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = server._take()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def set(self, answers: list[tuple[int, bytes]]) -> None:
        with self._lock:
            self._answers, self._next = answers or [(200, b"")], 0

    def _take(self) -> tuple[int, bytes]:
        with self._lock:
            answer = self._answers[min(self._next, len(self._answers) - 1)]
            self._next += 1
            return answer

    def __enter__(self) -> AnswerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class LoopRunner:
    """One event loop for a whole fuzzing test, so a client (and its TLS context) is built once
    rather than once per example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.loop.close()
