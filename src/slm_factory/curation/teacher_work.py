"""Ask the teacher once per item, crash-safe: the machinery that `score`, `split` and `augment` share.

    work = ask_each(ctx, artifact="qa_scored", items=pairs, item_id=lambda p: p.id,
                    messages=score_messages, schema=SCORE_SCHEMA, parse=parse_score,
                    settings={}, description="Scoring")
    if work.stopped: ...            # the teacher is down or misconfigured; work.results is what is saved
    for pair in pairs:
        verdict = work.results.get(pair.id)   # None: this item failed (work.failures says why)

What it does, as `generate` does:
- the teacher pool (`open_teacher`, adaptive concurrency, retries, re-asking on malformed JSON,
  the on-disk reply cache, `stats()`);
- the ledger: every finished item is appended at once to `<artifact>.partial.jsonl` under a key
  that hashes everything that makes its result reusable (teacher backend, model, temperature and
  max_tokens, the item's messages, the schema, the stage's `settings`). A rerun or a resume after
  kill -9 asks only for items whose key is not there; a change of any of those asks again;
- `parse(item, reply.parsed)` turns a reply into the stored result (it must be JSON-ready). A
  ValueError from it (ReplyShapeError is one) means the reply cannot be used: the teacher is asked
  once more, told what was wrong, bypassing the cache; if that fails too the item is a failure --
  never a silent default. A rerun asks again only the items that failed; an item whose replies
  were all unusable is written to the ledger as given up, and `update` (KEEP_GIVEN_UP) leaves it
  be, so that a document that did not change costs no request;
- `schema=None` asks for plain text (a small teacher's one-line question: a JSON grammar costs it
  tokens and time for nothing): `parse(item, reply.text)`, and an unusable reply is asked again
  (twice at most) hotter with another seed instead of being told what was wrong (a small model
  cannot use the note).
  `request(item)` gives the sampling keys of an item's request (temperature, max_tokens, seed);
  they are part of its ledger key;
- `key_messages(item)`, where given, stands for the prompt in the ledger key: the prompt with what
  must not cost a new request replaced (score: a renamed file's title, by its document's id);
- a teacher that is unreachable or misconfigured (every further request would fail the same way)
  stops the pass: `stopped` says why, and everything finished so far is in the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from slm_factory.pipeline import StageContext
    from slm_factory.teacher import Teacher

T = TypeVar("T")
Schema = dict[str, Any] | type[BaseModel]
Messages = list[dict[str, str]]

# Error kinds after which every further request fails the same way: stop instead of burning items.
UNUSABLE_KINDS = ("unreachable", "auth", "not_found", "config")


@dataclass
class TeacherWork:
    """The results of one pass over the items."""

    results: dict[str, Any] = field(default_factory=dict)  # item id -> parsed result (this run + ledger)
    failures: dict[str, str] = field(default_factory=dict)  # item id -> why it failed (this run)
    reused: int = 0  # results taken from the ledger, no teacher call
    asked: int = 0  # items sent to the teacher in this run
    teacher_stats: dict[str, Any] = field(default_factory=dict)  # Teacher.stats(); empty when none was asked
    stopped: str | None = None  # why the pass stopped early (teacher unusable); None when it ran through

    def failure_lines(self, label: Callable[[str], str] = str, limit: int = 20) -> list[str]:
        """Up to `limit` lines "<label(id)>: <reason>" for the log."""
        return [f"{label(item)}: {reason}" for item, reason in list(self.failures.items())[:limit]]

    def log_pair_failures(self, log: Any, pairs: Sequence[Any]) -> None:
        """Warn about each failed pair by its document and question."""
        by_id = {pair.id: pair for pair in pairs}
        for line in self.failure_lines(lambda i: f"{by_id[i].source_doc}: {by_id[i].instruction[:60]!r}"):
            log.warning(line)


class _Stop(Exception):
    """Raised inside a worker to end the whole pass (map_unordered then cancels the rest)."""


# ctx.options key: items that got no usable reply in an earlier run are not asked again (update sets
# it: an unchanged document costs no request); a stage command or `run` asks them again.
KEEP_GIVEN_UP = "keep_given_up"


@dataclass
class _Ledger:
    """The partial JSONL of one artifact: entries are looked up by their full key, so an entry
    written under other settings is never mistaken for a current one. An item whose replies were
    all unusable is written too, as given up; a later result for it wins."""

    checkpoint: Any  # slm_factory.workspace.Checkpoint
    done: dict[str, Any] = field(default_factory=dict)  # entry key -> result
    given_up: dict[str, str] = field(default_factory=dict)  # entry key -> why its replies were unusable

    def load(self) -> None:
        self.done, self.given_up = {}, {}
        for line in self.checkpoint.entries():
            if "entry" not in line:
                continue
            if "unusable" in line:
                self.given_up.setdefault(line["entry"], str(line["unusable"]))
            else:
                self.done.setdefault(line["entry"], line.get("result"))
        for entry in self.done:
            self.given_up.pop(entry, None)

    def add(self, entry: str, item: str, result: Any) -> None:
        self.checkpoint.append({"entry": entry, "id": item, "result": result})
        self.done[entry] = result

    def give_up(self, entry: str, item: str, reason: str) -> None:
        self.checkpoint.append({"entry": entry, "id": item, "unusable": reason})
        self.given_up[entry] = reason


def teacher_identity(ctx: StageContext) -> dict[str, Any]:
    """What, besides the prompt, decides the teacher's reply."""
    section = ctx.config.teacher
    identity: dict[str, Any] = {"backend": section.backend, "model": section.model,
                                "temperature": section.temperature, "max_tokens": section.max_tokens}
    if ctx.teacher_backend is not None:  # a backend handed in (tests, callers) replaces the configured one
        identity["override"] = ctx.teacher_backend.identity()
    return identity


