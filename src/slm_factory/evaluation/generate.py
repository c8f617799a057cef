"""Asking the model under test: which model a `--model` value names, and answering questions with it.

Four backends answer the same questions the same way (greedy, the training system prompt):
- `transformers`: a model folder (the merged export, the base student, or an adapter folder),
  batched generation with left padding;
- `llamacpp`: a GGUF file, in process;
- `ollama`: a model name on an Ollama server (the original slm-factory's `eval --model`);
- `openai`: a model on any OpenAI-compatible server (vLLM, llama.cpp's server).
The last three reuse the teacher's backends (one HTTP client, one llama.cpp loader).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from slm_factory.pipeline import StageContext, StageError

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig
    from slm_factory.teacher import Backend
    from slm_factory.workspace import Workspace

Message = dict[str, str]
BackendName = Literal["transformers", "llamacpp", "ollama", "openai"]
BACKENDS: tuple[str, ...] = ("transformers", "llamacpp", "ollama", "openai")
OLLAMA_DEFAULT = "http://localhost:11434"
BATCH_SIZE = 8  # questions generated together by transformers: enough to use the cores, little padding


@dataclass(frozen=True)
class ModelRef:
    """A model to ask: what the user called it, and how to reach it."""

    name: str
    backend: str
    path: Path | None = None  # transformers folder or GGUF file
    api_base: str | None = None

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "backend": self.backend}


def exported_model(workspace: Workspace) -> ModelRef | None:
    """The project's newest export: merged_model/ when it holds weights, else the newest GGUF."""
    merged = workspace.path("merged_model")
    ggufs = sorted(workspace.path("gguf").glob("*.gguf"), key=lambda p: p.stat().st_mtime) \
        if workspace.path("gguf").is_dir() else []
    candidates: list[tuple[float, ModelRef]] = []
    if (merged / "config.json").is_file():
        candidates.append(((merged / "config.json").stat().st_mtime, ModelRef(str(merged), "transformers", merged)))
    if ggufs:
        candidates.append((ggufs[-1].stat().st_mtime, ModelRef(str(ggufs[-1]), "llamacpp", ggufs[-1])))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def model_ref(config: ProjectConfig, workspace: Workspace, model: str | None, backend: str | None = None,
              api_base: str | None = None, key: str = "--model") -> ModelRef:
    """The model a `--model` value names. No value: the project's own export. With no backend
    given it is inferred: an existing folder is a transformers model, a .gguf file goes to
    llama.cpp, `student` is the project's base student, and any other name is an Ollama model
    (as the original slm-factory's `eval --model`), or a Hugging Face name when it has a slash
    and no tag."""
    if backend is not None and backend not in BACKENDS:
        raise StageError(f"--backend {backend}: unknown; use one of {', '.join(BACKENDS)}")
    if not model:
        found = exported_model(workspace)
        if found is None:
            raise StageError(f"no exported model in {workspace.root}: run `slm-factory export` first, or give {key}")
        return found
    if model == "student":
        from slm_factory.training.models import resolve_student

        folder = resolve_student(config)
        return ModelRef(config.student.model, "transformers", folder)
    path = Path(model).expanduser()
    path = path if path.is_absolute() or path.exists() else config.root / path
    chosen = backend or _inferred_backend(model, path)
    if chosen in ("ollama", "openai"):
        return ModelRef(model, chosen, None, api_base or _default_api_base(config, chosen, key))
    if chosen == "llamacpp":
        if not path.is_file():
            raise StageError(f"{key} {model}: no such GGUF file")
        return ModelRef(model, chosen, path.resolve())
    if path.is_dir():
        if not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            raise StageError(f"{key} {model}: the folder holds no model (no config.json or adapter_config.json)")
        return ModelRef(model, "transformers", path.resolve())
    from slm_factory.training.models import hub_model

    return ModelRef(model, "transformers", hub_model(model))


def _inferred_backend(model: str, path: Path) -> str:
    if path.is_file() and path.suffix.lower() == ".gguf":
        return "llamacpp"
    if path.exists():
        return "transformers"
    if model.lower().endswith(".gguf") or model.startswith((".", "/", "~")):
        raise StageError(f"--model {model}: no such file or folder")
    if "/" in model and ":" not in model:
        return "transformers"  # a Hugging Face name (org/model); Ollama names with a namespace carry a :tag
    return "ollama"


def _default_api_base(config: ProjectConfig, backend: str, key: str) -> str:
    teacher = config.teacher
    base = teacher.api_base[0] if isinstance(teacher.api_base, list) else teacher.api_base
    if teacher.backend == backend and base:
        return base
    if backend == "ollama":
        return OLLAMA_DEFAULT
    raise StageError(f"{key} with --backend openai needs --api-base URL (the server's /v1 address)")


# -- answering ---------------------------------------------------------------------------------


class Answerer(Protocol):
    def answer(self, conversations: list[list[Message]], max_new_tokens: int,
               advance: Callable[[], None] = lambda: None) -> list[str]: ...

    def close(self) -> None: ...


def open_answerer(ref: ModelRef, config: ProjectConfig) -> Answerer:
    if ref.backend == "transformers":
        assert ref.path is not None
        return TransformersAnswerer(ref.path)
    return BackendAnswerer(ref, _backend(ref, config))


def _backend(ref: ModelRef, config: ProjectConfig) -> Backend:
    if ref.backend == "llamacpp":
        from slm_factory.teacher.llamacpp import LlamaCppBackend

        return LlamaCppBackend(str(ref.path), n_ctx=4096)
    if ref.backend == "ollama":
        from slm_factory.teacher.ollama import OllamaBackend

        return OllamaBackend([ref.api_base or OLLAMA_DEFAULT], ref.name, timeout=config.teacher.timeout)
    from slm_factory.teacher.openai import OpenAIBackend

    key = config.teacher.api_key.get_secret_value() if config.teacher.api_key else None
    return OpenAIBackend([ref.api_base or ""], ref.name, api_key=key, timeout=config.teacher.timeout)


