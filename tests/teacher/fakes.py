"""A scripted teacher for unit tests of prompt and parsing logic (generation, scoring, ...).

It is a real Backend subclass plugged in through the same extension point as ollama/openai,
so everything above it -- Teacher's retries, JSON parsing, re-asking, cache, accounting -- runs
for real:

    teacher = Teacher(ScriptedBackend(['{"questions": ["What is X?"]}', "X is Y."]))
    teacher = open_teacher(config, workspace, backend=ScriptedBackend(answer_fn))

Integration tests then run the same code against a real llama.cpp server.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from slm_factory.teacher import AttemptError, Backend, ChatRequest, Completion, Health

Script = Callable[[ChatRequest], "str | AttemptError"]


class ScriptedBackend(Backend):
    """Answers from a list (in order) or a function of the request; an AttemptError in the
    script is raised as that attempt's failure."""

    name = "scripted"

    def __init__(self, replies: Iterable[str | AttemptError] | Script, model: str = "scripted") -> None:
        self.model = model
        self._script: Script | None = replies if callable(replies) else None
        self._queue: deque[str | AttemptError] = deque() if callable(replies) else deque(replies)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self._script is not None:
            answer = self._script(request)
        elif self._queue:
            answer = self._queue.popleft()
        else:
            raise AssertionError("ScriptedBackend ran out of replies")
        if isinstance(answer, AttemptError):
            raise answer
        prompt_chars = sum(len(m.get("content", "")) for m in request.messages)
        return Completion(answer, prompt_chars // 4 + 1, len(answer) // 4 + 1, "stop")

    async def health(self) -> list[Health]:
        return [Health(True, "scripted teacher")]
