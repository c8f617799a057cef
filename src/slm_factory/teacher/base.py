"""The teacher's vocabulary: requests, replies, errors, and the Backend extension point.

A backend turns one `ChatRequest` into one `Completion` (a single attempt) or raises
`AttemptError` saying whether trying again could help. Everything that is the same for every
backend -- concurrency, retries, JSON parsing and re-asking, the cache, accounting -- lives in
`Teacher` (pool.py), so a backend stays a thin translation of one server's protocol.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from slm_factory.tokens import estimate_tokens

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}

# Why a request failed. Callers may branch on it, e.g. stop a stage early on "unreachable".
ErrorKind = Literal[
    "unreachable",  # nothing answers at the URL
    "timeout",  # no reply within teacher.timeout
    "overloaded",  # 429 / 503: the server asks us to slow down
    "server",  # other 5xx
    "bad_reply",  # the HTTP body is not what the protocol promises (non-JSON, cut off)
    "bad_json",  # the model's text is not JSON matching the schema
    "auth",  # 401 / 403
    "not_found",  # unknown model or wrong URL
    "too_long",  # the prompt does not fit the context window
    "rejected",  # another 4xx: the server refuses this request as written
    "config",  # the teacher section cannot work as configured
]


@dataclass(frozen=True)
class ChatRequest:
    """One question to the teacher, as every backend receives it."""

    messages: list[Message]
    schema: dict[str, Any] | None = None  # JSON schema the reply must match
    temperature: float = 0.3
    max_tokens: int = 1024
    options: dict[str, Any] = field(default_factory=dict)  # extra sampling keys (top_p, seed, ...)


@dataclass(frozen=True)
class Completion:
    """What one successful attempt returned, before JSON parsing."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class Reply:
    """The answer to `Teacher.chat`.

    `parsed` holds the JSON value when a schema was given (a model instance when the schema was
    a pydantic model class). `latency` is the seconds the successful attempt took (not the wait
    for a slot, nor earlier attempts). `attempts` is 0 for a reply served from the cache.
    """

    text: str
    parsed: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    attempts: int = 1
    cached: bool = False
    model: str = ""
    finish_reason: str | None = None


class TeacherError(Exception):
    """A request that failed for good (after retries). The caller records it and goes on."""

    def __init__(self, reason: str, kind: ErrorKind, *, url: str | None = None, attempts: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.url = url
        self.attempts = attempts

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready line for a failures list (never holds a secret)."""
        return {"kind": self.kind, "reason": self.reason, "url": self.url, "attempts": self.attempts}


class AttemptError(Exception):
    """One attempt failed. `retryable` and `overload` tell the pool what to do next."""

    def __init__(
        self,
        reason: str,
        kind: ErrorKind,
        *,
        retryable: bool = True,
        overload: bool = False,
        retry_after: float | None = None,
        url: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status  # the HTTP status, where one came: stats count 429 apart from 503
        self.retryable = retryable
        self.overload = overload
        self.retry_after = retry_after
        self.url = url
        # Tokens the server spent on a reply we could not use still cost money: count them.
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


@dataclass(frozen=True)
class Health:
    """One line of `slm-factory check` about the teacher."""

    ok: bool
    label: str
    advice: str = ""


class Backend(ABC):
    """One teacher protocol. Subclass it to add a backend (tests add scripted ones the same way)."""

    name: ClassVar[str]
    model: str
    # Requests the backend can usefully run at once; None = as many as the pool allows.
    parallel: int | None = None

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """One attempt. Raise AttemptError on failure; never retry here."""

    @abstractmethod
    async def health(self) -> list[Health]:
        """Is the teacher reachable and does it have the model? Quick, for `check`."""

    async def aclose(self) -> None:
        """Release connections; the backend is not used afterwards."""

    def identity(self) -> dict[str, str]:
        """What, besides the request, decides the reply: part of the cache key."""
        return {"backend": self.name, "model": self.model}


def estimate_prompt_tokens(messages: list[Message]) -> int:
    # ~8 tokens per message for the chat template's role markers.
    return sum(estimate_tokens(m.get("content") or "") + 8 for m in messages)
