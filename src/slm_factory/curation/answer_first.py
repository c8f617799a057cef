"""Rewordings a small teacher can write: a new question for a pair's answer (questions.mode answer_first).

Told to reword a question, a model of SmolLM2's size copies it: in the demo 12 of 15 held-out
probes came back too close to their training question. Writing one question for a given answer is
the task it does well (generate's answer_first mode, whose answers are sentences and table rows of
the documents). So in that mode `split` and `augment` do not show the teacher the question at all:
they ask generate's own answer-first prompt again, for the pair's answer, sampled with a seed of
their own, and apply generate's question checks to the reply. A question that comes back too close
to the training questions is then turned down by each stage's own rules, exactly as a rewording is.
"""

from __future__ import annotations

import hashlib
from typing import Any

from slm_factory.config import ProjectConfig
from slm_factory.generation import prompts as generation_prompts
from slm_factory.generation.qa import QUESTION_MAX_TOKENS, question_mode, question_problem
from slm_factory.generation.spans import answer_kind
from slm_factory.records import QAPair

# Hotter than generate's first try: the same answer at generate's temperature tends to give back
# the training question word for word.
FRESH_HEAT = 0.3


def asks_for_answers(config: ProjectConfig) -> bool:
    """Whether split and augment write new questions for answers instead of rewording questions."""
    return question_mode(config) == "answer_first"


def fresh_messages(pair: QAPair, language: str) -> list[dict[str, str]]:
    """Generate's answer-first prompt for the pair's answer; the question is not shown."""
    return generation_prompts.question_for_answer_messages(pair.output.strip(), answer_kind(pair.output), language)


def fresh_request(config: ProjectConfig, salt: str) -> dict[str, Any]:
    """Sampling keys of one request: a short reply, hotter than generate, and a seed of its own
    (`salt` names the stage and the item), so the reply is a new draw and not generate's cached one."""
    seed = int(hashlib.sha256(salt.encode("utf-8")).hexdigest()[:8], 16) % (2**31 - 2)
    return {"temperature": min(1.0, config.teacher.temperature + FRESH_HEAT),
            "max_tokens": QUESTION_MAX_TOKENS, "seed": seed}


def parse_fresh_question(pair: QAPair, reply_text: str, prompt: list[dict[str, str]]) -> str:
    """The question of a plain-text reply, held to generate's question checks; ValueError says
    why it cannot ask for the pair's answer (teacher_work then asks once more, hotter)."""
    question = generation_prompts.parse_question(reply_text)
    problem = question_problem(question, pair.output, prompt[-1]["content"])
    if problem:
        raise ValueError(f"{problem}: {question[:120]!r}")
    return question
