"""From a model's text to a JSON value that matches the schema, or a message saying why not.

Models wrap JSON in prose, code fences and `<think>` blocks, cut it off at max_tokens, and
leave trailing commas. We take what can be taken safely and explain the rest precisely, because
the explanation is sent back to the model when we ask again.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from slm_factory.teacher.base import Message

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class ReplyFormatError(ValueError):
    """The reply is not usable JSON; the message is written to be shown to the model."""


def strip_think(text: str) -> str:
    """Remove reasoning blocks. Stop words would also cut real answers that mention them."""
    text = _THINK_BLOCK.sub("", text)
    lower = text.lower()
    if "</think>" in lower:
        # Templates that open <think> inside the prompt leave only the closing tag.
        text = text[lower.rindex("</think>") + len("</think>") :]
    elif lower.lstrip().startswith("<think>"):
        return ""  # an unclosed block: the reply was cut off while still thinking
    return text.strip()


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text`, tolerating fences, prose and trailing commas."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    start = _first_bracket(stripped)
    if start < 0:
        raise ReplyFormatError(f"the reply holds no JSON object (it begins: {stripped[:80]!r})")
    end = _matching_close(stripped, start)
    if end < 0:
        raise ReplyFormatError("the reply ends before its JSON does (it was cut off; answer more briefly)")
    candidate = stripped[start : end + 1]
    for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            return json.loads(attempt)
        except json.JSONDecodeError as error:
            problem = error
    raise ReplyFormatError(f"the reply's JSON is invalid: {problem.msg} at character {problem.pos}")


def _first_bracket(text: str) -> int:
    positions = [p for p in (text.find("{"), text.find("[")) if p >= 0]
    return min(positions) if positions else -1


def _matching_close(text: str, start: int) -> int:
    """Index of the bracket closing the one at `start`, skipping brackets inside strings."""
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index
    return -1


def parse_reply(text: str, schema: dict[str, Any], model: type[BaseModel] | None = None) -> Any:
    """Extract and validate; a pydantic `model` gives back an instance of it."""
    data = extract_json(text)
    if model is not None:
        try:
            return model.model_validate(data)
        except ValidationError as error:
            problems = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors()[:5]]
            raise ReplyFormatError("the JSON does not match the schema: " + "; ".join(problems)) from None
    problems = schema_errors(data, schema, schema)
    if problems:
        raise ReplyFormatError("the JSON does not match the schema: " + "; ".join(problems[:5]))
    return data


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_errors(data: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "value") -> list[str]:
    """The common subset of JSON Schema that structured-output servers accept, checked by hand."""
    if "$ref" in schema:
        return schema_errors(data, _resolve_ref(schema["$ref"], root), root, path)
    if "anyOf" in schema or "oneOf" in schema:
        branches = schema.get("anyOf") or schema.get("oneOf") or []
        if any(not schema_errors(data, branch, root, path) for branch in branches):
            return []
        return [f"{path}: matches none of the allowed forms"]
    if "enum" in schema and data not in schema["enum"]:
        return [f"{path}: must be one of {schema['enum']}"]
    wanted = schema.get("type")
    if wanted is not None and not _has_type(data, wanted):
        return [f"{path}: expected {wanted}, got {type(data).__name__}"]
    if isinstance(data, dict):
        return _object_errors(data, schema, root, path)
    if isinstance(data, list):
        return _array_errors(data, schema, root, path)
    if isinstance(data, str) and len(data) < schema.get("minLength", 0):
        return [f"{path}: shorter than {schema['minLength']} characters"]
    return []


def _has_type(data: Any, wanted: str | list[str]) -> bool:
    names = wanted if isinstance(wanted, list) else [wanted]
    for name in names:
        if isinstance(data, bool) and name in ("integer", "number"):
            continue  # JSON true is not a number, though Python's bool is an int
        if isinstance(data, _TYPES.get(name, (object,))):
            return True
    return False


def _object_errors(data: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    problems = [f"{path}: missing key {key!r}" for key in schema.get("required", []) if key not in data]
    properties = schema.get("properties", {})
    for key, value in data.items():
        if key in properties:
            problems += schema_errors(value, properties[key], root, f"{path}.{key}")
        elif schema.get("additionalProperties") is False:
            problems.append(f"{path}: unexpected key {key!r}")
    return problems


def _array_errors(data: list[Any], schema: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    problems = []
    if len(data) < schema.get("minItems", 0):
        problems.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(data) > schema["maxItems"]:
        problems.append(f"{path}: more than {schema['maxItems']} items")
    if isinstance(schema.get("items"), dict):
        for index, item in enumerate(data):
            problems += schema_errors(item, schema["items"], root, f"{path}[{index}]")
    return problems


def _resolve_ref(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def schema_instruction(schema: dict[str, Any]) -> str:
    """What we tell a model that cannot be constrained by the server."""
    return (
        "Reply with one JSON value only -- no prose, no code fence -- matching this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )


def with_instruction(messages: list[Message], instruction: str) -> list[Message]:
    """Append `instruction` to the system message, adding one if there is none."""
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def reask_messages(messages: list[Message], bad_text: str, problem: str) -> list[Message]:
    """The conversation so far plus the unusable reply and what was wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": bad_text[:4000]},
        {"role": "user", "content": f"That reply cannot be used: {problem}. Reply again with only the JSON."},
    ]
