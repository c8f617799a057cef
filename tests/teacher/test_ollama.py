"""The ollama backend against a protocol stand-in.

No Ollama binary can be installed on these machines (not on PyPI, apt or npm), so
`OllamaStandIn` (servers.py) implements Ollama's documented /api/chat and /api/tags and
answers with the real SmolLM2 model through llama.cpp. What is tested is our side of the
protocol: the fields we send (format, think, keep_alive, options.num_ctx) and how we read
replies; Ollama's own behaviour is taken from its API documentation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, Field

from slm_factory.teacher import Teacher, TeacherError
from slm_factory.teacher.ollama import CONTEXT_STEPS, OllamaBackend, context_window
from tests.teacher.servers import OLLAMA_DEFAULT_NUM_CTX, OllamaStandIn

MODEL = "smollm2:135m"


class Answer(BaseModel):
    answer: str = Field(max_length=60)


def with_standin(llama: Any, body, *, think_prefix: str = "", model: str = MODEL, max_generate: int | None = None,
                 **teacher_options):
    async def main():
        standin = OllamaStandIn(llama, think_prefix=think_prefix, max_generate=max_generate)
        url = await standin.start()
        backend = OllamaBackend([url], model, keep_alive="15m")
        try:
            async with Teacher(backend, temperature=0, **teacher_options) as teacher:
                return standin, await body(teacher)
        finally:
            await standin.stop()

    return asyncio.run(main())


def test_schema_goes_in_format_with_think_off_and_keep_alive(standin_llama):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    standin, reply = with_standin(standin_llama, lambda t: t.chat(question, schema=Answer), max_tokens=48)
    sent = standin.requests[0]
    assert sent["format"] == Answer.model_json_schema() and sent["think"] is False
    assert sent["stream"] is False and sent["keep_alive"] == "15m" and sent["model"] == MODEL
    assert sent["options"]["num_predict"] == 48 and sent["options"]["temperature"] == 0
    assert isinstance(reply.parsed, Answer) and reply.prompt_tokens > 0 and reply.completion_tokens > 0


def test_think_blocks_are_stripped_not_cut_with_stop_words(standin_llama):
    prefix = "<think>\nThe user wants JSON. {not: json} Let me answer.\n</think>\n\n"
    question = [{"role": "user", "content": "What is the capital of France?"}]

    async def both(teacher: Teacher):
        return await teacher.chat(question, schema=Answer), await teacher.chat(question, max_tokens=16)

    standin, (typed, plain) = with_standin(standin_llama, both, think_prefix=prefix, max_tokens=48)
    assert isinstance(typed.parsed, Answer) and "<think>" not in typed.text and "Let me" not in plain.text
    assert plain.text.strip() and all("stop" not in r.get("options", {}) for r in standin.requests)


def test_num_ctx_fits_prompt_and_answer_and_never_shrinks(standin_llama):
    # ~250 prompt tokens plus room for a 2,000-token answer: past Ollama's old 2048 default.
    document = " ".join(f"Section {i}: the committee approved budget line {i} for regional transit." for i in range(14))
    long_question = [{"role": "system", "content": "Answer from the document."},
                     {"role": "user", "content": f"{document}\n\nWhich budget line comes last?"}]
    short_question = [{"role": "user", "content": "Say yes."}]

    async def both(teacher: Teacher):
        return await teacher.chat(long_question, max_tokens=2000), await teacher.chat(short_question, max_tokens=8)

    standin, (long_reply, _) = with_standin(standin_llama, both, max_generate=8)
    long_ctx = standin.requests[0]["options"]["num_ctx"]
    short_ctx = standin.requests[1]["options"]["num_ctx"]
    assert long_ctx >= long_reply.prompt_tokens + 2000 > OLLAMA_DEFAULT_NUM_CTX
    assert long_ctx in CONTEXT_STEPS and short_ctx == long_ctx  # a change would reload the model
    assert standin.truncated == []


def test_context_steps_and_cap():
    assert context_window(100) == 4096 and context_window(5000) == 6144 and context_window(100, floor=8192) == 8192
    backend = OllamaBackend(["http://127.0.0.1:1"], "m", num_ctx=4096)
    assert backend.context_for([{"role": "user", "content": "x" * 6000}], 1024) == 4096
    with pytest.raises(Exception, match="above teacher.num_ctx 4096"):
        backend.context_for([{"role": "user", "content": "x" * 30000}], 1024)


def test_unknown_model_says_what_to_pull(standin_llama):
    async def body(teacher: Teacher):
        with pytest.raises(TeacherError) as caught:
            await teacher.chat([{"role": "user", "content": "hi"}])
        return caught.value, await teacher.health()

    _, (error, health) = with_standin(standin_llama, body, model="qwen3:8b", max_retries=3)
    assert error.kind == "not_found" and "ollama pull qwen3:8b" in error.reason and error.attempts == 1
    assert not health[0].ok and "does not have qwen3:8b" in health[0].label


def test_health_finds_the_model_in_tags(standin_llama):
    _, health = with_standin(standin_llama, lambda teacher: teacher.health())
    assert health[0].ok and MODEL in health[0].label
