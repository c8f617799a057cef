"""Prompt files (package data, one per task and language), rendered and parsed separately.

Rendering builds the chat messages; parsing turns a teacher's JSON reply into plain values and
rejects replies that do not have the expected shape. Calling the teacher is the caller's job.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from string import Template
from typing import Any

LANGUAGES = ("en", "ko")

# Bounded arrays: a small model that starts repeating items is stopped by the grammar instead of
# running to max_tokens. (No maxLength on strings: llama.cpp expands it into one nested rule per
# character, and a few thousand of those crash its grammar compiler.)
def questions_schema(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "questions": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": count,
            }
        },
        "required": ["questions"],
    }


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answerable": {"type": "boolean"},
        "question": {"type": "string"},
        "answer": {"type": "string"},
    },
    "required": ["answerable", "question", "answer"],
}
DIALOGUE_SCHEMA = {
    "type": "object",
    "properties": {
        "turns": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "user": {"type": "string"},
                    "assistant": {"type": "string"},
                },
                "required": ["user", "assistant"],
            },
            "maxItems": 12,
        }
    },
    "required": ["turns"],
}


class ReplyShapeError(ValueError):
    """The teacher's JSON does not have the fields the task needs."""


@cache
def prompt_text(name: str, language: str) -> str:
    lang = language if language in LANGUAGES else "en"
    return resources.files("slm_factory.generation").joinpath(f"prompts/{lang}/{name}.txt").read_text(encoding="utf-8")


def default_system_prompt(language: str) -> str:
    return prompt_text("system", language).strip()


def _section_line(heading: str, language: str) -> str:
    if not heading:
        return ""
    return f", 항목 \"{heading}\"" if language == "ko" else f", section \"{heading}\""


def questions_messages(title: str, heading: str, text: str, count: int, language: str) -> list[dict[str, str]]:
    body = Template(prompt_text("questions", language)).substitute(
        title=title, section_line=_section_line(heading, language), text=text, count=count
    )
    return [{"role": "user", "content": body}]


def answer_messages(
    system_prompt: str, title: str, heading: str, text: str, question: str, language: str
) -> list[dict[str, str]]:
    body = Template(prompt_text("answer", language)).substitute(
        title=title, section_line=_section_line(heading, language), text=text, question=question
    )
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": body}]


def dialogue_messages(title: str, pairs: list[tuple[str, str]], language: str) -> list[dict[str, str]]:
    label_q, label_a = ("질문", "답변") if language == "ko" else ("Q", "A")
    listed = "\n\n".join(f"{i}. {label_q}: {q}\n   {label_a}: {a}" for i, (q, a) in enumerate(pairs, 1))
    body = Template(prompt_text("dialogue", language)).substitute(title=title, pairs=listed, turns=len(pairs))
    return [{"role": "user", "content": body}]


_UNITS = {"en": {"row": ("table row", "Row")}, "ko": {"row": ("표의 행", "행")}}
_SENTENCE_UNIT = {"en": ("sentence", "Sentence"), "ko": ("문장", "문장")}


def question_for_answer_messages(answer: str, kind: str, language: str) -> list[dict[str, str]]:
    """answer_first: ask for one question whose answer is `answer`. Deliberately bare: SmolLM2-135M
    copies any example question and loses the task under a list of rules (FACTS.md)."""
    lang = language if language in LANGUAGES else "en"
    unit, label = _UNITS[lang].get(kind, _SENTENCE_UNIT[lang])
    body = Template(prompt_text("question_for_answer", lang)).substitute(unit=unit, label=label, answer=answer)
    return [{"role": "user", "content": body.strip()}]


_QUESTION_LEAD = re.compile(r"^\s*(?:\*\*)?(?:question|q|질문)\s*[:：]\s*(?:\*\*)?\s*", re.IGNORECASE)


def parse_question(text: str) -> str:
    """The first question in a plain-text reply: its first line, without a "Question:" label or
    quotes, cut after its first question mark ("" when the reply holds none)."""
    for line in text.strip().splitlines():
        line = _QUESTION_LEAD.sub("", line).strip().strip("\"'“”‘’` ")
        if not line:
            continue
        mark = min((i for i in (line.find("?"), line.find("？")) if i >= 0), default=-1)
        return " ".join(line[: mark + 1].split()) if mark >= 0 else ""
    return ""


def parse_questions(data: Any, limit: int) -> list[str]:
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise ReplyShapeError('expected {"questions": [...]}')
    seen: dict[str, None] = {}
    for item in data["questions"]:
        if isinstance(item, str) and len(item.strip()) > 5:
            seen.setdefault(" ".join(item.split()), None)
    if not seen:
        raise ReplyShapeError("the reply holds no usable question")
    return list(seen)[:limit]


def parse_answer(data: Any) -> tuple[bool, str, str]:
    """(answerable, self-contained question, answer)."""
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
        raise ReplyShapeError('expected {"answerable": ..., "question": ..., "answer": ...}')
    answerable = data.get("answerable")
    if isinstance(answerable, str):
        answerable = answerable.strip().lower() in ("true", "yes", "1")
    answer = data["answer"].strip()
    question = data.get("question") if isinstance(data.get("question"), str) else ""
    return bool(answerable) and bool(answer), " ".join(question.split()), answer


def parse_dialogue(data: Any, expected_turns: int) -> list[dict[str, str]]:
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
        raise ReplyShapeError('expected {"turns": [{"user": ..., "assistant": ...}]}')
    turns = [
        {"user": t["user"].strip(), "assistant": t["assistant"].strip()}
        for t in data["turns"]
        if isinstance(t, dict) and isinstance(t.get("user"), str) and isinstance(t.get("assistant"), str)
        and t["user"].strip() and t["assistant"].strip()
    ]
    if len(turns) < min(2, expected_turns):
        raise ReplyShapeError(f"expected {expected_turns} turns, got {len(turns)}")
    return turns
