"""QA generation: documents → chunks → self-contained questions → grounded answers.

Every finished unit of teacher work is appended at once to the ledger
(`qa_alpaca.partial.jsonl`): a chunk's generated questions, each accepted pair, each pair the
teacher marked "not in the document". A rerun reads the ledger first and asks the teacher only
for what is missing, so a crash or Ctrl-C loses at most the requests in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_factory.config import ProjectConfig
from slm_factory.generation import prompts
from slm_factory.generation.retrieval import context_for
from slm_factory.parsing.chunking import chunk_document
from slm_factory.records import Chunk, Document, QAPair
from slm_factory.workspace import Checkpoint

# Questions that lean on their source cannot be asked without it; the student learns nothing.
_DEICTIC = re.compile(
    r"(?i)\b(the|this|that)\s+(document|excerpt|passage|text|section|table|article above)\b"
    r"|according to the|in the (document|excerpt|text)|위 표|이 문서|본 문서|이 발췌문|발췌문|위 조항|이 조항"
)


@dataclass
class Job:
    """The questions to answer in one chunk (auto mode) or one configured question (fixed mode)."""

    document: Document
    chunk: Chunk
    context: str
    questions: list[tuple[str, str]] = field(default_factory=list)  # (category, question)
    want: int = 0  # auto mode: how many questions to ask the teacher for


@dataclass
class GenerationStats:
    chunks: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class TeacherUnusable(Exception):
    """The teacher is down or misconfigured: every further request would fail the same way."""


def _stop_if_teacher_unusable(error: BaseException) -> None:
    if getattr(error, "kind", None) in ("unreachable", "auth", "not_found", "config"):
        raise TeacherUnusable(str(error)) from error


def pair_id(doc_id: str, chunk_id: str, question: str) -> str:
    key = "\x1f".join((doc_id, chunk_id, " ".join(question.split())))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def generation_key(config: ProjectConfig, system_prompt: str) -> str:
    """What makes earlier ledger entries reusable: same teacher, prompts and chunking."""
    parts = {
        "backend": config.teacher.backend,
        "model": config.teacher.model,
        "temperature": config.teacher.temperature,
        "language": config.project.language,
        "system": system_prompt,
        "chunking": config.chunking.model_dump(),
        "max_context_chars": config.teacher.max_context_chars,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def questions_per_chunk(config: ProjectConfig, chunk: Chunk) -> int:
    setting = config.questions.questions_per_chunk
    if setting != "auto":
        return int(setting)
    # About one question per 150 tokens of text: a dense table chunk gets more, a stub fewer.
    return max(1, min(8, round(chunk.tokens / 150)))


def fixed_questions(config: ProjectConfig) -> list[tuple[str, str]]:
    path = config.questions_file
    if path is not None:
        lines = _read_questions_file(path, config.questions.file)
        return [("", line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [(category, q) for category, items in config.questions.categories.items() for q in items]


def _read_questions_file(path: Path, written: Path | None) -> list[str]:
    from slm_factory.pipeline import StageError

    where = f"questions.file: {written}" + (f" ({path})" if str(written) != str(path) else "")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise StageError(f"{where} does not exist; write one question per line there or remove the key") from None
    except UnicodeDecodeError:
        raise StageError(f"{where} is not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise StageError(f"{where} cannot be read: {error.strerror}") from None


def chunk_budget(config: ProjectConfig) -> int:
    # A chunk must fit in one request beside the prompt: cap it by max_context_chars.
    return max(64, min(config.chunking.max_tokens, config.teacher.max_context_chars // 2))


def plan_jobs(config: ProjectConfig, documents: list[Document]) -> list[Job]:
    fixed = fixed_questions(config)
    auto = config.questions.auto_generate or not fixed
    jobs: list[Job] = []
    for document in documents:
        chunks = chunk_document(document, chunk_budget(config), config.chunking.overlap_tokens)
        if auto:
            jobs.extend(Job(document, c, c.text, want=questions_per_chunk(config, c)) for c in chunks)
        for category, question in fixed:
            chosen = context_for(question, chunks, config.teacher.max_context_chars)
            if chosen:  # no chunk shares a word with the question: the document cannot answer it
                jobs.append(Job(document, chosen[0], "\n\n".join(c.text for c in chosen), [(category, question)]))
    return jobs


class Ledger:
    """The partial JSONL: what is finished, under the current generation key."""

    def __init__(self, checkpoint: Checkpoint, key: str) -> None:
        self.checkpoint = checkpoint
        self.key = key
        # Filter by key before keeping the first line per id: an entry redone under new settings
        # (another temperature, another prompt) must not hide behind its older line.
        entries, seen = [], set()
        for entry in checkpoint.entries():
            if entry.get("key") == key and entry.get("id") not in seen:
                seen.add(entry.get("id"))
                entries.append(entry)
        self.questions = {e["id"]: e["questions"] for e in entries if e.get("kind") == "questions"}
        self.done = {e["id"]: e for e in entries if e.get("kind") in ("pair", "rejected")}

    def add(self, kind: str, entry: dict[str, Any]) -> None:
        record = {"kind": kind, "key": self.key, **entry}
        self.checkpoint.append(record)
        if kind == "questions":
            self.questions[record["id"]] = record["questions"]
        else:
            self.done[record["id"]] = record

    def pairs(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in entry.items() if k not in ("kind", "key")}
            for entry in self.done.values()
            if entry["kind"] == "pair"
        ]


@dataclass
class Generator:
    config: ProjectConfig
    teacher: Any  # slm_factory.teacher.Teacher (typed loosely to keep the import lazy)
    ledger: Ledger
    system_prompt: str
    failure_types: tuple[type[BaseException], ...]
    on_done: Callable[[], None] = lambda: None
    stats: GenerationStats = field(default_factory=GenerationStats)
    failures: list[str] = field(default_factory=list)

    @property
    def language(self) -> str:
        return self.config.project.language

    async def run_job(self, job: Job) -> None:
        try:
            questions = job.questions or [("auto", q) for q in await self._questions(job)]
            await asyncio.gather(*(self._answer(job, category, q) for category, q in questions))
        except self.failure_types as error:
            _stop_if_teacher_unusable(error)
            self.stats.failed += 1
            self.failures.append(f"{job.document.path.rsplit('/', 1)[-1]} chunk {job.chunk.index}: {error}")
        finally:
            self.stats.chunks += 1
            self.on_done()

    async def _questions(self, job: Job) -> list[str]:
        ledger_id = f"q:{job.chunk.id}:{job.want}"
        if ledger_id in self.ledger.questions:
            return self.ledger.questions[ledger_id]
        messages = prompts.questions_messages(
            job.document.title, job.chunk.heading, job.context, job.want, self.language
        )
        reply = await self.teacher.chat(messages, schema=prompts.questions_schema(job.want))
        questions = prompts.parse_questions(reply.parsed, job.want)
        self.ledger.add("questions", {"id": ledger_id, "questions": questions})
        return questions

    async def _answer(self, job: Job, category: str, question: str) -> None:
        identifier = pair_id(job.document.id, job.chunk.id, question)
        if identifier in self.ledger.done:
            self.stats.skipped += 1
            return
        messages = prompts.answer_messages(
            self.system_prompt, job.document.title, job.chunk.heading, job.context, question, self.language
        )
        try:
            reply = await self.teacher.chat(messages, schema=prompts.ANSWER_SCHEMA)
            answerable, rewritten, answer = prompts.parse_answer(reply.parsed)
        except self.failure_types as error:
            _stop_if_teacher_unusable(error)
            self.stats.failed += 1
            self.failures.append(f"{job.chunk.source_doc}: {question[:60]!r}: {error}")
            return
        pair = QAPair(
            id=identifier,
            instruction=rewritten or question,
            output=answer,
            source_doc=job.chunk.source_doc,
            doc_id=job.document.id,
            chunk_id=job.chunk.id,
            pages=job.chunk.pages,
            section=job.chunk.heading,
            category=category,
            teacher=self.config.teacher.model,
        ).model_dump()
        reason = None if answerable else "not in the document"
        if reason is None and _DEICTIC.search(pair["instruction"]):
            reason = "question depends on its document"
        if reason:
            self.stats.reject(reason)
            self.ledger.add("rejected", {**pair, "reason": reason, "question": question})
            return
        self.stats.accepted += 1
        self.ledger.add("pair", pair)


async def generate(generator: Generator, jobs: list[Job]) -> None:
    # map_unordered keeps a bounded number of jobs in flight, so pairs finish (and reach the
    # ledger) steadily instead of every question request going out first.
    async for _ in generator.teacher.map_unordered(jobs, generator.run_job):
        pass


def ordered_pairs(pairs: list[dict[str, Any]], jobs: list[Job]) -> list[dict[str, Any]]:
    """Pairs in document and chunk order (the ledger holds them in completion order)."""
    order = {job.chunk.id: i for i, job in enumerate(jobs)}
    live = [p for p in pairs if p["chunk_id"] in order]
    return sorted(live, key=lambda p: (order[p["chunk_id"]], p["id"]))
