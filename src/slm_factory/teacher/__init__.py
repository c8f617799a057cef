"""The teacher LLM: one async call, three backends, and everything that makes calling it cheap.

How a stage uses it (inside one `asyncio.run`)::

    from slm_factory.teacher import TeacherError, open_teacher

    async with open_teacher(ctx.config, ctx.workspace) as teacher:
        async for outcome in teacher.map_unordered(chunks, lambda chunk: ask(teacher, chunk)):
            if outcome.ok:
                checkpoint.append(outcome.value)          # finished work is saved at once
            else:
                failures.append(outcome.error.as_record())  # recorded, never raised
        result.extra["teacher"] = teacher.stats()          # shown by `slm-factory status`

    async def ask(teacher, chunk):
        reply = await teacher.chat(messages, schema=Questions)  # a pydantic model or a JSON schema
        return reply.parsed                                       # a Questions instance

Backends: `ollama` (native /api/chat), `openai` (any OpenAI-compatible server), `llamacpp`
(in-process GGUF). A failure that retries cannot fix raises `TeacherError` (`.kind`, `.reason`);
`kind == "unreachable"` means the teacher is down and the reason says what to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slm_factory.teacher.base import (
    AttemptError,
    Backend,
    ChatRequest,
    Completion,
    Health,
    Message,
    Reply,
    TeacherError,
)
from slm_factory.teacher.cache import CACHE_DIR_NAME, ReplyCache
from slm_factory.teacher.pool import AdaptiveWindow, Outcome, Teacher

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig, TeacherSection
    from slm_factory.workspace import Workspace

__all__ = [
    "AdaptiveWindow",
    "AttemptError",
    "Backend",
    "ChatRequest",
    "Completion",
    "Health",
    "Message",
    "Outcome",
    "Reply",
    "ReplyCache",
    "Teacher",
    "TeacherError",
    "make_backend",
    "open_teacher",
    "teacher_health",
]


def make_backend(section: TeacherSection) -> Backend:
    """The backend that teacher.backend names, configured from the teacher section."""
    bases = section.api_base if isinstance(section.api_base, list) else [section.api_base]
    if section.backend == "ollama":
        from slm_factory.teacher.ollama import OllamaBackend

        return OllamaBackend(bases, section.model, timeout=section.timeout, keep_alive=section.keep_alive,
                             num_ctx=section.num_ctx, concurrency=section.max_concurrency)
    if section.backend == "openai":
        from slm_factory.teacher.openai import OpenAIBackend

        key = section.api_key.get_secret_value() if section.api_key else None
        return OpenAIBackend(bases, section.model, api_key=key, timeout=section.timeout,
                             concurrency=section.max_concurrency)
    from slm_factory.teacher.llamacpp import LlamaCppBackend

    return LlamaCppBackend(section.model, n_ctx=section.num_ctx, cut_loops=True)


def open_teacher(config: ProjectConfig, workspace: Workspace | None = None, *, backend: Backend | None = None,
                 use_cache: bool | None = None) -> Teacher:
    """A Teacher for one stage run. Replies are cached under output/.teacher_cache when
    teacher.cache is on (or `use_cache` says so) and a workspace is given. `backend` replaces the
    configured one (tests pass scripted backends here)."""
    section = config.teacher
    cached = section.cache if use_cache is None else use_cache
    cache = ReplyCache(workspace.root / CACHE_DIR_NAME) if cached and workspace is not None else None
    return Teacher(backend or make_backend(section), max_concurrency=section.max_concurrency,
                   max_retries=section.max_retries, temperature=section.temperature,
                   max_tokens=section.max_tokens, cache=cache)


async def teacher_health(section: TeacherSection) -> list[Health]:
    """Each backend's own health call, for `slm-factory check`."""
    backend = make_backend(section)
    try:
        return await backend.health()
    finally:
        await backend.aclose()

