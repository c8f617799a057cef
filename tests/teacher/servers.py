"""Local servers for teacher tests: real sockets on 127.0.0.1, no mocked libraries.

`StubServer` speaks raw HTTP/1.1 (asyncio streams) so every fault is exactly what we say it is:
a 500, a 429 with Retry-After, a reply that hangs past the client's timeout, a body cut off
mid-way, an HTML page instead of JSON, a dropped connection, or model text that is not JSON.

`OllamaStandIn` is a protocol stand-in: no Ollama binary can be installed on these machines
(not on PyPI, apt or npm; FACTS.md), so it implements the documented /api/chat (non-streaming)
and /api/tags, answering with a real llama.cpp model.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OK = "ok"
FAULTS = ("ok", "500", "503", "429", "hang", "truncated", "not_json", "drop", "bad_content", "bad_json")
ITEM = re.compile(r"item (\d+)")


@dataclass
class Arrival:
    item: int | None
    attempt: int
    fault: str
    at: float
    concurrent: int
    body: dict[str, Any]


@dataclass
class StubServer:
    """An OpenAI-compatible /v1/chat/completions whose behaviour is scripted per request.

    `plan(item, attempt)` names the fault for the attempt-th request about "item N" (the number
    is read from the first user message). Above `max_concurrent` requests at once it answers
    429; with `slots` it serves that many at once and queues the rest (first come, first served),
    as a model server with N slots does. 429 and 503 are answered at once, other replies after
    `latency`. Replies echo the item so tests can check what came back
    belongs to what was asked; `content(body)` replaces the model's text of a good reply.
    """

    plan: Callable[[int | None, int], str] = lambda item, attempt: OK
    latency: float = 0.0
    max_concurrent: int | None = None
    slots: int | None = None
    content: Callable[[dict[str, Any]], str] | None = None
    retry_after: float = 1.0
    hang_seconds: float = 2.0
    max_requests: int = 5000  # a runaway client cannot keep a test alive forever
    arrivals: list[Arrival] = field(default_factory=list)
    _attempts: dict[int | None, int] = field(default_factory=dict)
    _concurrent: int = 0
    _slots: asyncio.Semaphore | None = None
    _server: asyncio.AbstractServer | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, port: int = 0) -> str:
        if self.slots is not None:
            self._slots = asyncio.Semaphore(self.slots)
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", port, backlog=4096)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):  # keep-alive connections must not outlive the test
            writer.close()
        for task in list(self._handlers):  # e.g. a reply still "hanging"
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)

    def attempts_of(self, item: int) -> int:
        return self._attempts.get(item, 0)

    @property
    def requests(self) -> int:
        return len(self.arrivals)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while len(self.arrivals) < self.max_requests:
                body = await _read_request(reader)
                if body is None:
                    break
                if not await self._answer(body, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or the test is over
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        """Write one response; False when the connection must end."""
        item = _item_of(body)
        attempt = self._attempts[item] = self._attempts.get(item, 0) + 1
        self._concurrent += 1
        try:
            over = self.max_concurrent is not None and self._concurrent > self.max_concurrent
            fault = "429" if over else self.plan(item, attempt)
            self.arrivals.append(Arrival(item, attempt, fault, time.monotonic(), self._concurrent, body))
            if over or fault in ("429", "503"):  # a rate limiter answers at once, holding no slot
                return await self._write_fault(fault, item, body, writer)
            if self._slots is None:
                await asyncio.sleep(self.latency)
                return await self._write_fault(fault, item, body, writer)
            async with self._slots:  # a slot is held while the reply is computed, not while it is sent
                await asyncio.sleep(self.latency)
            return await self._write_fault(fault, item, body, writer)
        finally:
            self._concurrent -= 1

    async def _write_fault(self, fault: str, item: int | None, body: dict[str, Any],
                           writer: asyncio.StreamWriter) -> bool:
        if fault == "drop":
            return False
        if fault == "hang":
            await asyncio.sleep(self.hang_seconds)
            return False
        if fault == "truncated":
            payload = json.dumps(_completion(body, item)).encode()
            head = _head(200, len(payload), "application/json")
            writer.write(head + payload[: len(payload) // 2])
            await writer.drain()
            return False
        if fault == "not_json":
            await _send(writer, 200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif fault == "bad_content":
            await _send_json(writer, 200, _completion(body, item, content='Sure! Here it is: {"answer": "item'))
        elif fault == "bad_json":  # the model's JSON cut off, as at max_tokens
            text = self.content(body) if self.content else json.dumps({"answer": f"item {item}"})
            await _send_json(writer, 200, _completion(body, item, content=text[: len(text) // 2]))
        elif fault in ("500", "503"):
            await _send_json(writer, int(fault), {"error": {"message": "model crashed", "type": "server_error"}})
        elif fault == "429":
            await _send_json(writer, 429, {"error": {"message": "slow down"}},
                             extra=f"Retry-After: {self.retry_after:g}\r\n" if self.max_concurrent is None else "")
        else:
            await _send_json(writer, 200, _completion(body, item, self.content(body) if self.content else None))
        return True


async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    raw = await reader.readexactly(length) if length else b"{}"
    return json.loads(raw)


def _item_of(body: dict[str, Any]) -> int | None:
    for message in body.get("messages", []):
        if message.get("role") == "user":
            match = ITEM.search(message.get("content", ""))
            return int(match.group(1)) if match else None
    return None


def _completion(body: dict[str, Any], item: int | None, content: str | None = None) -> dict[str, Any]:
    if content is None:
        content = json.dumps({"answer": f"item {item}"}) if body.get("response_format") else f"answer to item {item}"
    prompt_chars = sum(len(m.get("content", "")) for m in body.get("messages", []))
    return {
        "id": "stub", "object": "chat.completion", "model": body.get("model", ""),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(content) // 4 + 1},
    }


def _head(status: int, length: int, content_type: str, extra: str = "") -> bytes:
    reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    return (f"HTTP/1.1 {status} {reason.get(status, 'Status')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


async def _send(writer: asyncio.StreamWriter, status: int, payload: bytes, content_type: str, extra: str = "") -> None:
    writer.write(_head(status, len(payload), content_type, extra) + payload)
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, data: Any, extra: str = "") -> None:
    await _send(writer, status, json.dumps(data).encode(), "application/json", extra)


# -- Ollama ------------------------------------------------------------------------------------

OLLAMA_DEFAULT_NUM_CTX = 2048  # what older Ollama uses when a request names no num_ctx


@dataclass
class OllamaStandIn:
    """Ollama's /api/chat and /api/tags (documented contract), answered by llama.cpp.

    Set `think_prefix` to make every reply start with a reasoning block, as a reasoning model
    does; set `max_generate` to keep tests fast where the answer's length does not matter.
    `requests` keeps each request body; `truncated` lists requests whose prompt would not
    have fit their num_ctx (real Ollama would have cut them silently).
    """

    llama: Any
    model_name: str = "smollm2:135m"
    think_prefix: str = ""
    max_generate: int | None = None  # decode at most this many tokens whatever num_predict says
    requests: list[dict[str, Any]] = field(default_factory=list)
    truncated: list[dict[str, Any]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": self.model_name, "model": self.model_name, "size": 1}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if body.get("model") != self.model_name:
            return web.json_response({"error": f"model '{body.get('model')}' not found"}, status=404)
        if body.get("stream", True):
            return web.json_response({"error": "this stand-in serves only stream: false"}, status=400)
        result = await asyncio.to_thread(self._generate, body)
        usage = result["usage"]
        num_ctx = body.get("options", {}).get("num_ctx", OLLAMA_DEFAULT_NUM_CTX)
        if usage["prompt_tokens"] + usage["completion_tokens"] > num_ctx:
            self.truncated.append(body)
        choice = result["choices"][0]
        return web.json_response({
            "model": self.model_name,
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": self.think_prefix + (choice["message"]["content"] or "")},
            "done": True,
            "done_reason": choice.get("finish_reason") or "stop",
            "prompt_eval_count": usage["prompt_tokens"],
            "eval_count": usage["completion_tokens"],
        })

    def _generate(self, body: dict[str, Any]) -> dict[str, Any]:
        options = body.get("options", {})
        arguments: dict[str, Any] = {"messages": body["messages"], "temperature": options.get("temperature", 0.8),
                                     "max_tokens": min(options.get("num_predict", 128), self.max_generate or 1 << 30)}
        fmt = body.get("format")
        if isinstance(fmt, dict):
            arguments["response_format"] = {"type": "json_object", "schema": fmt}
        elif fmt == "json":
            arguments["response_format"] = {"type": "json_object"}
        with self._lock:  # a Llama object is not thread-safe
            return self.llama.create_chat_completion(**arguments)
