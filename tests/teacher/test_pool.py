"""Teacher's pool against real local servers: faults, retries, cache, adaptive concurrency,
load balancing. The servers are in servers.py; nothing here mocks aiohttp."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from slm_factory.teacher import AttemptError, ReplyCache, Teacher, TeacherError
from slm_factory.teacher.ollama import OllamaBackend
from slm_factory.teacher.openai import OpenAIBackend
from tests.conftest import free_port
from tests.teacher.fakes import ScriptedBackend
from tests.teacher.servers import StubServer

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def ask(item: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": f"Tell me about item {item}."}]


def teacher_for(url: str | list[str], *, concurrency: int = 8, retries: int = 3, timeout: float = 5,
                cache: ReplyCache | None = None) -> Teacher:
    bases = url if isinstance(url, list) else [url]
    backend = OpenAIBackend(bases, "stub", timeout=timeout, concurrency=concurrency)
    return Teacher(backend, max_concurrency=concurrency, max_retries=retries, cache=cache, backoff=0.01)


# -- faults ------------------------------------------------------------------------------------

# Per item class (item % 10): the faults of its attempts in order, then "ok".
FAULT_SCRIPT = {
    0: [],
    1: ["500"],
    2: ["429"],  # with Retry-After: 1
    3: ["hang"],  # past the client's timeout
    4: ["truncated", "truncated"],
    5: ["not_json"],
    6: ["drop"],
    7: ["bad_content"],  # valid HTTP, but the model's text is not JSON: re-ask
    8: ["500"] * 99,  # never recovers: a recorded failure
    9: ["503", "500"],
}


def fault_plan(item: int | None, attempt: int) -> str:
    script = FAULT_SCRIPT[(item or 0) % 10]
    return script[attempt - 1] if attempt <= len(script) else "ok"


def test_faults_are_retried_counted_and_nothing_is_lost():
    retries = 3

    async def main():
        server = StubServer(plan=fault_plan, hang_seconds=3.0, retry_after=1.0)
        url = await server.start()
        async with teacher_for(url, concurrency=8, retries=retries, timeout=0.5) as teacher:
            outcomes = [o async for o in teacher.map_unordered(range(50), lambda i: teacher.chat(ask(i), SCHEMA))]
            stats = teacher.stats()
        await server.stop()
        return server, outcomes, stats

    server, outcomes, stats = asyncio.run(main())
    done = {o.item for o in outcomes if o.ok}
    failed = {o.item: o.error for o in outcomes if not o.ok}
    assert done | set(failed) == set(range(50)) and not done & set(failed) and len(outcomes) == 50
    assert set(failed) == {8, 18, 28, 38, 48}
    assert all(e.kind == "server" and e.attempts == retries + 1 and "gave up" in e.reason for e in failed.values())
    assert all(o.value.parsed == {"answer": f"item {o.item}"} for o in outcomes if o.ok)

    expected_attempts = {i: min(len(FAULT_SCRIPT[i % 10]), retries + 1 - (i % 10 == 8)) + 1 for i in range(50)}
    assert {i: server.attempts_of(i) for i in range(50)} == expected_attempts
    assert stats["requests"] == server.requests == sum(expected_attempts.values())
    assert stats["retries"] == server.requests - 50
    assert stats["failures"] == 5 and stats["completed"] == 45 and stats["calls"] == 50
    assert stats["failure_reasons"] == {"server": 5}
    assert set(stats["retry_reasons"]) == {"server", "overloaded", "timeout", "bad_reply", "bad_json"}
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
    # Every failed attempt is counted once, by what went wrong, and matches what the server sent.
    sent = Counter(a.fault for a in server.arrivals if a.fault != "ok")
    assert stats["faults"] == {"500": sent["500"], "503": sent["503"], "429": sent["429"], "timeout": sent["hang"],
                               "bad_reply": sent["truncated"] + sent["not_json"] + sent["drop"],
                               "bad_json": sent["bad_content"]}
    assert sum(stats["faults"].values()) == stats["requests"] - stats["completed"]

    by_item: dict[int, list] = {}
    for arrival in server.arrivals:
        by_item.setdefault(arrival.item, []).append(arrival)
    for item in (2, 12, 22):  # Retry-After: 1 was honoured
        assert by_item[item][1].at - by_item[item][0].at >= 0.95
    for item in (7, 17):  # the re-ask showed the model its bad reply and the problem
        reask = by_item[item][1].body["messages"]
        assert reask[-2]["role"] == "assistant" and "cannot be used" in reask[-1]["content"]


def test_teacher_that_is_down_names_the_url_and_what_to_start():
    port = free_port()  # nothing listens here

    async def main(backend):
        async with Teacher(backend, max_retries=1, backoff=0.01) as teacher:
            with pytest.raises(TeacherError) as caught:
                await teacher.chat(ask(1))
            return caught.value, teacher.stats()

    error, stats = asyncio.run(main(OpenAIBackend([f"http://127.0.0.1:{port}/v1"], "m", timeout=5)))
    assert error.kind == "unreachable" and f"127.0.0.1:{port}" in error.reason
    assert "llama_cpp.server" in error.reason and stats["failures"] == 1 and stats["requests"] == 2
    error, _ = asyncio.run(main(OllamaBackend([f"http://127.0.0.1:{port}"], "qwen3:8b", timeout=5)))
    assert error.kind == "unreachable" and "ollama serve" in error.reason


def test_api_key_never_appears_in_errors_or_stats():
    secret = "sk-test-very-secret-1234"

    async def main():
        server = StubServer(plan=lambda item, attempt: "500")
        url = await server.start()
        backend = OpenAIBackend([url], "stub", api_key=secret, timeout=5)
        async with Teacher(backend, max_retries=1, backoff=0.01) as teacher:
            with pytest.raises(TeacherError) as caught:
                await teacher.chat(ask(1))
            stats = teacher.stats()
        await server.stop()
        return server, caught.value, stats, backend

    server, error, stats, backend = asyncio.run(main())
    assert server.requests == 2
    assert secret not in str(error) and secret not in repr(error.as_record()) and secret not in str(stats)
    assert secret not in repr(backend)


# -- cache -------------------------------------------------------------------------------------


def test_second_identical_run_makes_no_requests(tmp_path: Path):
    cache = ReplyCache(tmp_path / ".teacher_cache")

    async def run_once(server_url: str):
        async with teacher_for(server_url, cache=cache) as teacher:
            replies = [o.value async for o in teacher.map_unordered(range(12), lambda i: teacher.chat(ask(i), SCHEMA))]
            return replies, teacher.stats()

    async def main():
        server = StubServer()
        url = await server.start()
        first, first_stats = await run_once(url)
        after_first = server.requests
        entries = len(cache)
        second, second_stats = await run_once(url)
        async with teacher_for(url, cache=cache) as teacher:
            other_temperature = await teacher.chat(ask(0), SCHEMA, temperature=0.9)
        await server.stop()
        return server, after_first, entries, first, first_stats, second, second_stats, other_temperature

    server, after_first, entries, first, first_stats, second, second_stats, other = asyncio.run(main())
    assert after_first == 12 and first_stats["cache_hits"] == 0 and entries == 12
    assert second_stats["requests"] == 0 and second_stats["cache_hits"] == 12
    assert all(r.cached and r.attempts == 0 for r in second)
    assert sorted(r.parsed["answer"] for r in second) == sorted(r.parsed["answer"] for r in first)
    assert server.requests == 13 and not other.cached  # a sampling change is a different request


def test_identical_requests_in_flight_are_asked_once(tmp_path: Path):
    async def main():
        server = StubServer(latency=0.2)
        url = await server.start()
        async with teacher_for(url, cache=ReplyCache(tmp_path)) as teacher:
            replies = await asyncio.gather(*(teacher.chat(ask(5), SCHEMA) for _ in range(6)))
            stats = teacher.stats()
        await server.stop()
        return server, replies, stats

    server, replies, stats = asyncio.run(main())
    assert server.requests == 1 and stats["cache_hits"] == 5
    assert {r.parsed["answer"] for r in replies} == {"item 5"}


# -- adaptive concurrency and load balancing --------------------------------------------------


def test_window_shrinks_when_the_server_refuses_above_its_limit():
    limit, ceiling, count = 3, 16, 160

    async def main():
        server = StubServer(latency=0.05, max_concurrent=limit)
        url = await server.start()
        async with teacher_for(url, concurrency=ceiling, retries=12) as teacher:
            outcomes = [o async for o in teacher.map_unordered(range(count), lambda i: teacher.chat(ask(i)))]
            stats = teacher.stats()
        await server.stop()
        return server, outcomes, stats

    server, outcomes, stats = asyncio.run(main())
    assert all(o.ok for o in outcomes) and {o.item for o in outcomes} == set(range(count))
    assert stats["window"]["decreases"] >= 1 and stats["window"]["smallest"] <= limit
    assert stats["window"]["now"] <= 2 * limit  # it ends near the server's limit, not at 16
    assert 1 <= stats["window"]["limit"] <= 2 * limit and stats["faults"] == {"429": server.requests - count}
    # Requests a server can only refuse are wasted: after learning, few are. (With the window
    # held at 16, about half of the late requests were refused in a trial run; adapting, ~11%.)
    late = server.arrivals[len(server.arrivals) // 2:]
    assert sum(a.fault == "429" for a in late) / len(late) < 0.25


def test_overload_is_a_share_of_the_requests_sent_not_one_reply():
    from slm_factory.teacher import AdaptiveWindow

    async def main():
        window = AdaptiveWindow(8)

        async def outcome(kind: str) -> None:
            ticket = await window.acquire()
            window.release()
            if kind == "429":
                window.overloaded(ticket, retry_after=None)
            elif kind == "ok":
                window.succeeded(ticket, 0.1)  # (a 500 is no news to the window: it is just retried)

        # Isolated: one 429 in ten requests, two in a row among many good ones, any number of 500s.
        for kinds in [["429"] + ["ok"] * 9] * 4 + [["429", "429"] + ["ok"] * 40, ["500"] * 40 + ["ok"]]:
            for kind in kinds:
                await outcome(kind)
        assert window.size == 8 and window.decreases == 0 and window.isolated == 6

        tickets = [await window.acquire() for _ in range(8)]
        for ticket in tickets:  # eight 429s from one burst: overload, and one halving for it
            window.release()
            window.overloaded(ticket)
        assert window.size == 4 and window.decreases == 1 and window.limit == 7

        # One request in three refused, none in a row, is overload too.
        for _ in range(3):
            for kind in ("429", "ok", "ok"):
                await outcome(kind)
        assert window.size == 2 and window.decreases == 2 and window.limit == 3

    asyncio.run(main())


def spread(every: int, fault: str, offset: int = 0):
    """A plan where one item in `every` meets `fault` on its first attempt: isolated faults."""
    return lambda item, attempt: fault if attempt == 1 and (item or 0) % every == offset else "ok"


def mixed(*plans):
    def plan(item, attempt):
        return next((f for f in (p(item, attempt) for p in plans) if f != "ok"), "ok")
    return plan


def run_items(server: StubServer, count: int, *, concurrency: int, retries: int = 4, timeout: float = 5):
    async def main():
        url = await server.start()
        try:
            async with teacher_for(url, concurrency=concurrency, retries=retries, timeout=timeout) as teacher:
                outcomes = [o async for o in teacher.map_unordered(range(count),
                                                                   lambda i: teacher.chat(ask(i), SCHEMA))]
                return outcomes, teacher.stats()
        finally:
            await server.stop()

    return asyncio.run(main())


def arrivals_by_item(server: StubServer) -> dict[int, list]:
    by_item: dict[int, list] = {}
    for arrival in server.arrivals:
        by_item.setdefault(arrival.item, []).append(arrival)
    return by_item


def test_isolated_errors_are_retried_without_shrinking_the_window():
    # 5% each: 500, a cut-off body, JSON cut off in the model's text, and 429 with Retry-After: 1.
    plan = mixed(spread(20, "500", 3), spread(20, "truncated", 8), spread(20, "bad_json", 13),
                 spread(20, "429", 18))
    server = StubServer(plan=plan, latency=0.1, retry_after=1.0, max_requests=10_000)
    outcomes, stats = run_items(server, 400, concurrency=8)

    assert len(outcomes) == 400 and all(o.ok for o in outcomes)
    assert {o.item for o in outcomes} == set(range(400))
    assert all(o.value.parsed == {"answer": f"item {o.item}"} for o in outcomes)
    window = stats["window"]
    assert window["decreases"] == 0 and window["smallest"] == window["ceiling"] == 8 and window["pauses"] == 0
    assert window["isolated_overloads"] >= 1
    assert stats["faults"] == {"500": 20, "bad_reply": 20, "bad_json": 20, "429": 20}
    assert stats["requests"] == server.requests == 480
    for item, arrivals in arrivals_by_item(server).items():
        if arrivals[0].fault == "429":  # only this request waited, and at least Retry-After
            assert arrivals[1].at - arrivals[0].at >= 0.95


def test_an_overload_episode_pauses_for_retry_after_then_the_window_grows_back():
    ceiling, count = 16, 900
    server = StubServer(latency=0.1, retry_after=1.0, max_requests=10_000)
    busy: list[float] = []

    def plan(item, attempt):  # from the 150th request on, 0.8 s of 429 with Retry-After: 1
        if server.requests >= 150 and not busy:
            busy.append(time.monotonic())
        return "429" if busy and time.monotonic() - busy[0] < 0.8 else "ok"

    server.plan = plan
    outcomes, stats = run_items(server, count, concurrency=ceiling, retries=8)

    assert len(outcomes) == count and all(o.ok for o in outcomes)
    window = stats["window"]
    assert window["decreases"] >= 1 and window["smallest"] <= ceiling // 2 and window["pauses"] >= 1
    assert window["now"] >= ceiling * 3 // 4, window  # grown back after the episode
    assert stats["faults"] == {"429": sum(a.fault == "429" for a in server.arrivals)}
    for arrivals in arrivals_by_item(server).values():
        for before, after in zip(arrivals, arrivals[1:]):
            if before.fault == "429":
                assert after.at - before.at >= 0.95
    # New requests paused: at least one gap of about Retry-After in the arrivals during the episode.
    times = [a.at for a in server.arrivals]
    assert max(b - a for a, b in zip(times[140:300], times[141:301])) >= 0.9
    # And the window was used again: the last quarter of requests saw most of the ceiling at once.
    assert max(a.concurrent for a in server.arrivals[-count // 4:]) >= ceiling * 3 // 4


def test_window_settles_near_the_slots_of_a_server_that_queues():
    slots, ceiling, count = 4, 16, 500
    server = StubServer(latency=0.05, slots=slots, max_requests=10_000)
    outcomes, stats = run_items(server, count, concurrency=ceiling)

    assert len(outcomes) == count and all(o.ok for o in outcomes)
    window = stats["window"]
    assert window["decreases"] == 0 and not stats["faults"]  # no error: only latency said so
    assert slots <= window["limit"] <= 2 * slots and window["now"] <= 2 * slots + 1, window
    late = server.arrivals[-count // 4:]
    assert sum(a.concurrent for a in late) / len(late) <= 2 * slots + 1


def test_endpoints_are_balanced_and_a_dead_one_is_skipped():
    dead = f"http://127.0.0.1:{free_port()}"

    async def main():
        one, two = StubServer(latency=0.02), StubServer(latency=0.02)
        urls = [await one.start(), dead, await two.start()]
        async with teacher_for(urls, concurrency=6, retries=3) as teacher:
            outcomes = [o async for o in teacher.map_unordered(range(60), lambda i: teacher.chat(ask(i)))]
            stats = teacher.stats()
        await one.stop()
        await two.stop()
        return one, two, outcomes, stats

    one, two, outcomes, stats = asyncio.run(main())
    assert all(o.ok for o in outcomes) and len(outcomes) == 60
    assert one.requests >= 15 and two.requests >= 15 and one.requests + two.requests == 60
    assert stats["retries"] <= 6 and stats["retry_reasons"].get("unreachable", 0) == stats["retries"]


# -- the pool's contract with callers ---------------------------------------------------------


def test_map_unordered_pulls_items_lazily_and_propagates_bugs():
    pulled: list[int] = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    async def main():
        teacher = Teacher(ScriptedBackend(lambda request: "fine"), max_concurrency=2)
        seen = 0
        async for _ in teacher.map_unordered(items(), lambda i: teacher.chat(ask(i))):
            seen += 1
            if seen == 3:
                assert len(pulled) <= 3 + 4  # never more than the buffer ahead
        assert seen == 100

        async def broken(i: int) -> None:
            raise KeyError("a bug, not a teacher failure")

        with pytest.raises(KeyError):
            async for _ in teacher.map_unordered(range(5), broken):
                pass

    asyncio.run(main())


def test_non_retryable_errors_fail_at_once_and_bad_json_is_reasked():
    async def main():
        backend = ScriptedBackend([AttemptError("model not found", "not_found", retryable=False)])
        with pytest.raises(TeacherError) as caught:
            await Teacher(backend, max_retries=5).chat(ask(1))
        assert caught.value.attempts == 1 and caught.value.kind == "not_found"

        backend = ScriptedBackend(["no json here", "<think>hmm</think>still none", '{"answer": "ok"}'])
        teacher = Teacher(backend, max_retries=5)
        reply = await teacher.chat(ask(1), SCHEMA)
        assert reply.parsed == {"answer": "ok"} and reply.attempts == 3
        assert "holds no JSON" in backend.requests[2].messages[-1]["content"]
        assert teacher.stats()["retry_reasons"] == {"bad_json": 2}

        backend = ScriptedBackend(["never json"] * 3)
        with pytest.raises(TeacherError) as caught:
            await Teacher(backend, max_retries=2).chat(ask(1), SCHEMA)
        assert caught.value.kind == "bad_json" and caught.value.attempts == 3

    asyncio.run(main())
