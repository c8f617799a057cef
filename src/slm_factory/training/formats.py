"""Training examples as chat messages, rendered with the student tokenizer's own chat template.

One system prompt serves training and the exported Modelfile: `export.ollama.system_prompt`
(empty: the built-in one for project.language). A second setting would let the two drift apart,
as they did in the original slm-factory, and a model trained under one system prompt and served
under another answers worse.

`--data` files come in three shapes: our QA records or Alpaca JSON (a list of {instruction,
input, output}), and chat messages (one {"messages": [...]} per line, or a JSON list of them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_factory.pipeline import StageError
from slm_factory.records import Dialogue, QAPair

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig

Message = dict[str, str]
ROLES = ("system", "user", "assistant")


@dataclass
class Example:
    """One training example. `group` keeps related examples on one side of the validation split
    (a paraphrase with the pair it was written from)."""

    id: str
    group: str
    kind: str  # pair, dialogue or messages
    messages: list[Message]


# -- the system prompt -------------------------------------------------------------------------


@cache
def _builtin_system_prompt(language: str) -> str:
    folder = "ko" if language == "ko" else "en"
    return resources.files("slm_factory.training").joinpath(f"prompts/{folder}/system.txt").read_text("utf-8").strip()


def system_prompt(config: ProjectConfig) -> str:
    """The one system prompt: trained with, and written into the Modelfile."""
    configured = (config.export.ollama.system_prompt or "").strip()
    return configured or _builtin_system_prompt(config.project.language)


# -- records → messages ------------------------------------------------------------------------


def pair_messages(pair: QAPair, system: str) -> list[Message]:
    question = f"{pair.instruction.strip()}\n\n{pair.input.strip()}" if pair.input.strip() else pair.instruction.strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": question},
            {"role": "assistant", "content": pair.output.strip()}]


def dialogue_messages(dialogue: Dialogue, system: str) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": system}]
    for turn in dialogue.turns:
        messages.append({"role": "user", "content": turn["user"].strip()})
        messages.append({"role": "assistant", "content": turn["assistant"].strip()})
    return messages


def pair_example(pair: QAPair, system: str) -> Example:
    return Example(pair.id, pair.parent_id or pair.id, "pair", pair_messages(pair, system))


def dialogue_example(dialogue: Dialogue, system: str) -> Example:
    group = dialogue.pair_ids[0] if dialogue.pair_ids else dialogue.id
    return Example(dialogue.id, group, "dialogue", dialogue_messages(dialogue, system))


# -- rendering ---------------------------------------------------------------------------------


def render(tokenizer: Any, messages: list[Message], generation_prompt: bool = False) -> str:
    """The conversation as the student sees it, in its own chat template (with the assistant's
    header after it when `generation_prompt`: a question to answer). A template that refuses a
    system turn (Gemma 2's raises) gets the system prompt at the head of the first user turn, as
    Gemma 3's own template does."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except TemplateError as error:
        if not messages or messages[0]["role"] != "system" or "system" not in str(error).lower():
            raise
    return tokenizer.apply_chat_template(fold_system(messages), tokenize=False, add_generation_prompt=generation_prompt)


def fold_system(messages: list[Message]) -> list[Message]:
    system, first, *rest = messages
    return [{"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}, *rest]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text: the template wrote the special tokens itself, so none are added
    (as apply_chat_template(tokenize=True) does)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


# -- --data files ------------------------------------------------------------------------------

_SHAPES = ("expected QA records or Alpaca JSON (a list of {instruction, input, output}) "
           'or chat messages (one {"messages": [...]} per line)')


@dataclass
class DataFile:
    """What a --data file holds: QA pairs, or examples already written as messages."""

    pairs: list[QAPair]
    examples: list[Example]
    replaced_system: int = 0  # messages whose own system prompt gave way to the project's


def read_data(path: Path, system: str) -> DataFile:
    """A --data file in any of the three shapes; anything else raises StageError in one line."""
    label = f"--data {path}"
    if not path.is_file():
        raise StageError(f"{label}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StageError(f"{label}: not UTF-8 text; {_SHAPES}") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return _messages_file(_json_lines(text, label), label, system, "line")
    if isinstance(whole, dict) and "messages" in whole:  # a JSONL file of one line
        return _messages_file([(1, whole)], label, system, "line")
    if not isinstance(whole, list):
        raise StageError(f"{label}: a JSON {type(whole).__name__}; {_SHAPES}")
    if whole and all(isinstance(item, dict) and "messages" in item for item in whole):
        return _messages_file(list(enumerate(whole, 1)), label, system, "record")
    return DataFile(pairs=[_pair(item, index, label) for index, item in enumerate(whole, 1)], examples=[])


def _json_lines(text: str, label: str) -> list[tuple[int, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError:
            raise StageError(f"{label}: line {number} is not JSON; {_SHAPES}") from None
    if not records:
        raise StageError(f"{label}: empty; {_SHAPES}")
    return records


def _pair(item: Any, index: int, label: str) -> QAPair:
    from pydantic import ValidationError

    if not isinstance(item, dict) or not isinstance(item.get("instruction"), str) or not isinstance(item.get("output"), str):
        raise StageError(f"{label}: record {index} has no instruction and output text; {_SHAPES}")
    try:
        return QAPair.model_validate(item)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        raise StageError(f"{label}: record {index} is not a QA record ({where}: {first['msg']})") from None


def _messages_file(records: list[tuple[int, Any]], label: str, system: str, unit: str) -> DataFile:
    examples, replaced = [], 0
    for number, record in records:
        where = f"{label}: {unit} {number}"
        if not isinstance(record, dict) or "messages" not in record:
            raise StageError(f"{where} has no \"messages\"; {_SHAPES}")
        messages = checked_messages(record["messages"], where)
        own = [m["content"] for m in messages if m["role"] == "system"]
        replaced += bool(own and own[0].strip() != system)
        turns = [m for m in messages if m["role"] != "system"]
        identifier = record.get("id") if isinstance(record.get("id"), str) and record.get("id") else _messages_id(turns)
        examples.append(Example(identifier, identifier, "messages", [{"role": "system", "content": system}, *turns]))
    return DataFile(pairs=[], examples=examples, replaced_system=replaced)


def checked_messages(messages: Any, where: str) -> list[Message]:
    """Messages with known roles and text content, at most one system turn (first), and an
    assistant turn last (the part trained on)."""
    if not isinstance(messages, list) or not messages:
        raise StageError(f"{where}: \"messages\" must be a non-empty list of {{role, content}}")
    checked: list[Message] = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise StageError(f"{where}: message {position + 1} must be {{\"role\": one of {', '.join(ROLES)}, "
                             "\"content\": text}")
        if message["role"] == "system" and position:
            raise StageError(f"{where}: a system message may only come first")
        checked.append({"role": message["role"], "content": message["content"]})
    if checked[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in checked):
        raise StageError(f"{where}: needs a user message and must end with an assistant message")
    return checked


def _messages_id(messages: list[Message]) -> str:
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()[:16]
