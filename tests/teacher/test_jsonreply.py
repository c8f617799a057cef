"""Parsing what models really send: noise around JSON, fences, cut-off JSON, prose, <think>."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from slm_factory.teacher.base import estimate_tokens
from slm_factory.teacher.jsonreply import (
    ReplyFormatError,
    extract_json,
    parse_reply,
    reask_messages,
    strip_think,
    with_instruction,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 5},
        "answer": {"type": "string"},
        "category": {"enum": ["fact", "howto"]},
        "pages": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
    },
    "required": ["question", "answer"],
    "additionalProperties": False,
}


class QA(BaseModel):
    question: str = Field(min_length=5)
    answer: str


@pytest.mark.parametrize(
    "text",
    [
        '{"question": "What is X?", "answer": "Y"}',
        '```json\n{"question": "What is X?", "answer": "Y"}\n```',
        'Sure! Here is the JSON:\n{"question": "What is X?", "answer": "Y"}\nHope this helps.',
        '{"question": "What is X?", "answer": "Y",}',
        '<think>I should write {"question"...}</think>\n{"question": "What is X?", "answer": "Y"}',
    ],
)
def test_usable_json_is_taken_from_noise(text: str):
    assert parse_reply(strip_think(text), SCHEMA) == {"question": "What is X?", "answer": "Y"}


def test_braces_inside_strings_do_not_end_the_object():
    text = 'Result: {"question": "What does {x} mean in \\"f{}\\"?", "answer": "a }"} trailing'
    assert extract_json(text)["question"] == 'What does {x} mean in "f{}"?'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"question": "What is X?", "answer": "Y', "cut off"),
        ("I cannot answer that from the document.", "holds no JSON"),
        ("None", "holds no JSON"),
        ('{"question": What is X?}', "invalid"),
    ],
)
def test_unusable_replies_say_why(text: str, message: str):
    with pytest.raises(ReplyFormatError, match=message):
        parse_reply(text, SCHEMA)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ('{"question": "What is X?"}', "missing key 'answer'"),
        ('{"question": "What is X?", "answer": 3}', "value.answer: expected string"),
        ('{"question": "Why", "answer": "Y"}', "shorter than 5"),
        ('{"question": "What is X?", "answer": "Y", "category": "opinion"}', "must be one of"),
        ('{"question": "What is X?", "answer": "Y", "pages": [1, "2"]}', "value.pages[1]: expected integer"),
        ('{"question": "What is X?", "answer": "Y", "pages": [1, 2, 3, 4]}', "more than 3 items"),
        ('{"question": "What is X?", "answer": "Y", "extra": 1}', "unexpected key 'extra'"),
        ('[{"question": "What is X?", "answer": "Y"}]', "expected object, got list"),
    ],
)
def test_schema_violations_are_named(data: str, problem: str):
    with pytest.raises(ReplyFormatError, match="does not match the schema") as caught:
        parse_reply(data, SCHEMA)
    assert problem in str(caught.value)


def test_pydantic_model_schema_gives_an_instance_and_readable_errors():
    parsed = parse_reply('{"question": "What is X?", "answer": "Y"}', QA.model_json_schema(), QA)
    assert isinstance(parsed, QA) and parsed.answer == "Y"
    with pytest.raises(ReplyFormatError, match="question"):
        parse_reply('{"question": "Why", "answer": "Y"}', QA.model_json_schema(), QA)


def test_ref_schemas_from_pydantic_validate_without_the_model():
    class Batch(BaseModel):
        pairs: list[QA]

    schema = Batch.model_json_schema()
    assert "$defs" in schema
    assert parse_reply('{"pairs": [{"question": "What is X?", "answer": "Y"}]}', schema)
    with pytest.raises(ReplyFormatError, match="missing key 'answer'"):
        parse_reply('{"pairs": [{"question": "What is X?"}]}', schema)


def test_think_blocks():
    assert strip_think("<think>\nplan\n</think>\n\nThe answer.") == "The answer."
    assert strip_think("<THINK>a</THINK>one <think>b</think>two") == "one two"
    assert strip_think("plan without opening tag</think>The answer.") == "The answer."
    assert strip_think("<think>still thinking when max_tokens ran out") == ""
    # A real answer that merely mentions thinking is left alone.
    assert strip_think("I think the deadline is June.") == "I think the deadline is June."


def test_reask_carries_the_bad_reply_and_the_problem():
    base = [{"role": "user", "content": "Q?"}]
    messages = reask_messages(base, "not json", "the reply holds no JSON")
    assert messages[:1] == base and messages[1] == {"role": "assistant", "content": "not json"}
    assert "holds no JSON" in messages[2]["content"] and messages[2]["role"] == "user"


def test_instruction_joins_the_system_message():
    assert with_instruction([{"role": "user", "content": "Q"}], "JSON!")[0] == {"role": "system", "content": "JSON!"}
    joined = with_instruction([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}], "JSON!")
    assert joined[0]["content"] == "Be brief.\n\nJSON!" and len(joined) == 2


def test_token_estimate_is_generous_for_korean():
    assert estimate_tokens("a" * 300) == 100
    assert estimate_tokens("가" * 100) >= 100  # Hangul often costs a token per syllable or more
