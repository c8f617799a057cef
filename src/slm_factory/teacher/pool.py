"""`Teacher`: calling a backend well -- bounded adaptive concurrency, retries, cache, accounting.

The pool never prints: stages own the progress bar and read `stats()` when they finish.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from slm_factory.teacher.base import (
    AttemptError,
    Backend,
    ChatRequest,
    Completion,
    Health,
    Message,
    Reply,
    TeacherError,
)
from slm_factory.teacher.cache import CachedReply, ReplyCache, cache_key
from slm_factory.teacher.jsonreply import ReplyFormatError, parse_reply, reask_messages, strip_think

T = TypeVar("T")
R = TypeVar("R")
Schema = dict[str, Any] | type[BaseModel]

MAX_RETRY_AFTER = 60.0  # a server asking for longer is treated as asking for a minute

# Overload is the server saying "slow down" (429, 503) or not answering in time. One such reply
# among many good ones is noise -- a busy moment, a proxy -- and halving on each one held the
# issue's stand-in at an eighth of its rate under 2.5% random 429s. It is overload when at least
OVERLOAD_MIN = 3  # this many of the last requests sent got one, and they are at least
OVERLOAD_SHARE = 0.2  # this share of those requests; "the last": the last max(32, 2 x size) sent.
OVERLOAD_SPAN = 32  # With 2.5% random 429s, 7 of 32 happens about once in 50,000 requests.
# Counted per request sent, not per reply: a 429 comes back at once, so a round's few random 429s
# arrive in a row ahead of its good replies, and "3 replies in a row" fired every few rounds.
MIN_ROUND = 16  # a round: `size` good replies, at least this many (fewer: a noisy rate)
HOLD_ROUNDS = 2  # steady rounds before trying a size that failed before (doubles after each miss)
GAIN_SHARE = 0.5  # a bigger window is kept when the rate grows by half as much as the window
KEEP_SHARE = 0.9  # half the window is kept when it still brings this share of the rate
LATENCY_RISE = 1.5  # round median latency over the lowest seen: requests may be queuing


@dataclass
class _Trial:
    """A size being tried: kept or undone on the rate of the first full round after warm-up."""

    grow: bool
    from_size: int
    from_rate: float


class AdaptiveWindow:
    """How many requests may be in flight.

    Starts at the ceiling (teacher.max_concurrency). Isolated errors leave it alone: a 500 or an
    unusable reply is retried, a lone 429 delays only its own request (by Retry-After). Overload
    (see OVERLOAD_*) halves it once, pauses new requests for the Retry-After the server gave, and
    records `limit` = the size that proved too big, less one. It then grows back by doubling
    towards `limit`, one round at a time, and beyond `limit` in steps that double while each step
    pays; a step that meets an overload reply or brings no more replies per second is undone.

    A server with fewer slots than the window queues instead of refusing: no error, only latency
    that grows with the window while the rate stays flat. So when rounds' median latency stays
    well above the lowest seen, half the window is tried; when half brings nearly the same rate it
    is kept. Rates (by Little's law: size / latency), not latencies, decide: a batching server
    (vLLM) is slower per request at a larger window but serves more, and must keep it. Decisions
    are made only on rounds where callers kept the window full, from requests sent at that size.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.size = self.ceiling
        self.limit = self.ceiling  # the largest size believed useful
        self.smallest = self.ceiling
        self.in_flight = 0
        self.decreases = 0  # halvings on overload
        self.isolated = 0  # overload replies that were not overload: retried, window kept
        self.pauses = 0
        self.trials = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sent = 0  # a ticket is the number of its request; the size changed at _epoch_start
        self._epoch_start = 0  # tickets below it were sent under another size: they say nothing now
        self._overloads: deque[int] = deque()  # tickets of this size's overload replies
        self._slow_rounds = 0
        self._paused_until = 0.0
        self._round_latencies: list[float] = []
        self._warmup = True  # the first round also opens the connections
        self._trial: _Trial | None = None
        self._steady = 0  # measured rounds at this size
        self._hold = HOLD_ROUNDS  # rounds at `limit` before stepping above it
        self._step = 1
        self._down_after = HOLD_ROUNDS  # slow rounds in a row before trying half the window
        self._lowest_latency: float | None = None

    # -- slots ----------------------------------------------------------------------------------

    async def acquire(self) -> int:
        """Wait for a slot; returns a ticket to pass back with the outcome."""
        if self.in_flight < self.size and not self._waiters and not self._paused():
            self.in_flight += 1
            return self._ticket()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake() hands us the slot before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # we were given a slot but will not use it
            else:
                self._waiters.remove(waiter)
            raise
        return self._ticket()

    def _ticket(self) -> int:
        self._sent += 1
        return self._sent

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        if self._paused():
            return  # _resume wakes them
        while self._waiters and self.in_flight < self.size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def _pause(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until <= self._paused_until:
            return
        self._paused_until = until
        self.pauses += 1
        asyncio.get_running_loop().call_later(seconds, self._resume, until)

    def _resume(self, until: float) -> None:
        if self._paused_until == until:  # not extended by a later pause (whose timer resumes then)
            self._paused_until = 0.0
            self._wake()

    # -- outcomes -------------------------------------------------------------------------------

    def overloaded(self, ticket: int, retry_after: float | None = None) -> None:
        """A 429, 503 or timeout. (Other errors -- a 500, a cut-off reply -- leave the window be.)"""
        if ticket < self._epoch_start:
            return
        self._overloads.append(ticket)
        if not self._is_overload():
            self.isolated += 1
        elif self._trial is not None and self._trial.grow:
            self._undo(self._trial)  # the step above asked for too much: back to what worked
        else:
            self._cut(retry_after)

    def succeeded(self, ticket: int, latency: float) -> None:
        if ticket < self._epoch_start:
            return  # sent under the old size: its latency is the old size's
        self._round_latencies.append(latency)
        if len(self._round_latencies) >= max(self.size, MIN_ROUND):
            self._end_round()

    def _is_overload(self) -> bool:
        span = max(OVERLOAD_SPAN, 2 * self.size)
        while self._overloads and self._overloads[0] <= self._sent - span:
            self._overloads.popleft()
        sent = min(span, self._sent - self._epoch_start + 1)
        return len(self._overloads) >= max(OVERLOAD_MIN, OVERLOAD_SHARE * sent)

    def _cut(self, retry_after: float | None) -> None:
        self.decreases += 1
        self.limit = max(1, self.size - 1)
        self._resize(max(1, self.size // 2))
        self.smallest = min(self.smallest, self.size)
        self._hold, self._step = HOLD_ROUNDS, 1
        if retry_after:
            self._pause(min(retry_after, MAX_RETRY_AFTER))

    # -- rounds ---------------------------------------------------------------------------------

    def _end_round(self) -> None:
        latencies = sorted(self._round_latencies)
        self._round_latencies = []
        full = self.in_flight >= self.size or bool(self._waiters)
        tenth = len(latencies) // 10
        median, low = latencies[len(latencies) // 2], latencies[tenth]
        # Replies per second by Little's law, from the mean latency less the slowest and fastest
        # tenth: a stall of this process or a few odd replies move it far less than counting
        # replies over the round's wall time does.
        middle = latencies[tenth:len(latencies) - tenth]
        rate = self.size / max(sum(middle) / len(middle), 1e-9)
        self._lowest_latency = low if self._lowest_latency is None else min(self._lowest_latency, low)
        if self._warmup:
            self._warmup = False  # the first requests of a new size queued behind the old ones
            return
        if not full:
            return  # callers asked for less than the window: the rate says nothing about the server
        if self._trial is not None:
            self._judge(self._trial, rate)
            return
        self._steady += 1
        self._slow_rounds = self._slow_rounds + 1 if median > LATENCY_RISE * self._lowest_latency else 0
        if self.size < self.limit:
            self._try(min(self.limit, 2 * self.size), rate)
        elif self.size < self.ceiling and self._steady >= self._hold:
            self._try(self._step_up(), rate)
        elif self.size > 1 and self._slow_rounds >= self._down_after:
            self._try(self.size // 2, rate)

    def _try(self, size: int, rate: float) -> None:
        trial = _Trial(size > self.size, self.size, rate)
        self.trials += 1
        self._resize(size)
        self._trial = trial

    def _judge(self, trial: _Trial, rate: float) -> None:
        self._trial = None
        self._steady = 1
        if not trial.grow:
            if rate >= KEEP_SHARE * trial.from_rate:
                self.limit = self.size  # the other half only queued at the server
                self.smallest = min(self.smallest, self.size)
                self._down_after = HOLD_ROUNDS
            else:
                self._undo(trial)
            return
        if rate < trial.from_rate * (1 + GAIN_SHARE * (self.size / trial.from_size - 1)):
            self._undo(trial)
            return
        beyond = self.size > self.limit
        self.limit = max(self.limit, self.size)
        if self.size < self.limit:
            self._try(min(self.limit, 2 * self.size), rate)
        elif beyond and self.size < self.ceiling:
            self._step *= 2  # each paying step above the old limit tries a bigger one
            self._try(self._step_up(), rate)

    def _step_up(self) -> int:
        # At least a quarter more: a smaller gain in rate would be lost in the noise of a round.
        return min(self.ceiling, self.size + max(self._step, self.size // 4))

    def _undo(self, trial: _Trial) -> None:
        if trial.grow:
            self.limit = trial.from_size
            self._hold *= 2  # each miss waits longer before the next try
            self._step = 1
        else:
            self._down_after *= 2
        self._resize(trial.from_size)

    def _resize(self, size: int) -> None:
        self.size = size
        self._epoch_start = self._sent + 1
        self._overloads.clear()
        self._trial = None
        self._steady = self._slow_rounds = 0
        self._warmup = True
        self._wake()


@dataclass
class Outcome(Generic[T, R]):
    """One item of `Teacher.map_unordered`: its value, or the TeacherError that ended it."""

    item: T
    value: R | None = None
    error: TeacherError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.retry_reasons: Counter[str] = Counter()
        self.failure_reasons: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()  # every attempt that gave no usable reply
        self.first: float | None = None
        self.last: float | None = None

    def started(self) -> None:
        self.counts["calls"] += 1
        if self.first is None:
            self.first = time.perf_counter()

    def finished(self, ok: bool, kind: str = "") -> None:
        self.last = time.perf_counter()
        if ok:
            self.counts["completed"] += 1
        else:
            self.counts["failures"] += 1
            self.failure_reasons[kind] += 1

    def fault(self, error: AttemptError | None = None) -> None:
        """Count one failed attempt: by HTTP status where there was one (429 apart from 503),
        else by kind (timeout, bad_reply for a cut-off body, bad_json, unreachable, ...)."""
        self.faults["bad_json" if error is None else str(error.status or error.kind)] += 1

    def tokens(self, prompt: int, completion: int) -> None:
        self.counts["prompt_tokens"] += prompt
        self.counts["completion_tokens"] += completion


class Teacher:
    """The pipeline's handle on the teacher. Use one per stage run, inside `async with`.

        async with open_teacher(config, workspace) as teacher:
            reply = await teacher.chat(messages, schema=MyModel)   # reply.parsed: MyModel

    `chat` raises TeacherError after retries; it never returns a half-good reply.
    """

    def __init__(self, backend: Backend, *, max_concurrency: int = 4, max_retries: int = 4,
                 temperature: float = 0.3, max_tokens: int = 1024, cache: ReplyCache | None = None,
                 backoff: float = 0.5) -> None:
        self.backend = backend
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.cache = cache
        self.backoff = backoff  # seconds before the first retry; doubles each time, jittered
        ceiling = min(max_concurrency, backend.parallel) if backend.parallel else max_concurrency
        self.window = AdaptiveWindow(ceiling)
        self._stats = _Stats()
        self._shared: dict[str, asyncio.Future[Reply]] = {}

    async def __aenter__(self) -> Teacher:  # noqa: PYI034 - not meant to be subclassed
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.backend.aclose()

    @property
    def max_concurrency(self) -> int:
        return self.window.ceiling

    # -- the call -------------------------------------------------------------------------------

    async def chat(self, messages: list[Message], schema: Schema | None = None, *,
                   temperature: float | None = None, max_tokens: int | None = None, cache: bool = True,
                   **options: Any) -> Reply:
        """Ask once; retry what can be retried; parse JSON when `schema` is given.

        `schema` is a JSON-schema dict (reply.parsed is the JSON value) or a pydantic model class
        (reply.parsed is an instance). `options` go to the server as sampling keys (top_p, seed).
        `cache=False` skips the reply cache, e.g. to sample the same prompt twice.
        """
        model = schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None
        request = ChatRequest(
            messages=[dict(m) for m in messages],
            schema=_json_schema(model) if model else schema,  # type: ignore[arg-type]
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=max_tokens or self.max_tokens,
            options=options,
        )
        self._stats.started()
        try:
            reply = await self._cached_or_asked(request, model, cache and self.cache is not None)
        except TeacherError as error:
            self._stats.finished(False, error.kind)
            raise
        self._stats.finished(True)
        return reply

    async def _cached_or_asked(self, request: ChatRequest, model: type[BaseModel] | None, use_cache: bool) -> Reply:
        if not use_cache:
            return await self._ask(request, model)
        assert self.cache is not None
        key = cache_key(self.backend.identity(), request)
        hit = self._from_cache(key, request, model)
        if hit is not None:
            return hit
        while key in self._shared:  # the same request is in flight: wait for it, do not ask twice
            shared = self._shared[key]
            try:
                reply = await asyncio.shield(shared)
            except asyncio.CancelledError:
                if not shared.cancelled():
                    raise  # we were cancelled ourselves
                continue  # the first asker was cancelled; ask ourselves
            self._stats.counts["cache_hits"] += 1
            return replace(reply, cached=True, attempts=0, latency=0.0)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._shared[key] = future
        try:
            reply = await self._ask(request, model)
            try:
                await self.cache.put(key, CachedReply(reply.text, reply.prompt_tokens, reply.completion_tokens,
                                                      reply.finish_reason, reply.model))
            except OSError:
                self._stats.counts["cache_write_errors"] += 1  # a full disk costs a re-ask later, not the reply
            future.set_result(reply)
            return reply
        except TeacherError as error:
            future.set_exception(error)
            future.exception()  # mark it retrieved: nobody may be waiting
            raise
        except BaseException:
            future.cancel()  # waiters ask for themselves
            raise
        finally:
            del self._shared[key]

    def _from_cache(self, key: str, request: ChatRequest, model: type[BaseModel] | None) -> Reply | None:
        assert self.cache is not None
        stored = self.cache.get(key)
        if stored is None:
            return None
        parsed = None
        if request.schema is not None:
            try:
                parsed = parse_reply(stored.text, request.schema, model)
            except ReplyFormatError:
                return None
        self._stats.counts["cache_hits"] += 1
        return Reply(stored.text, parsed, stored.prompt_tokens, stored.completion_tokens, 0.0, 0, True,
                     stored.model, stored.finish_reason)

    async def _ask(self, request: ChatRequest, model: type[BaseModel] | None) -> Reply:
        """Attempts until one gives a usable reply or the retry budget is spent."""
        messages = request.messages
        for attempt in range(1, self.max_retries + 2):
            last = attempt > self.max_retries
            try:
                completion, latency = await self._attempt(replace(request, messages=messages))
            except AttemptError as error:
                if not error.retryable or last:
                    raise TeacherError(_final_reason(error, attempt), error.kind, url=error.url,
                                       attempts=attempt) from None
                self._stats.retry_reasons[error.kind] += 1
                self._stats.counts["retries"] += 1
                await asyncio.sleep(self._delay(attempt, error.retry_after))
                continue
            text = strip_think(completion.text)
            if request.schema is None:
                return _reply(completion, text, None, attempt, latency, self.backend.model)
            try:
                parsed = parse_reply(text, request.schema, model)
            except ReplyFormatError as error:
                self._stats.fault()
                if last:
                    raise TeacherError(f"no usable JSON after {attempt} attempts: {error}", "bad_json",
                                       url=completion.endpoint, attempts=attempt) from None
                self._stats.retry_reasons["bad_json"] += 1
                self._stats.counts["retries"] += 1
                messages = reask_messages(request.messages, text, str(error))  # no wait: the server is fine
                continue
            return _reply(completion, text, parsed, attempt, latency, self.backend.model)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _attempt(self, request: ChatRequest) -> tuple[Completion, float]:
        """One call to the backend inside the window; returns the completion and its seconds."""
        ticket = await self.window.acquire()
        started = time.perf_counter()
        self._stats.counts["requests"] += 1
        try:
            completion = await self.backend.complete(request)
        except AttemptError as error:
            self._stats.tokens(error.prompt_tokens, error.completion_tokens)
            self._stats.fault(error)
            if error.overload:
                self.window.overloaded(ticket, error.retry_after)
            raise
        finally:
            self.window.release()
        latency = time.perf_counter() - started
        self.window.succeeded(ticket, latency)
        self._stats.tokens(completion.prompt_tokens, completion.completion_tokens)
        return completion, latency

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(30.0, self.backoff * 2 ** (attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter: retries do not arrive in step
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay

    # -- many calls -----------------------------------------------------------------------------

    async def map_unordered(self, items: Iterable[T], worker: Callable[[T], Awaitable[R]], *,
                            buffer: int | None = None) -> AsyncIterator[Outcome[T, R]]:
        """Run `worker(item)` for every item, a bounded number at a time; yield as each finishes.

        Items are pulled lazily, so a million chunks cost a few tasks of memory. A TeacherError
        ends only its item (the Outcome carries it); any other exception is a bug and propagates
        after the running tasks are cancelled.
        """
        limit = buffer or 2 * self.window.ceiling  # enough queued work to refill the window at once
        iterator = iter(items)
        running: set[asyncio.Task[Outcome[T, R]]] = set()
        finished: asyncio.Queue[asyncio.Task[Outcome[T, R]]] = asyncio.Queue()

        async def run(item: T) -> Outcome[T, R]:
            try:
                return Outcome(item, await worker(item))
            except TeacherError as error:
                return Outcome(item, error=error)

        def refill() -> None:
            while len(running) < limit:
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                task = asyncio.ensure_future(run(item))
                # A queue of finished tasks, not asyncio.wait over all of them: O(1) per item.
                task.add_done_callback(finished.put_nowait)
                running.add(task)

        try:
            refill()
            while running:
                task = await finished.get()
                running.discard(task)
                refill()  # before yielding, so the window stays full while the caller works
                yield task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    # -- accounting -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Totals since this Teacher was made; a stage stores them in StageResult.extra."""
        stats, window = self._stats, self.window
        seconds = (stats.last - stats.first) if stats.first is not None and stats.last is not None else 0.0
        counts = {name: stats.counts[name] for name in
                  ("calls", "completed", "failures", "requests", "retries", "cache_hits",
                   "cache_write_errors", "prompt_tokens", "completion_tokens")}
        return {
            "backend": self.backend.name,
            "model": self.backend.model,
            **counts,
            "seconds": round(seconds, 3),
            "items_per_s": round(counts["completed"] / seconds, 3) if seconds > 0 else 0.0,
            "window": {"ceiling": window.ceiling, "now": window.size, "smallest": window.smallest,
                       "limit": window.limit, "decreases": window.decreases, "isolated_overloads": window.isolated,
                       "pauses": window.pauses, "trials": window.trials},
            "faults": dict(stats.faults),
            "retry_reasons": dict(stats.retry_reasons),
            "failure_reasons": dict(stats.failure_reasons),
            "format_fallbacks": getattr(self.backend, "format_fallbacks", 0),
        }

    async def health(self) -> list[Health]:
        return await self.backend.health()


@functools.lru_cache(maxsize=64)
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()  # rebuilt on every call otherwise; models do not change


def _reply(completion: Completion, text: str, parsed: Any, attempts: int, latency: float, model: str) -> Reply:
    return Reply(text, parsed, completion.prompt_tokens, completion.completion_tokens, latency, attempts, False,
                 model, completion.finish_reason)


def _final_reason(error: AttemptError, attempts: int) -> str:
    if error.retryable:
        return f"{error.reason} (gave up after {attempts} attempts)"
    return error.reason
