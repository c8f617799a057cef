"""Token counts without a tokenizer, for sizing chunks and context windows."""

from __future__ import annotations

import math


def estimate_tokens(text: str) -> int:
    """A deliberately high token estimate, for sizing context windows without a tokenizer.

    English runs ~4 characters per token; we assume 3. Hangul, CJK and other non-ASCII
    characters often take a token each or more; we assume 1.5 so Korean prompts are not cut.
    """
    ascii_chars = len(text.encode("ascii", "ignore"))  # in C: chunking measures text often
    non_ascii = len(text) - ascii_chars
    return math.ceil(ascii_chars / 3 + non_ascii * 1.5)
