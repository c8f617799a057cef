"""The embedded teacher cuts a reply that loops and asks again, instead of generating to max_tokens;
and it runs the bundled SmolLM2 requantized once to Q8_0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.teacher import ChatRequest, Teacher, TeacherError, make_backend
from slm_factory.teacher.llamacpp import LOOP_NGRAM, LOOP_REPEATS, LlamaCppBackend, LoopGuard, fast_copy

LOOPS = [
    "apple, " * 40,
    "".join(f"{n}. Apple 200\n" for n in range(1, 40)),  # a numbered list of one item (SmolLM2 does this)
    '{"questions": ["What is X?", ' + '"What is the deadline of the subsidy?", ' * 12,
    "청년 월세 지원 신청 기간은 언제인가요? " * 10,
]
APPLES = "Write the word apple 200 times."
NOT_LOOPS = [
    "Applications open on 1 March 2024 and close on 30 June 2024. The subsidy is 200,000 won a month.",
    "| Alabama | 18,870 | 23,022 | 22,650 | 859 | 1,178 | 0 | 14 | 15 | 0 | 2,179 | 2,307 | 11 | 0 | 0 | 0 |" * 3,
    ", ".join(str(n) for n in range(1, 200)),  # figures without words: a table, not a loop
    "The cat sat on the mat. " * (LOOP_REPEATS - 1),
]


def feed(text: str, size: int) -> LoopGuard:
    guard = LoopGuard(LOOP_NGRAM, LOOP_REPEATS)
    for start in range(0, len(text), size):
        if guard.feed(text[start : start + size]):
            break
    return guard


@pytest.mark.parametrize("size", [1, 3, 17])  # however the stream cuts the text into pieces
@pytest.mark.parametrize("text", LOOPS)
def test_a_loop_is_seen_early(text: str, size: int):
    guard = feed(text, size)
    assert guard.looped and len(guard.text) < len(text) * 0.6


@pytest.mark.parametrize("size", [1, 5])
@pytest.mark.parametrize("text", NOT_LOOPS)
def test_text_that_does_not_loop_streams_whole(text: str, size: int):
    guard = feed(text, size)
    assert not guard.looped and guard.text == text


@pytest.mark.slow
def test_the_embedded_model_is_cut_and_asked_again_hotter(smollm2_gguf: Path):
    async def main():
        backend = make_backend(parse_config({"teacher": {"backend": "llamacpp", "model": "smollm2"}}).teacher)
        teacher = Teacher(backend, max_retries=1, max_tokens=400, temperature=0, backoff=0.01)
        with pytest.raises(TeacherError) as caught:
            await teacher.chat([{"role": "user", "content": APPLES}])
        return caught.value, teacher.stats()

    error, stats = asyncio.run(main())
    assert error.kind == "bad_reply" and "repeated" in error.reason
    assert stats["requests"] == 2 and stats["retry_reasons"] == {"bad_reply": 1}
    assert stats["completion_tokens"] < 400  # two cut replies together, not one reply of max_tokens


@pytest.mark.slow
def test_a_model_under_evaluation_is_not_cut(smollm2_gguf: Path):
    request = ChatRequest([{"role": "user", "content": APPLES}], temperature=0, max_tokens=120)
    completion = asyncio.run(LlamaCppBackend(str(smollm2_gguf)).complete(request))
    assert completion.completion_tokens >= 100 and completion.finish_reason == "length"


@pytest.mark.slow
def test_the_fast_copy_is_made_once_atomically(tmp_path: Path, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLM_FACTORY_CACHE", str(tmp_path))
    made = fast_copy(smollm2_gguf)
    assert made.parent == tmp_path / "teacher" and made.name.endswith(".Q8_0.gguf")
    assert made.read_bytes()[:4] == b"GGUF" and made.stat().st_size > smollm2_gguf.stat().st_size
    assert [p.name for p in made.parent.iterdir()] == [made.name]  # no partial file left behind
    stamp = made.stat().st_mtime_ns
    assert fast_copy(smollm2_gguf) == made and made.stat().st_mtime_ns == stamp  # reused, not made again
