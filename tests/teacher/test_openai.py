"""The openai backend against a real OpenAI-compatible server: llama_cpp.server with SmolLM2.

SmolLM2-135M is quantised and tiny: we check shapes, parsing and counts, never exact text.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from slm_factory.checks import check_teacher
from slm_factory.config import parse_config
from slm_factory.teacher import Teacher, TeacherError
from slm_factory.teacher.openai import OpenAIBackend


class Fact(BaseModel):
    city: str = Field(max_length=40)
    country: str = Field(max_length=40)


QUESTION = [{"role": "user", "content": "Name one large city in France and its country."}]


def run(coro):
    return asyncio.run(coro)


def test_plain_chat_counts_tokens(llama_server: str):
    async def main():
        async with Teacher(OpenAIBackend([llama_server], "smollm2"), max_tokens=24, temperature=0) as teacher:
            return await teacher.chat([{"role": "user", "content": "Say hello."}]), teacher.stats()

    reply, stats = run(main())
    assert reply.text.strip() and reply.attempts == 1 and not reply.cached
    assert reply.prompt_tokens > 0 and 0 < reply.completion_tokens <= 24
    assert stats["prompt_tokens"] == reply.prompt_tokens and stats["requests"] == 1


def test_schema_output_parses_and_validates(llama_server: str):
    """llama-cpp-python's server refuses OpenAI's json_schema format (HTTP 500 naming
    response_format); the backend steps down to json_object + schema, which it constrains."""

    async def main():
        backend = OpenAIBackend([llama_server + "/v1/"], "smollm2")  # api_base with /v1 works too
        async with Teacher(backend, max_tokens=80, temperature=0) as teacher:
            typed = await teacher.chat(QUESTION, schema=Fact)
            plain = await teacher.chat(QUESTION, schema=Fact.model_json_schema(), temperature=0.5)
            return typed, plain, teacher.stats(), backend.mode

    typed, plain, stats, mode = run(main())
    assert isinstance(typed.parsed, Fact) and typed.parsed.city
    assert isinstance(plain.parsed, dict) and set(plain.parsed) >= {"city", "country"}
    assert mode == "json_object" and stats["format_fallbacks"] == 1
    assert typed.prompt_tokens > 0 and typed.completion_tokens > 0 and stats["failures"] == 0


def test_health_and_check_use_the_server(llama_server: str):
    async def health(model: str):
        backend = OpenAIBackend([llama_server], model)
        try:
            return await backend.health()
        finally:
            await backend.aclose()

    assert run(health("smollm2"))[0].ok
    missing = run(health("gpt-9"))[0]
    assert not missing.ok and "it serves: smollm2" in missing.label

    config = parse_config({"teacher": {"backend": "openai", "model": "smollm2", "api_base": [llama_server]}})
    assert [c.ok for c in check_teacher(config)] == [True]


def test_prompt_beyond_the_context_window_fails_without_retries(llama_server: str):
    long_prompt = [{"role": "user", "content": "word " * 3000}]  # the server was started with n_ctx 2048

    async def main():
        async with Teacher(OpenAIBackend([llama_server], "smollm2"), max_retries=3, max_tokens=8) as teacher:
            try:
                await teacher.chat(long_prompt)
            except TeacherError as error:
                return error, teacher.stats()
            raise AssertionError("a prompt over the context window must fail")

    error, stats = run(main())
    assert error.kind == "too_long" and "context window" in error.reason
    assert stats["failures"] == 1 and stats["requests"] == 1  # retrying cannot make it fit
