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
from slm_factory.curation.dedup import normalise, numbers
from slm_factory.curation.teacher_work import REASK_HEAT
from slm_factory.generation import prompts
from slm_factory.generation.retrieval import context_for
from slm_factory.generation.spans import Span, pick_spans
from slm_factory.parsing.chunking import chunk_document
from slm_factory.records import Chunk, Document, QAPair
from slm_factory.workspace import Checkpoint

# Questions that lean on their source cannot be asked without it; the student learns nothing.
_DEICTIC = re.compile(
    r"(?i)\b(the|this|that)\s+(document|excerpt|passage|text|section|table|article above)\b"
    r"|according to the|in the (document|excerpt|text)|위 표|이 문서|본 문서|이 발췌문|발췌문|위 조항|이 조항"
)
# answer_first: a question about the prompt's own words ("What does this sentence mean?",
# "What does it mean to turn this sentence into a question?") instead of the span's subject.
_ABOUT_THE_PROMPT = re.compile(
    r"(?i)\b(this|that|the (above|given|following))\s+(sentence|text|row|table row|answer|question)\b"
    r"|turn (this|a|the) (sentence|text|row)|into a question|answer to (this|the) question"
    r"|이 문장|위 문장|다음 문장|이 행|질문으로 바꾸"
)
# Words every question has: sharing only these with the span is sharing nothing.
_QUESTION_WORDS = frozenset(
    "what which when where who whom whose why how does did do is are was were the this that with from "
    "for about into many much there their have has been will would should could can "
    "무엇 무엇인가 어떤 언제 어디 누구 얼마 몇 어떻게 왜 있는가 인가 입니까 무엇입니까".split()
)
QUESTION_MAX_TOKENS = 64  # one question is tens of tokens; a longer reply is a loop or an essay


@dataclass
class Job:
    """The questions to answer in one chunk (auto mode) or one configured question (fixed mode)."""

    document: Document
    chunk: Chunk
    context: str
    questions: list[tuple[str, str]] = field(default_factory=list)  # (category, question)
    want: int = 0  # auto mode: how many questions to ask the teacher for
    spans: list[Span] | None = None  # answer_first: the answers to ask questions for (maybe none)


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


def embedded_teacher(config: ProjectConfig) -> bool:
    """Whether the teacher is the bundled SmolLM2-135M (teacher.model `smollm2` on llamacpp)."""
    from slm_factory.teacher.llamacpp import BUNDLED_NAME

    return config.teacher.backend == "llamacpp" and config.teacher.model.strip().lower() == BUNDLED_NAME


def question_mode(config: ProjectConfig) -> str:
    """questions.mode with `auto` resolved: answer_first for the embedded SmolLM2 teacher, which
    cannot write open-ended questions (FACTS.md), open for every other teacher."""
    mode = config.questions.mode
    if mode != "auto":
        return mode
    return "answer_first" if embedded_teacher(config) else "open"


# SmolLM2 was trained on English only (FACTS.md): asked about a Korean sentence it writes an English
# question that the language rule then drops; in the demo that was 44 of 58 rejected questions and
# a third of generate's requests. Other teachers are trusted with every language.
EMBEDDED_TEACHER_LANGUAGES = ("en",)


def unwritable_documents(config: ProjectConfig, documents: list[Document]) -> list[Document]:
    """Documents in a language the teacher cannot write (only known for the embedded teacher)."""
    if not embedded_teacher(config):
        return []
    return [document for document in documents
            if (document.language or config.project.language) not in EMBEDDED_TEACHER_LANGUAGES]


def generation_key(config: ProjectConfig, system_prompt: str) -> str:
    """What makes earlier ledger entries reusable: same teacher, prompts and chunking."""
    parts: dict[str, Any] = {
        "backend": config.teacher.backend,
        "model": config.teacher.model,
        "temperature": config.teacher.temperature,
        "language": config.project.language,
        "system": system_prompt,
        "chunking": config.chunking.model_dump(),
        "max_context_chars": config.teacher.max_context_chars,
    }
    if question_mode(config) == "answer_first":  # only then: open-mode ledgers keep their key
        parts["mode"] = "answer_first"
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
    answer_first = question_mode(config) == "answer_first"
    jobs: list[Job] = []
    for document in documents:
        chunks = chunk_document(document, chunk_budget(config), config.chunking.overlap_tokens)
        if auto and answer_first:
            taken: set[str] = set()  # a sentence in the overlap of two chunks is one answer, not two
            for chunk in chunks:
                spans = chunk_spans(config, document, chunk, taken)
                taken.update(span.text for span in spans)
                jobs.append(Job(document, chunk, chunk.text, spans=spans))
        elif auto:
            jobs.extend(Job(document, c, c.text, want=questions_per_chunk(config, c)) for c in chunks)
        for category, question in fixed:
            chosen = context_for(question, chunks, config.teacher.max_context_chars)
            if chosen:  # no chunk shares a word with the question: the document cannot answer it
                jobs.append(Job(document, chosen[0], "\n\n".join(c.text for c in chosen), [(category, question)]))
    return jobs


def chunk_spans(config: ProjectConfig, document: Document, chunk: Chunk, taken: set[str]) -> list[Span]:
    language = document.language or config.project.language
    headings = [chunk.heading, document.title]
    return pick_spans(chunk.text, questions_per_chunk(config, chunk), language, headings, taken)


