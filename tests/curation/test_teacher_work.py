"""ask_each: one teacher request per item, with the ledger, re-asking, failures and stopping,
against a scripted backend plugged into the real Teacher pool."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from slm_factory.config import parse_config
from slm_factory.curation.teacher_work import TeacherWork, ask_each
from slm_factory.pipeline import StageContext
from slm_factory.teacher import AttemptError, ChatRequest, Completion
from slm_factory.workspace import Workspace
from tests.teacher.fakes import ScriptedBackend

SCHEMA = {"type": "object", "properties": {"upper": {"type": "string"}}, "required": ["upper"]}
# Korean and English items: ids and prompts must survive the ledger's JSON unchanged.
ITEMS = ["alpha", "beta", "감마", "delta 델타", "epsilon", "zeta", "eta", "theta"]


class Crash(BaseException):
    """Stands in for a kill: nothing in the pass catches it."""


def uppercase(request: ChatRequest) -> str:
    word = request.messages[-1]["content"].removeprefix("Upper-case: ")
    return json.dumps({"upper": word.upper()})


def make_ctx(tmp_path: Path, backend, **raw) -> StageContext:
    raw = {"teacher": {"cache": False, "max_concurrency": 3, **raw.pop("teacher", {})}, **raw}
    config = parse_config({"paths": {"output": str(tmp_path / "output")}, **raw})
    return StageContext(config=config, workspace=Workspace(config.output_dir), teacher_backend=backend)


def parse_upper(item: str, data: dict) -> str:
    if data["upper"] != item.upper():
        raise ValueError(f"expected {item.upper()!r}")
    return data["upper"]


def ask(ctx: StageContext, items=ITEMS, settings=None, **overrides) -> TeacherWork:
    arguments = {"artifact": "qa_scored", "items": items, "item_id": lambda word: f"id-{word}",
                 "messages": lambda word: [{"role": "user", "content": f"Upper-case: {word}"}],
                 "schema": SCHEMA, "parse": parse_upper, "settings": settings or {"rubric": 1},
                 "description": "Testing"}
    return ask_each(ctx, **{**arguments, **overrides})


def ledger_lines(ctx: StageContext) -> list[dict]:
    return [json.loads(line) for line in ctx.workspace.partial_path("qa_scored").read_text().splitlines()]


def test_each_item_is_asked_once_and_saved_as_it_finishes(tmp_path: Path):
    backend = ScriptedBackend(uppercase)
    ctx = make_ctx(tmp_path, backend)
    work = ask(ctx, items=[*ITEMS, "alpha"])  # a repeated id is asked once
    assert work.results == {f"id-{w}": w.upper() for w in ITEMS}
    assert len(backend.requests) == len(ITEMS) and work.asked == len(ITEMS) and work.reused == 0
    assert not work.failures and work.stopped is None and work.teacher_stats["completed"] == len(ITEMS)
    assert {e["id"]: e["result"] for e in ledger_lines(ctx)} == work.results


def test_a_rerun_asks_nothing_even_without_the_reply_cache(tmp_path: Path):
    ask(make_ctx(tmp_path, ScriptedBackend(uppercase)))
    second = ScriptedBackend([])  # any request would fail the test: the script is empty
    work = ask(make_ctx(tmp_path, second))
    assert second.requests == [] and work.reused == len(ITEMS) and work.asked == 0
    assert work.results == {f"id-{w}": w.upper() for w in ITEMS} and work.teacher_stats == {}


def test_resume_after_a_crash_asks_only_for_what_is_missing(tmp_path: Path):
    answered: list[str] = []

    def dies_after_three(request: ChatRequest) -> str:
        if len(answered) == 3:
            raise Crash
        answered.append(request.messages[-1]["content"])
        return uppercase(request)

    ctx = make_ctx(tmp_path, ScriptedBackend(dies_after_three), teacher={"max_concurrency": 1})
    with pytest.raises(Crash):
        ask(ctx)
    saved = {e["id"] for e in ledger_lines(ctx)}
    assert len(saved) == 3
    with ctx.workspace.partial_path("qa_scored").open("ab") as handle:
        handle.write(b'{"entry": "torn')  # a kill -9 in the middle of a line
    resumed = ScriptedBackend(uppercase)
    work = ask(make_ctx(tmp_path, resumed))
    asked = {r.messages[-1]["content"].removeprefix("Upper-case: ") for r in resumed.requests}
    assert {f"id-{w}" for w in asked} == {f"id-{w}" for w in ITEMS} - saved
    assert work.reused == 3 and work.results == {f"id-{w}": w.upper() for w in ITEMS}


@pytest.mark.parametrize("change", [
    {"teacher": {"temperature": 0.9}},
    {"teacher": {"model": "another-model"}},
    {"teacher": {"max_tokens": 77}},
    {"settings": {"rubric": 2}},
    {"schema": {**SCHEMA, "properties": {"upper": {"type": "string", "minLength": 1}}}},
])
def test_a_change_of_what_decides_the_reply_asks_again(tmp_path: Path, change: dict):
    ask(make_ctx(tmp_path, ScriptedBackend(uppercase)))
    again = ScriptedBackend(uppercase)
    ctx = make_ctx(tmp_path, again, teacher=change.get("teacher", {}))
    work = ask(ctx, **{k: v for k, v in change.items() if k != "teacher"})
    assert len(again.requests) == len(ITEMS) and work.reused == 0
    # the old entries stay in the ledger, but the new ones are found first on the next rerun
    third = ScriptedBackend([])
    ctx.teacher_backend = third
    assert ask(ctx, **{k: v for k, v in change.items() if k != "teacher"}).reused == len(ITEMS)


def test_a_changed_prompt_asks_again_for_that_item_only(tmp_path: Path):
    ask(make_ctx(tmp_path, ScriptedBackend(uppercase)))
    again = ScriptedBackend(uppercase)
    def messages(word: str) -> list[dict]:
        suffix = " (rewritten)" if word == "감마" else ""
        return [{"role": "user", "content": f"Upper-case: {word}{suffix}"}]
    work = ask(make_ctx(tmp_path, again), messages=messages,
               parse=lambda word, data: data["upper"])
    assert [r.messages[-1]["content"] for r in again.requests] == ["Upper-case: 감마 (rewritten)"]
    assert work.reused == len(ITEMS) - 1


def test_a_reply_parse_refuses_is_asked_again_with_the_reason(tmp_path: Path):
    replies = iter(['{"upper": "wrong"}', '{"upper": "ALPHA"}'])
    backend = ScriptedBackend(lambda request: next(replies))
    work = ask(make_ctx(tmp_path, backend), items=["alpha"])
    assert work.results == {"id-alpha": "ALPHA"} and not work.failures
    second = backend.requests[1].messages
    assert second[-2] == {"role": "assistant", "content": '{"upper": "wrong"}'}
    assert "expected 'ALPHA'" in second[-1]["content"]


def test_an_item_whose_replies_stay_unusable_fails_and_only_it_is_retried(tmp_path: Path):
    def stubborn(request: ChatRequest) -> str:
        if "beta" in request.messages[0]["content"]:
            return '{"upper": "never right"}'
        return uppercase(request)

    ctx = make_ctx(tmp_path, ScriptedBackend(stubborn))
    work = ask(ctx)
    assert set(work.failures) == {"id-beta"} and "unusable reply" in work.failures["id-beta"]
    assert "id-beta" not in work.results
    # Written as given up, with no result: a rerun asks it again.
    assert [set(e) for e in ledger_lines(ctx) if e["id"] == "id-beta"] == [{"entry", "id", "unusable"}]
    assert work.failure_lines()[0].startswith("id-beta: unusable reply")
    retry = ScriptedBackend(uppercase)
    work = ask(make_ctx(tmp_path, retry))
    assert [r.messages[-1]["content"] for r in retry.requests] == ["Upper-case: beta"]
    assert not work.failures and len(work.results) == len(ITEMS)


def test_update_leaves_an_item_given_up_before_and_a_later_result_wins(tmp_path: Path):
    """With KEEP_GIVEN_UP (what `update` sets) an item whose replies were all unusable in an earlier
    run is a failure again without a request; a plain rerun asks it, and once it has a result that
    result is what every later run reuses."""
    from slm_factory.curation.teacher_work import KEEP_GIVEN_UP

    def stubborn(request: ChatRequest) -> str:
        if "beta" in request.messages[0]["content"]:
            return '{"upper": "never right"}'
        return uppercase(request)

    ask(make_ctx(tmp_path, ScriptedBackend(stubborn)))
    quiet = ScriptedBackend(uppercase)
    ctx = make_ctx(tmp_path, quiet)
    ctx.options[KEEP_GIVEN_UP] = True
    work = ask(ctx)
    assert quiet.requests == [] and set(work.failures) == {"id-beta"} and len(work.results) == len(ITEMS) - 1
    assert "earlier run" in work.failures["id-beta"]
    asked = ScriptedBackend(uppercase)
    assert ask(make_ctx(tmp_path, asked)).results["id-beta"] == "BETA" and len(asked.requests) == 1
    again = ScriptedBackend(uppercase)
    ctx = make_ctx(tmp_path, again)
    ctx.options[KEEP_GIVEN_UP] = True
    work = ask(ctx)
    assert again.requests == [] and not work.failures and work.results["id-beta"] == "BETA"


def test_malformed_json_is_reasked_by_the_pool_and_a_request_error_is_a_failure(tmp_path: Path):
    def script(request: ChatRequest) -> str | AttemptError:
        word = request.messages[0]["content"].removeprefix("Upper-case: ")
        if word == "alpha" and len(request.messages) == 1:
            return "Sure! The answer is {upper: ALPHA"  # unreadable: the pool asks again
        if word == "beta":
            return AttemptError("prompt too long", "too_long", retryable=False)
        return json.dumps({"upper": word.upper()})

    work = ask(make_ctx(tmp_path, ScriptedBackend(script)))
    assert work.results["id-alpha"] == "ALPHA" and set(work.failures) == {"id-beta"}
    assert work.failures["id-beta"].startswith("too_long") and work.teacher_stats["retry_reasons"] == {"bad_json": 1}


def test_an_unusable_teacher_stops_the_pass_and_keeps_what_finished(tmp_path: Path):
    count = {"n": 0}

    def goes_down(request: ChatRequest) -> str | AttemptError:
        count["n"] += 1
        if count["n"] > 2:
            return AttemptError("nothing answers at http://127.0.0.1:9", "unreachable", retryable=False)
        return uppercase(request)

    ctx = make_ctx(tmp_path, ScriptedBackend(goes_down), teacher={"max_concurrency": 1})
    work = ask(ctx)
    assert work.stopped and "127.0.0.1:9" in work.stopped
    assert len(work.results) == 2 and len(ledger_lines(ctx)) == 2
    assert count["n"] < len(ITEMS)  # it stopped instead of failing every item
    retry = ScriptedBackend(uppercase)
    work = ask(make_ctx(tmp_path, retry))
    assert len(retry.requests) == len(ITEMS) - 2 and work.stopped is None


class SlowBackend(ScriptedBackend):
    """Counts how many requests are in flight at once."""

    def __init__(self) -> None:
        super().__init__(uppercase)
        self.in_flight = 0
        self.most = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().complete(request)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("stage_limit, teacher_limit, expected", [(2, 8, 2), (None, 3, 3), (8, 3, 3)])
def test_the_smaller_of_the_stage_and_teacher_concurrency_holds(tmp_path: Path, stage_limit, teacher_limit, expected):
    backend = SlowBackend()
    words = [f"word{i}" for i in range(24)]
    ask(make_ctx(tmp_path, backend, teacher={"max_concurrency": teacher_limit}), items=words,
        max_concurrency=stage_limit)
    assert backend.most == expected