class BackendAnswerer:
    """Questions to a llama.cpp, Ollama or OpenAI-compatible model, a few at a time."""

    def __init__(self, ref: ModelRef, backend: Backend, concurrency: int = 4) -> None:
        self.ref, self.backend, self.concurrency = ref, backend, concurrency

    def answer(self, conversations: list[list[Message]], max_new_tokens: int,
               advance: Callable[[], None] = lambda: None) -> list[str]:
        return asyncio.run(self._all(conversations, max_new_tokens, advance))

    async def _all(self, conversations: list[list[Message]], max_new_tokens: int,
                   advance: Callable[[], None]) -> list[str]:
        from slm_factory.teacher import AttemptError, ChatRequest, TeacherError

        slots = asyncio.Semaphore(self.concurrency)

        async def one(messages: list[Message]) -> str:
            async with slots:
                request = ChatRequest(messages=messages, temperature=0.0, max_tokens=max_new_tokens)
                completion = await self.backend.complete(request)
            advance()
            return completion.text.strip()

        try:
            return list(await asyncio.gather(*(one(m) for m in conversations)))
        except (AttemptError, TeacherError) as error:
            reason = getattr(error, "reason", None) or str(error)
            raise StageError(f"{self.ref.name} ({self.ref.backend}): {' '.join(str(reason).split())[:300]}") from None
        finally:
            await self.backend.aclose()

    def close(self) -> None:
        pass


class TransformersAnswerer:
    """A transformers model folder (an adapter folder loads its base with it), greedy, batched."""

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoTokenizer

        self.torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
        except (OSError, ValueError) as error:
            raise StageError(f"{folder}: no tokenizer could be loaded ({' '.join(str(error).split())[:200]})") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not self.tokenizer.chat_template:
            raise StageError(f"{folder}: the tokenizer has no chat template")
        self.model = _load_model(folder, torch)
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config)

    def answer(self, conversations: list[list[Message]], max_new_tokens: int,
               advance: Callable[[], None] = lambda: None) -> list[str]:
        from slm_factory.training.formats import render

        prompts = [render(self.tokenizer, messages, generation_prompt=True) for messages in conversations]
        # Longest first, in batches of similar length: little padding, and a too-long one fails early.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        answers: dict[int, str] = {}
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            for index, text in zip(batch, self._generate([prompts[i] for i in batch], max_new_tokens)):
                answers[index] = text
                advance()
        return [answers[i] for i in range(len(prompts))]

    def _generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        with self.torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                         eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id)
        new = output[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def close(self) -> None:
        del self.model


def _load_model(folder: Path, torch: Any) -> Any:
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    try:
        if (folder / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(folder, dtype=dtype)
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError) as error:
        raise StageError(f"{folder}: no model could be loaded ({' '.join(str(error).split())[:200]})") from None
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.generation_config.do_sample = False  # greedy: sampling settings of the checkpoint would only warn
    for name in ("temperature", "top_p", "top_k"):
        setattr(model.generation_config, name, None)
    return model.eval()


def stop_token_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    """Where an answer ends: the checkpoint's eos ids, the tokenizer's, and the assistant turn's
    end marker of the chat template (<|im_end|>, <end_of_turn>, <|eot_id|>, <|end|>), the same
    stops the Modelfile carries."""
    from slm_factory.export.ollama import turn_stops

    ids: list[int] = []
    configured = generation_config.eos_token_id if generation_config is not None else None
    for value in (configured if isinstance(configured, list) else [configured], [tokenizer.eos_token_id]):
        ids += [int(v) for v in value if v is not None]
    for marker in turn_stops(tokenizer):
        token = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(token, int) and token != tokenizer.unk_token_id:
            ids.append(token)
    return list(dict.fromkeys(ids))


# -- the questions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """A held-out question: the conversation up to it, and the answer the reference gives."""

    id: str
    messages: list[Message]
    reference: str
    chunk_id: str = ""

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


def read_questions(ctx: StageContext, data: str | None, limit: int) -> tuple[list[Question], str]:
    """The first `limit` questions of `data` (QA records, Alpaca JSON or messages JSONL), else of
    the held-out probes in qa_test.json; and the file's name for the results."""
    from slm_factory.training.formats import pair_messages, read_data, system_prompt
    from slm_factory.records import QAPair
    from slm_factory.workspace import ARTIFACTS, ArtifactError, read_records

    system = system_prompt(ctx.config)
    if data:
        found = read_data(Path(data), system)
        pairs, label = found.pairs, str(data)
        questions = [Question(e.id, e.messages[:-1], e.messages[-1]["content"]) for e in found.examples]
    else:
        path = ctx.workspace.path("qa_test")
        if not path.is_file():
            raise StageError(f"{ARTIFACTS['qa_test']} is missing: the split stage writes the held-out questions "
                             "(eval.enabled: true); run `slm-factory split`, or give --data FILE")
        try:
            pairs = read_records(path, QAPair, ARTIFACTS["qa_test"])
        except ArtifactError as error:
            raise StageError(str(error)) from None
        label, questions = ARTIFACTS["qa_test"], []
    questions += [Question(p.id, pair_messages(p, system)[:-1], p.output, p.chunk_id) for p in pairs]
    if not questions:
        raise StageError(f"{label}: no questions in it")
    return questions[:limit], label