def question_problem(question: str, answer: str, prompt: str) -> str | None:
    """Why `question` cannot ask for `answer` in a pair, or None: the checks of open mode
    (self-contained, not about its document) and those a small teacher needs (a question at all,
    not about the prompt, not a copy of it, about what its answer says)."""
    if not question:
        return "no question in the reply"
    if len(question.split()) < 3:
        return "question too short"
    if _DEICTIC.search(question):
        return "question depends on its document"
    if _ABOUT_THE_PROMPT.search(question) or " ".join(question.split()) in " ".join(prompt.split()):
        return "question is about the prompt"
    if not content_words(question) & content_words(answer):
        return "question shares no content word with its answer"
    if numbers(question) - numbers(answer):  # "in 2022" when the row says nothing of a year
        return "question states a number its answer does not"
    return None


def content_words(text: str) -> set[str]:
    """Words of four letters or more (two syllables in Hangul), normalised as for near-duplicates
    (case, width, Korean particles), without the words every question has."""
    words = set()
    for word in re.findall(r"\w+", text):
        norm = normalise(word)
        hangul = any("\uac00" <= char <= "\ud7a3" for char in norm)
        if len(norm) >= (2 if hangul else 4) and norm not in _QUESTION_WORDS:
            words.add(norm)
    return words


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
            if job.spans is not None:
                await asyncio.gather(*(self._question_for(job, span) for span in job.spans))
                return
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
        pair = self._pair(job, rewritten or question, answer, category, identifier)
        reason = None if answerable else "not in the document"
        if reason is None and _DEICTIC.search(pair["instruction"]):
            reason = "question depends on its document"
        if reason:
            self.stats.reject(reason)
            self.ledger.add("rejected", {**pair, "reason": reason, "question": question})
            return
        self.stats.accepted += 1
        self.ledger.add("pair", pair)

    # -- answer_first -----------------------------------------------------------------------------

    async def _question_for(self, job: Job, span: Span) -> None:
        """One pair whose answer is `span`: ask for its question (once, and once more on a bad one),
        then write the pair. The question reaches the ledger before the pair, so a resume after a
        crash between the two writes the pair without asking again."""
        span_id = f"s:{job.chunk.id}:{span.key}"
        if span_id in self.ledger.done:
            self.stats.skipped += 1
            return
        known = self.ledger.questions.get(span_id)
        if known is None:
            try:
                question, problem = await self._ask_question(span)
            except self.failure_types as error:
                _stop_if_teacher_unusable(error)
                self.stats.failed += 1
                self.failures.append(f"{job.chunk.source_doc}: {span.text[:60]!r}: {error}")
                return
            if problem:
                self.stats.reject(problem)
                rejected = self._pair(job, question, span.text, "auto")
                self.ledger.add("rejected", {**rejected, "id": span_id, "reason": problem, "question": question})
                return
            self.ledger.add("questions", {"id": span_id, "questions": [question]})
        else:
            question = known[0]
        pair = self._pair(job, question, span.text, "auto")
        earlier = self.ledger.done.get(pair["id"])
        if earlier is not None and earlier.get("output") == span.text:
            self.stats.skipped += 1  # a resume: this span's pair is written
            return
        if earlier is not None:  # another span of the chunk got the same question
            self.stats.reject("question repeats another span's")
            self.ledger.add("rejected", {**pair, "id": span_id, "reason": "question repeats another span's",
                                         "question": question})
            return
        self.stats.accepted += 1
        self.ledger.add("pair", pair)

    async def _ask_question(self, span: Span) -> tuple[str, str | None]:
        messages = prompts.question_for_answer_messages(span.text, span.kind, self.language)
        question, problem = "", None
        # A second try samples hotter: the same request would be answered from the cache.
        for temperature in (self.config.teacher.temperature, min(1.0, self.config.teacher.temperature + REASK_HEAT)):
            reply = await self.teacher.chat(messages, temperature=temperature, max_tokens=QUESTION_MAX_TOKENS)
            question = prompts.parse_question(reply.text)
            problem = question_problem(question, span.text, messages[-1]["content"])
            if problem is None:
                break
        return question, problem

    def _pair(self, job: Job, question: str, answer: str, category: str, identifier: str | None = None) -> dict[str, Any]:
        """The pair record; its id hashes the question asked (`identifier` when the asked question
        was rewritten since)."""
        return QAPair(
            id=identifier or pair_id(job.document.id, job.chunk.id, question),
            instruction=question,
            output=answer,
            source_doc=job.chunk.source_doc,
            doc_id=job.document.id,
            chunk_id=job.chunk.id,
            pages=job.chunk.pages,
            section=job.chunk.heading,
            category=category,
            teacher=self.config.teacher.model,
        ).model_dump()


async def generate(generator: Generator, jobs: list[Job]) -> None:
    # map_unordered keeps a bounded number of jobs in flight, so pairs finish (and reach the
    # ledger) steadily instead of every question request going out first.
    async for _ in generator.teacher.map_unordered(jobs, generator.run_job):
        pass


def ordered_pairs(pairs: list[dict[str, Any]], jobs: list[Job]) -> list[dict[str, Any]]:
    """Pairs in document and chunk order (the ledger holds them in completion order)."""
    order = {job.chunk.id: i for i, job in enumerate(jobs)}
    # Chunk ids come from the documents' bytes, so a renamed file's pairs are still in the ledger:
    # they take the file's current name.
    names = {job.chunk.id: job.chunk.source_doc for job in jobs}
    live = [{**p, "source_doc": names[p["chunk_id"]]} for p in pairs if p["chunk_id"] in order]
    return sorted(live, key=lambda p: (order[p["chunk_id"]], p["id"]))
