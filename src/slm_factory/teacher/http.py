"""One pooled aiohttp session per run, spread over one or more endpoints.

aiohttp, not httpx: on these machines httpx's AsyncClient reached 27% of the ideal rate at 64
concurrent 200 ms requests, aiohttp 94% (FACTS.md). The session is created lazily inside the
running event loop (a session belongs to the loop it was made in) and closed by `aclose`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from slm_factory.teacher.base import AttemptError

# What a request can raise when the server is away or misbehaves (health checks catch these).
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass
class Endpoint:
    url: str
    in_flight: int = 0
    failures: int = 0  # consecutive
    retry_at: float = 0.0  # monotonic time before which we prefer other endpoints

    def failed(self, pause: float | None = None) -> None:
        self.failures += 1
        backoff = min(30.0, 0.5 * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + (pause if pause is not None else backoff)

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0


@dataclass(frozen=True)
class HttpReply:
    url: str
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON, or AttemptError: a proxy's HTML page or a cut-off body is retryable."""
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AttemptError(
                f"{self.url} answered HTTP {self.status} with a body that is not JSON ({self.text[:60]!r})",
                "bad_reply",
                url=self.url,
            ) from None


class HttpClient:
    """POST JSON to the least-busy healthy endpoint; map transport failures to AttemptError."""

    def __init__(self, bases: list[str], *, limit: int, timeout: float, headers: dict[str, str] | None = None,
                 down_advice: str = "") -> None:
        if not bases:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = [Endpoint(base) for base in bases]
        self._limit = limit
        self._timeout = timeout
        self._headers = headers or {}
        self._down_advice = down_advice  # e.g. "start it with `ollama serve`"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn = itertools.count()

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session belongs to the loop it was made in; a new asyncio.run needs a new one.
            self._loop = loop
            # Room for every request the window allows on every endpoint, plus health calls.
            connector = aiohttp.TCPConnector(limit=self._limit + len(self.endpoints), limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers=self._headers,
            )
        return self._session

    def choose(self) -> Endpoint:
        """Least in flight among endpoints not recently failing (a failed one is skipped until its
        pause ends, so a retry goes elsewhere); round-robin among equals."""
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        now = time.monotonic()
        healthy = [e for e in self.endpoints if e.retry_at <= now]
        if not healthy:
            return min(self.endpoints, key=lambda e: e.retry_at)
        turn = next(self._turn) % len(healthy)
        return min(healthy[turn:] + healthy[:turn], key=lambda e: e.in_flight)

    async def post(self, path: str, body: dict[str, Any]) -> HttpReply:
        """One POST. Transport errors raise AttemptError; any HTTP status comes back as a reply."""
        endpoint = self.choose()
        url = endpoint.url + path
        endpoint.in_flight += 1
        try:
            async with self._get_session().post(url, json=body) as response:
                reply = HttpReply(url, response.status, await response.read(), dict(response.headers))
        except asyncio.TimeoutError:
            endpoint.failed()
            raise AttemptError(f"no reply from {url} within {self._timeout:g} s", "timeout",
                               overload=True, url=url) from None
        except aiohttp.ClientConnectorError as error:
            endpoint.failed()
            advice = f"; {self._down_advice}" if self._down_advice else ""
            raise AttemptError(f"cannot connect to {endpoint.url} ({describe_error(error)}){advice}", "unreachable",
                               url=url) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
            endpoint.failed()
            raise AttemptError(f"{url} dropped the connection mid-reply ({describe_error(error)})", "bad_reply",
                               url=url) from None
        except aiohttp.ClientError as error:
            endpoint.failed()
            raise AttemptError(f"request to {url} failed ({describe_error(error)})", "bad_reply", url=url) from None
        finally:
            endpoint.in_flight -= 1
        if reply.status == 429 or reply.status >= 500:
            endpoint.failed(retry_after(reply))
        else:
            endpoint.succeeded()
        return reply

    async def get_json(self, base: str, path: str, timeout: float) -> tuple[int, Any]:
        """For health checks: status and JSON body (None when the body is not JSON)."""
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with self._get_session().get(base + path, timeout=client_timeout) as response:
            body = await response.read()
        try:
            return response.status, json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return response.status, None

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def retry_after(reply: HttpReply) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from model servers; ignored)."""
    value = reply.headers.get("Retry-After") or reply.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def raise_for_status(reply: HttpReply, what: str) -> None:
    """The statuses every backend treats alike. `what` names the server for messages."""
    status = reply.status
    if status < 400:
        return
    detail = _error_detail(reply)
    if status in (429, 503):
        raise AttemptError(f"{what} at {reply.url} is overloaded (HTTP {status})", "overloaded",
                           overload=True, retry_after=retry_after(reply), url=reply.url, status=status)
    if status == 408 or status == 504:
        raise AttemptError(f"{what} at {reply.url} timed out (HTTP {status})", "timeout", overload=True,
                           url=reply.url, status=status)
    if status >= 500:
        raise AttemptError(f"{what} at {reply.url} failed (HTTP {status}: {detail})", "server", url=reply.url,
                           status=status)
    if status in (401, 403):
        raise AttemptError(f"{what} at {reply.url} refused the credentials (HTTP {status}); check teacher.api_key",
                           "auth", retryable=False, url=reply.url)
    if status == 413:
        raise AttemptError(f"{what} at {reply.url}: request too large (HTTP 413)", "too_long", retryable=False,
                           url=reply.url)
    raise AttemptError(f"{what} at {reply.url} rejected the request (HTTP {status}: {detail})", "rejected",
                       retryable=False, url=reply.url)


def _error_detail(reply: HttpReply) -> str:
    """The server's own error message, short; servers never echo our Authorization header."""
    try:
        data = json.loads(reply.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return reply.text[:200].strip() or "empty body"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:200]


def describe_error(error: BaseException) -> str:
    """A short cause: "Connection refused", not aiohttp's repr."""
    os_error = getattr(error, "os_error", None) or (error if isinstance(error, OSError) else None)
    if isinstance(os_error, OSError) and os_error.errno:
        return os.strerror(os_error.errno)
    return str(error) or type(error).__name__
