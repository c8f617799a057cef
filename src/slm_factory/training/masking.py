"""Token labels that put the loss on assistant replies only, for any chat template.

Three ways to find the assistant tokens, tried in this order:

1. The template marks them with ``{% generation %}`` … ``{% endgeneration %}``: the tokenizer's own
   ``return_assistant_tokens_mask`` says which tokens they are (the template author decided).
2. Token prefixes: for each assistant turn, render the conversation up to that turn with the
   generation prompt, and up to the end of the turn; when both tokenise to a true prefix of the
   whole conversation's tokens, the turn is the tokens between the two lengths.
3. Character offsets: when a token prefix is not a true prefix (BPE merges across the boundary
   where a template writes its scaffolding as plain text, e.g. a Llama-3-style template on a
   tokenizer that lacks its special tokens), the rendered strings still are prefixes of the
   whole text; a token belongs to the turn when its first character lies inside the turn.

In 2 and 3 the end-of-turn marker is trained (the model must learn to stop); whitespace the
template writes after it is scaffolding and is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

Message = dict[str, str]


class TooLongError(ValueError):
    """An example does not fit in ``max_length`` tokens; never cut silently."""

    def __init__(self, length: int, max_length: int) -> None:
        super().__init__(f"{length} tokens, more than max_length {max_length}")
        self.length = length
        self.max_length = max_length


class TemplateMaskError(ValueError):
    """The chat template renders earlier turns differently once later turns follow."""


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def tokenize_with_labels(
    tokenizer: Any, messages: list[Message], max_length: int
) -> tuple[list[int], list[int]]:
    """Tokenise a conversation; labels are -100 everywhere except the assistant replies."""
    if has_generation_markers(tokenizer):
        input_ids, mask = _marked_assistant_tokens(tokenizer, messages)
    else:
        input_ids, mask = _rendered_assistant_tokens(tokenizer, messages)
    if len(input_ids) > max_length:
        raise TooLongError(len(input_ids), max_length)
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(input_ids, mask)]
    return input_ids, labels


def has_generation_markers(tokenizer: Any) -> bool:
    template = tokenizer.chat_template
    return isinstance(template, str) and bool(_GENERATION_TAG.search(template))


def _marked_assistant_tokens(tokenizer: Any, messages: list[Message]) -> tuple[list[int], list[bool]]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(out["input_ids"]), [bool(m) for m in out["assistant_masks"]]


def _render(tokenizer: Any, messages: list[Message], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(text)


def _encode(tokenizer: Any, text: str) -> list[int]:
    # The template writes its own BOS/special tokens; apply_chat_template tokenises the same way.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def assistant_char_spans(tokenizer: Any, messages: list[Message]) -> tuple[str, list[Span]]:
    """The whole rendered text and, per assistant turn, its characters (reply + end marker)."""
    text = _render(tokenizer, messages, generation_prompt=False)
    spans: list[Span] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (text.startswith(before) and text.startswith(through)):
            raise TemplateMaskError(
                "the chat template renders earlier turns differently when later turns follow"
            )
        end = len(through.rstrip())
        if end > len(before):
            spans.append(Span(len(before), end))
    return text, spans


def _rendered_assistant_tokens(tokenizer: Any, messages: list[Message]) -> tuple[list[int], list[bool]]:
    text, spans = assistant_char_spans(tokenizer, messages)
    input_ids = _encode(tokenizer, text)
    mask = _mask_by_token_prefixes(tokenizer, text, spans, input_ids)
    if mask is None:
        mask = _mask_by_char_offsets(tokenizer, text, spans, input_ids)
    return input_ids, mask


def _mask_by_token_prefixes(
    tokenizer: Any, text: str, spans: list[Span], input_ids: list[int]
) -> list[bool] | None:
    mask = [False] * len(input_ids)
    for span in spans:
        start_ids = _encode(tokenizer, text[: span.start])
        end_ids = _encode(tokenizer, text[: span.end])
        n_start, n_end = len(start_ids), len(end_ids)
        if input_ids[:n_start] != start_ids or input_ids[:n_end] != end_ids:
            return None
        mask[n_start:n_end] = [True] * (n_end - n_start)
    return mask


def _mask_by_char_offsets(
    tokenizer: Any, text: str, spans: list[Span], input_ids: list[int]
) -> list[bool]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) != input_ids:
        raise TemplateMaskError("the tokenizer gives different tokens with offsets")
    mask = []
    for first, _last in enc["offset_mapping"]:
        mask.append(any(span.start <= first < span.end for span in spans))
    return mask
