"""`check`: is this project ready to run? Each check is one line, with what to do on failure."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from slm_factory.config import ProjectConfig
from slm_factory.parsing.registry import EXTENSIONS


@dataclass
class Check:
    ok: bool
    label: str
    advice: str = ""


def run_checks(config: ProjectConfig) -> list[Check]:
    return [
        Check(True, "project.yaml loads and validates"),
        check_documents(config),
        check_output(config),
        *check_teacher(config),
    ]


def check_documents(config: ProjectConfig) -> Check:
    folder = config.documents_dir
    if not folder.is_dir():
        return Check(False, f"documents folder {folder} missing", f"create it and add documents: mkdir -p {folder}")
    wanted = set(config.parsing.formats)
    counts = Counter(
        EXTENSIONS[p.suffix.lower()]
        for p in folder.rglob("*")
        if p.is_file() and EXTENSIONS.get(p.suffix.lower()) in wanted
    )
    if not counts:
        return Check(False, f"no documents in {folder}", f"add {', '.join(config.parsing.formats)} files to it")
    summary = ", ".join(f"{fmt} {n}" for fmt, n in sorted(counts.items()))
    return Check(True, f"documents: {sum(counts.values())} files in {folder} ({summary})")


def check_output(config: ProjectConfig) -> Check:
    folder = config.output_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        return Check(False, f"output folder {folder} is not writable ({error.strerror})", "fix its permissions or set paths.output")
    return Check(True, f"output folder {folder} is writable")


def check_teacher(config: ProjectConfig) -> list[Check]:
    teacher = config.teacher
    bases = teacher.api_base if isinstance(teacher.api_base, list) else [teacher.api_base]
    if teacher.backend == "llamacpp":
        return [_check_gguf(teacher.model)]
    if teacher.backend == "ollama":
        return [_check_ollama(base.rstrip("/"), teacher.model, teacher.timeout) for base in bases]
    key = teacher.api_key.get_secret_value() if teacher.api_key else os.environ.get("OPENAI_API_KEY")
    return [_check_openai(base.rstrip("/"), teacher.model, key, teacher.timeout) for base in bases]


def _check_gguf(model: str) -> Check:
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return Check(True, f"teacher model file {path} exists")
    return Check(False, f"teacher model file {model} not found", "set teacher.model to the path of a .gguf file")


def _get_json(url: str, timeout: float, headers: dict[str, str] | None = None) -> object:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=min(timeout, 10)) as response:
        return json.loads(response.read())


def _check_ollama(base: str, model: str, timeout: float) -> Check:
    try:
        tags = _get_json(f"{base}/api/tags", timeout)
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Check(False, f"Ollama does not answer at {base} ({_reason(error)})", "start it with `ollama serve`")
    names = {m.get("name", "") for m in tags.get("models", [])} if isinstance(tags, dict) else set()
    wanted = model if ":" in model else f"{model}:latest"
    if wanted in names or model in names:
        return Check(True, f"Ollama at {base} has {model}")
    return Check(False, f"Ollama at {base} does not have {model}", f"pull it with `ollama pull {model}`")


def _check_openai(base: str, model: str, key: str | None, timeout: float) -> Check:
    url = f"{base}/models" if base.endswith("/v1") else f"{base}/v1/models"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        listing = _get_json(url, timeout, headers)
    except urllib.error.HTTPError as error:
        hint = "check teacher.api_key" if error.code in (401, 403) else "check teacher.api_base"
        return Check(False, f"{url} answered HTTP {error.code}", hint)
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Check(False, f"no OpenAI-compatible server at {base} ({_reason(error)})",
                     "start one, e.g. `vllm serve MODEL` or `python -m llama_cpp.server --model X.gguf`")
    ids = {m.get("id") for m in listing.get("data", [])} if isinstance(listing, dict) else set()
    if model in ids:
        return Check(True, f"server at {base} serves {model}")
    served = ", ".join(sorted(i for i in ids if i)) or "nothing"
    return Check(False, f"server at {base} does not serve {model} (it serves: {served})", "set teacher.model to a served model")


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return str(getattr(reason, "strerror", None) or reason)
