"""Any OpenAI-compatible server: vLLM, llama.cpp's server, LM Studio, OpenAI itself.

Structured output differs by server, so the backend negotiates it once per run: OpenAI's
`json_schema` response_format first; servers that refuse it (llama-cpp-python's server answers
HTTP 500 naming response_format) get `json_object` with a `schema` key, and servers that refuse
that too get the schema in the prompt. The pool validates and re-asks in every mode.
"""

from __future__ import annotations

import os
from typing import Any

from slm_factory.teacher.base import AttemptError, Backend, ChatRequest, Completion, Health
from slm_factory.teacher.http import (
    TRANSPORT_ERRORS,
    HttpClient,
    HttpReply,
    describe_error,
    raise_for_status,
)
from slm_factory.teacher.jsonreply import schema_instruction, with_instruction

START_ADVICE = "start one, e.g. `vllm serve MODEL` or `python -m llama_cpp.server --model X.gguf`"
MODES = ("json_schema", "json_object", "prompted")


def normalise_base(url: str) -> str:
    """api_base may be given with or without /v1; we keep it without."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, bases: list[str], model: str, *, api_key: str | None = None, timeout: float = 180,
                 concurrency: int = 4) -> None:
        self.model = model
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        # The key lives only in the session's default headers: never in messages, reprs or state.
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = timeout
        self._http = HttpClient([normalise_base(b) for b in bases], limit=concurrency, timeout=timeout,
                                headers=headers, down_advice=START_ADVICE)
        self.mode = MODES[0]
        self.format_fallbacks = 0

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, mode={self.mode!r})"

    def body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": request.messages,
                                "temperature": request.temperature, "max_tokens": request.max_tokens,
                                **request.options}
        if request.schema is None:
            return body
        if self.mode == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": request.schema}}
        else:
            # Servers without schema support still do better when told the shape.
            body["messages"] = with_instruction(request.messages, schema_instruction(request.schema))
            if self.mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": request.schema}
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        while True:
            mode = self.mode
            reply = await self._http.post("/v1/chat/completions", self.body(request))
            if request.schema is None or mode == "prompted" or not _refuses_format(reply):
                break
            if self.mode == mode:  # concurrent requests may have stepped down already
                self.mode = MODES[MODES.index(mode) + 1]
                self.format_fallbacks += 1
        if reply.status == 404:
            raise AttemptError(f"{reply.url} does not serve model {self.model} (HTTP 404); check teacher.api_base "
                               "and teacher.model", "not_found", retryable=False, url=reply.url)
        if reply.status == 400 and "context" in reply.text.lower():
            raise AttemptError(f"the prompt does not fit {self.model}'s context window at {reply.url}", "too_long",
                               retryable=False, url=reply.url)
        raise_for_status(reply, "the server")
        return _completion(reply.json(), reply.url)

    async def health(self) -> list[Health]:
        return [await self._health_of(endpoint.url) for endpoint in self._http.endpoints]

    async def _health_of(self, base: str) -> Health:
        try:
            status, listing = await self._http.get_json(base, "/v1/models", min(self._timeout, 10))
        except TRANSPORT_ERRORS as error:
            return Health(False, f"no OpenAI-compatible server at {base} ({describe_error(error)})", START_ADVICE)
        if status in (401, 403):
            return Health(False, f"{base}/v1/models answered HTTP {status}", "check teacher.api_key or OPENAI_API_KEY")
        if status != 200 or not isinstance(listing, dict):
            return Health(False, f"{base}/v1/models answered HTTP {status}", "check teacher.api_base")
        ids = {m.get("id") for m in listing.get("data", []) if isinstance(m, dict)}
        if self.model in ids:
            return Health(True, f"server at {base} serves {self.model}")
        served = ", ".join(sorted(i for i in ids if i)) or "nothing"
        return Health(False, f"server at {base} does not serve {self.model} (it serves: {served})",
                      "set teacher.model to a served model")

    async def aclose(self) -> None:
        await self._http.aclose()


def _refuses_format(reply: HttpReply) -> bool:
    return reply.status in (400, 422, 500) and "response_format" in reply.text


def _completion(data: Any, url: str) -> Completion:
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise AttemptError(f"{url} sent a reply without choices[0].message.content", "bad_reply", url=url) from None
    usage = data.get("usage") or {}
    if not isinstance(text, str):  # a refusal or a tool call instead of text
        raise AttemptError(f"{url} sent no text (finish_reason {choice.get('finish_reason')})", "bad_reply", url=url,
                           prompt_tokens=int(usage.get("prompt_tokens") or 0),
                           completion_tokens=int(usage.get("completion_tokens") or 0))
    return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                      choice.get("finish_reason"), url)
