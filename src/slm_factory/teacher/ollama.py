"""Ollama through its native /api/chat (not /api/generate, not its OpenAI shim).

The native API is the one that takes a JSON schema in `format`, `think`, `keep_alive` and
`options.num_ctx`. num_ctx matters most: Ollama's default window is small and a longer prompt
is silently cut from the front, so every request states a window that fits it.
"""

from __future__ import annotations

from typing import Any

from slm_factory.teacher.base import (
    AttemptError,
    Backend,
    ChatRequest,
    Completion,
    Health,
    Message,
    estimate_prompt_tokens,
)
from slm_factory.teacher.http import TRANSPORT_ERRORS, HttpClient, describe_error, raise_for_status
from slm_factory.teacher.jsonreply import schema_instruction, with_instruction

START_ADVICE = "start it with `ollama serve`"

# Ollama reloads the model whenever num_ctx changes, so windows come in coarse steps
# (powers of two and 1.5x between them) and never shrink during a run.
CONTEXT_STEPS = sorted({2**k for k in range(12, 18)} | {3 * 2**k for k in range(11, 17)})


def context_window(needed_tokens: int, floor: int = 0) -> int:
    """The smallest step that holds `needed_tokens`, and at least `floor`."""
    for step in CONTEXT_STEPS:
        if step >= needed_tokens and step >= floor:
            return step
    return max(needed_tokens, floor)


def normalise_base(url: str) -> str:
    url = url.rstrip("/")
    return url.removesuffix("/api")


class OllamaBackend(Backend):
    name = "ollama"

    def __init__(self, bases: list[str], model: str, *, timeout: float = 180, keep_alive: str = "30m",
                 num_ctx: int = 0, concurrency: int = 4) -> None:
        self.model = model
        self.keep_alive = keep_alive
        self.num_ctx_cap = num_ctx  # 0: no cap
        self._timeout = timeout
        self._http = HttpClient([normalise_base(b) for b in bases], limit=concurrency, timeout=timeout,
                                down_advice=START_ADVICE)
        self._window_floor = 0
        self._scale = 1.0  # grows when Ollama counts more prompt tokens than we estimated
        self._schema_in_format = True  # Ollama before 0.5 takes only format: "json"
        self._send_think = True  # some versions reject `think` for models without reasoning

    def context_for(self, messages: list[Message], max_tokens: int) -> int:
        """num_ctx for a request: prompt estimate plus the whole answer, in coarse steps."""
        needed = int(estimate_prompt_tokens(messages) * self._scale) + max_tokens
        window = context_window(needed, self._window_floor)
        if self.num_ctx_cap and window > self.num_ctx_cap:
            if needed > self.num_ctx_cap:
                raise AttemptError(
                    f"the prompt (~{needed - max_tokens} tokens) plus max_tokens {max_tokens} "
                    f"needs num_ctx {needed}, above teacher.num_ctx {self.num_ctx_cap}; raise it or shorten chunks",
                    "too_long", retryable=False)
            window = self.num_ctx_cap
        self._window_floor = max(self._window_floor, window)
        return window

    def body(self, request: ChatRequest) -> dict[str, Any]:
        messages = request.messages
        body: dict[str, Any] = {"model": self.model, "stream": False, "keep_alive": self.keep_alive}
        if request.schema is not None:
            if self._schema_in_format:
                body["format"] = request.schema
            else:
                body["format"] = "json"
                messages = with_instruction(messages, schema_instruction(request.schema))
        if self._send_think:
            body["think"] = False  # reasoning models answer directly (any <think> left is stripped)
        body["messages"] = messages
        body["options"] = {"temperature": request.temperature, "num_predict": request.max_tokens,
                           "num_ctx": self.context_for(messages, request.max_tokens), **request.options}
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        for _ in range(3):  # at most two protocol downgrades, then a real answer or error
            body = self.body(request)
            reply = await self._http.post("/api/chat", body)
            detail = reply.text.lower()
            if reply.status == 400 and "think" in detail and self._send_think:
                self._send_think = False
                continue
            if reply.status in (400, 500) and "format" in detail and isinstance(body.get("format"), dict):
                self._schema_in_format = False
                continue
            break
        if reply.status == 404:
            raise AttemptError(f"Ollama at {reply.url} does not have model {self.model}; "
                               f"pull it with `ollama pull {self.model}`", "not_found", retryable=False, url=reply.url)
        raise_for_status(reply, "Ollama")
        estimate = estimate_prompt_tokens(body["messages"])
        return self._completion(reply.json(), reply.url, body["options"]["num_ctx"], estimate)

    def _completion(self, data: Any, url: str, num_ctx: int, estimate: int) -> Completion:
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise AttemptError(f"{url} sent a reply without message.content", "bad_reply", url=url)
        prompt_tokens = int(data.get("prompt_eval_count") or 0)
        completion_tokens = int(data.get("eval_count") or 0)
        if prompt_tokens > estimate * self._scale:
            # Our estimate was low for this model's tokenizer; size later windows larger.
            self._scale = prompt_tokens / estimate * 1.1
        if prompt_tokens + completion_tokens >= num_ctx:
            # The window filled up: Ollama may have cut the prompt. The next try is larger.
            raise AttemptError(f"the reply filled the whole context window ({num_ctx} tokens) at {url}",
                               "too_long", url=url, prompt_tokens=prompt_tokens,
                               completion_tokens=completion_tokens)
        return Completion(message["content"], prompt_tokens, completion_tokens, data.get("done_reason"), url)

    async def health(self) -> list[Health]:
        return [await self._health_of(endpoint.url) for endpoint in self._http.endpoints]

    async def _health_of(self, base: str) -> Health:
        try:
            status, tags = await self._http.get_json(base, "/api/tags", min(self._timeout, 10))
        except TRANSPORT_ERRORS as error:
            return Health(False, f"Ollama does not answer at {base} ({describe_error(error)})", START_ADVICE)
        if status != 200 or not isinstance(tags, dict):
            return Health(False, f"{base}/api/tags answered HTTP {status}; is this Ollama?", "check teacher.api_base")
        names = {m.get("name", "") for m in tags.get("models", []) if isinstance(m, dict)}
        wanted = self.model if ":" in self.model else f"{self.model}:latest"
        if wanted in names or self.model in names:
            return Health(True, f"Ollama at {base} has {self.model}")
        return Health(False, f"Ollama at {base} does not have {self.model}", f"pull it with `ollama pull {self.model}`")

    async def aclose(self) -> None:
        await self._http.aclose()

