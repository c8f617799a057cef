"""Teacher replies on disk, so a rerun or a resume asks the teacher nothing it asked before.

One small JSON file per reply, at <folder>/<first two hex digits>/<sha256>.json. Each file is
written whole with write_atomic (temp file + rename), so a crash leaves a reply or no reply,
never half of one, and concurrent writers of the same key (other tasks, other processes) can
only replace a file with an identical one. No index file means nothing to lock or corrupt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from slm_factory.teacher.base import ChatRequest
from slm_factory.workspace import write_atomic

CACHE_DIR_NAME = ".teacher_cache"


@dataclass(frozen=True)
class CachedReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    model: str


def cache_key(identity: dict[str, str], request: ChatRequest) -> str:
    """Everything that decides the reply: backend, model, messages, schema, sampling."""
    material = {
        **identity,
        "messages": request.messages,
        "schema": request.schema,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "options": request.options,
    }
    encoded = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


class ReplyCache:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedReply | None:
        try:
            data = json.loads(self._path(key).read_bytes())
            return CachedReply(**data)
        except (OSError, ValueError, TypeError):
            return None  # absent, or written by another version: ask again

    async def put(self, key: str, reply: CachedReply) -> None:
        data = json.dumps(asdict(reply), ensure_ascii=False).encode("utf-8")
        # write_atomic fsyncs; in a thread, so hundreds of replies a second do not stall the loop.
        await asyncio.to_thread(write_atomic, self._path(key), data)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("??/*.json")) if self.folder.is_dir() else 0