def entry_key(identity: dict[str, Any], settings: dict[str, Any], schema: Schema | None, item: str,
              messages: Messages) -> str:
    schema_json = schema.model_json_schema() if isinstance(schema, type) else schema
    parts = {"teacher": identity, "settings": settings, "schema": schema_json, "id": item, "messages": messages}
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def ask_each(
    ctx: StageContext,
    *,
    artifact: str,
    items: Sequence[T],
    item_id: Callable[[T], str],
    messages: Callable[[T], Messages],
    schema: Schema | None,
    parse: Callable[[T, Any], Any],
    settings: dict[str, Any],
    description: str,
    max_concurrency: int | None = None,
    request: Callable[[T], dict[str, Any]] | None = None,
    key_messages: Callable[[T], Messages] | None = None,
) -> TeacherWork:
    """Ask the teacher once for each item not already in the ledger of `artifact`; see the module
    doc. `max_concurrency` caps this pass's requests in flight (the teacher's own
    teacher.max_concurrency still applies: the smaller wins). Items sharing an id are asked once."""
    ledger = _Ledger(ctx.workspace.checkpoint(artifact))
    ledger.load()
    identity = teacher_identity(ctx)
    work = TeacherWork()
    pending: list[tuple[T, str, str, Messages, dict[str, Any]]] = []  # (item, id, entry key, messages, sampling)
    seen: set[str] = set()
    for item in items:
        identifier = item_id(item)
        if identifier in seen:
            continue
        seen.add(identifier)
        prompt = messages(item)
        sampling = request(item) if request else {}
        entry = entry_key(identity, {**settings, **({"request": sampling} if sampling else {})}, schema,
                          identifier, key_messages(item) if key_messages else prompt)
        if entry in ledger.done:
            work.results[identifier] = ledger.done[entry]
            work.reused += 1
        elif entry in ledger.given_up and ctx.options.get(KEEP_GIVEN_UP):
            work.failures[identifier] = f"{ledger.given_up[entry]} (in an earlier run; the stage's own command asks again)"
        else:
            pending.append((item, identifier, entry, prompt, sampling))
    if not pending:
        return work  # nothing to ask: the teacher is not even opened (no model load, no server)
    work.asked = len(pending)
    try:
        asyncio.run(_ask_pending(ctx, ledger, work, pending, schema, parse, description, max_concurrency,
                                 total=len(seen)))
    except _Stop as stop:
        work.stopped = str(stop)
    return work


async def _ask_pending(ctx: StageContext, ledger: _Ledger, work: TeacherWork,
                       pending: list[tuple[T, str, str, Messages, dict[str, Any]]], schema: Schema | None,
                       parse: Callable[[T, Any], Any], description: str, max_concurrency: int | None,
                       total: int) -> None:
    from slm_factory.teacher import TeacherError, open_teacher

    async with open_teacher(ctx.config, ctx.workspace, backend=ctx.teacher_backend) as teacher:
        ctx.progress.teacher_opened(teacher)
        with ctx.progress.task(description, total) as advance:
            if work.reused:
                advance(work.reused)

            async def one(job: tuple[T, str, str, Messages, dict[str, Any]]) -> None:
                item, identifier, entry, prompt, sampling = job
                try:
                    if schema is None:
                        result = await _ask_one_text(teacher, item, prompt, sampling, parse)
                    else:
                        result = await _ask_one(teacher, item, prompt, schema, parse, sampling)
                except TeacherError as error:
                    if error.kind in UNUSABLE_KINDS:
                        raise _Stop(error.reason) from error
                    work.failures[identifier] = f"{error.kind}: {error.reason}"
                except ValueError as error:
                    work.failures[identifier] = f"unusable reply: {error}"
                    ledger.give_up(entry, identifier, work.failures[identifier])
                else:
                    ledger.add(entry, identifier, result)
                    work.results[identifier] = result
                finally:
                    advance()

            buffer = min(max_concurrency, 2 * teacher.max_concurrency) if max_concurrency else None
            try:
                async for _ in teacher.map_unordered(pending, one, buffer=buffer):
                    pass
            finally:
                work.teacher_stats = teacher.stats()


async def _ask_one(teacher: Teacher, item: T, prompt: Messages, schema: Schema, parse: Callable[[T, Any], Any],
                   sampling: dict[str, Any]) -> Any:
    """One item: ask; a reply `parse` refuses is asked again once, with the reason, past the cache."""
    from slm_factory.teacher.jsonreply import reask_messages

    reply = await teacher.chat(prompt, schema=schema, **sampling)
    try:
        return parse(item, reply.parsed)
    except ValueError as error:
        again = await teacher.chat(reask_messages(prompt, reply.text, str(error)), schema=schema, cache=False,
                                   **sampling)
        return parse(item, again.parsed)


REASK_HEAT = 0.5  # a re-ask samples hotter: the same request sampled as cold repeats itself
TEXT_DRAWS = 3  # a plain-text item's tries; a seeded request asked again later gets the same reply


async def _ask_one_text(teacher: Teacher, item: T, prompt: Messages, sampling: dict[str, Any],
                        parse: Callable[[T, Any], Any]) -> Any:
    """One plain-text item: ask; a reply `parse` refuses is asked again, hotter and with the next
    seed, past the cache, up to TEXT_DRAWS tries in all (the last refusal is the item's failure)."""
    hotter = min(1.0, sampling.get("temperature", teacher.temperature) + REASK_HEAT)
    for draw in range(TEXT_DRAWS):
        keys = sampling if draw == 0 else {**sampling, "temperature": hotter, "seed": sampling.get("seed", 0) + draw}
        reply = await teacher.chat(prompt, cache=draw == 0, **keys)
        try:
            return parse(item, reply.text)
        except ValueError:
            if draw == TEXT_DRAWS - 1:
                raise
    raise AssertionError("TEXT_DRAWS must be at least 1")


def merged_stats(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two passes' teacher accounting as one: counts added, the rate over both."""
    if not first or not second:
        return first or second
    merged = dict(first)
    for key, value in second.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key in merged:
            merged[key] = merged[key] + value
    merged["items_per_s"] = round(merged["completed"] / merged["seconds"], 3) if merged.get("seconds") else 0.0
    return merged


def merged_work(first: TeacherWork, second: TeacherWork) -> TeacherWork:
    """Two passes over disjoint items (two prompts of one stage) as one."""
    return TeacherWork(results={**first.results, **second.results}, failures={**first.failures, **second.failures},
                       reused=first.reused + second.reused, asked=first.asked + second.asked,
                       teacher_stats=merged_stats(first.teacher_stats, second.teacher_stats),
                       stopped=first.stopped or second.stopped)
