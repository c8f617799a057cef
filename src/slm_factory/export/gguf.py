"""export-gguf: the merged model as a GGUF file for llama.cpp and Ollama, checked at export time.

llama.cpp's own converter (`convert_hf_to_gguf.py`) writes f32, f16, bf16 and q8_0 only; it
rejects k-quant names (the original slm-factory passed them to it and failed). Every other type
is made by llama.cpp's quantizer (`llama_cpp.llama_model_quantize`) from an f16 intermediate.

The converter comes from, in this order: `gguf_export.llama_cpp_path` (a llama.cpp checkout);
SLM_FACTORY_LLAMA_CPP_SDIST (a downloaded llama-cpp-python source distribution); the installed
`convert-hf-to-gguf` package (llama.cpp's converter on PyPI, part of the train extra, so a fresh
install exports offline); else the source distribution of the installed llama-cpp-python (the
same llama.cpp that loads the file), downloaded once with pip and cached outside the project, of
which only the converter, its `conversion/` package, `gguf-py/` and the chat templates are kept.
Whichever converter wrote the file, the greedy check below holds it to the merged model.

The check: the f16 GGUF's greedy continuation of a few chat prompts matches the merged HF model's
(the same token ids fed to both), and the requested file loads and answers.

torch, transformers and llama_cpp are imported inside the functions: `slm-factory --help` stays fast.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_factory.pipeline import Progress, StageContext, StageError, StageResult
from slm_factory.workspace import write_atomic

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig

log = logging.getLogger("slm_factory")

# A downloaded llama_cpp_python-<version>.tar.gz to extract instead of running pip download.
SDIST_ENV = "SLM_FACTORY_LLAMA_CPP_SDIST"
CONVERTER = "convert_hf_to_gguf.py"
# What the converter needs (its `conversion` package and its own gguf-py), plus the real chat
# templates (test data for Modelfile checks) and llama.cpp's license.
_KEPT_FILES = (CONVERTER, "LICENSE")
_KEPT_FOLDERS = ("conversion/", "gguf-py/", "models/templates/")
_VENDOR = "vendor/llama.cpp/"

# The types llama.cpp's converter writes itself (--outtype).
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
# The rest, made by llama.cpp's quantizer: the name of llama_cpp's LLAMA_FTYPE_* constant for each.
QUANTIZER_FTYPES = {
    name: f"LLAMA_FTYPE_MOSTLY_{name.upper()}"
    for name in ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m",
                 "q5_k_s", "q5_k_m", "q6_k")
}
# The converter's f16 goes to the quantizer and to the greedy check.
INTERMEDIATE = "f16"
CHECK_TOKENS = 8


# -- finding llama.cpp's converter -------------------------------------------------------------


def find_converter(config: ProjectConfig, progress: Progress | None = None) -> Path:
    """The folder holding convert_hf_to_gguf.py and its `conversion/` package (and gguf-py/
    beside them when it is llama.cpp's own tree)."""
    configured = config.gguf_export.llama_cpp_path.strip()
    if not configured:
        if os.environ.get(SDIST_ENV, "").strip():
            return bundled_converter(progress)
        return installed_converter() or bundled_converter(progress)
    folder = Path(configured).expanduser()
    if not folder.is_absolute():
        folder = config.root / folder
    if not (folder / CONVERTER).is_file():
        raise StageError(f"gguf_export.llama_cpp_path: {folder} has no {CONVERTER}; point it at a llama.cpp "
                         "checkout, or leave it empty to use the converter of the installed llama-cpp-python")
    return folder.resolve()


def installed_converter() -> Path | None:
    """The site-packages folder of the `convert-hf-to-gguf` distribution's converter, or None
    when it is not installed. That wheel carries its own copy of gguf-py as a top-level `gguf`,
    the name PyPI's `gguf` (which transformers asks for by version) also installs: whichever
    was installed last owns those files. Both copies were checked here: the converter writes
    SmolLM2 with gguf 0.19.0, and transformers reads GGUF files with the converter's copy."""
    spec = importlib.util.find_spec("convert_hf_to_gguf")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent
    if not (folder / "conversion" / "__init__.py").is_file():  # some other module of that name
        return None
    return folder


def bundled_converter(progress: Progress | None = None) -> Path:
    """llama.cpp's converter from the installed llama-cpp-python's source distribution, extracted
    once into the cache: <cache>/llama.cpp-<version>/."""
    from slm_factory.training.models import cache_dir

    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise StageError("export-gguf needs llama-cpp-python (pip install 'slm-factory[llamacpp]')") from None
    target = cache_dir() / f"llama.cpp-{version}"
    if (target / CONVERTER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".llama.cpp-download.", dir=target.parent) as scratch:
        sdist = os.environ.get(SDIST_ENV, "").strip()
        archive = Path(sdist).expanduser() if sdist else download_sdist(version, Path(scratch), progress)
        if not archive.is_file():
            raise StageError(f"{SDIST_ENV}: {archive} does not exist; point it at llama_cpp_python-{version}.tar.gz "
                             "or unset it to download that file")
        if f"-{version}." not in archive.name:  # another llama.cpp than the one that will load the file
            log.warning("%s: %s does not look like llama-cpp-python %s's sources (the installed version)",
                        SDIST_ENV, archive.name, version)
        extract_converter(archive, target)
    return target


def download_sdist(version: str, folder: Path, progress: Progress | None = None) -> Path:
    """llama_cpp_python-<version>.tar.gz (~76 MB) fetched with pip into `folder`."""
    command = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-binary", ":all:",
               "--no-deps", "--disable-pip-version-check", "-d", str(folder)]
    description = f"downloading llama-cpp-python {version} sources for llama.cpp's converter (~76 MB, once)"
    log.info("%s", description)
    with (progress or Progress()).task(description, total=1) as advance:
        done = subprocess.run(command, capture_output=True, text=True)
        advance()
    archives = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise StageError(f"export-gguf: could not download llama-cpp-python=={version}'s source distribution for "
                         f"llama.cpp's converter ({last_line(done.stdout + done.stderr)}); set "
                         f"gguf_export.llama_cpp_path to a llama.cpp checkout, or {SDIST_ENV} to a downloaded "
                         f"llama_cpp_python-{version}.tar.gz")
    return archives[0]


def extract_converter(archive: Path, target: Path) -> None:
    """Only the kept files from the sdist's vendor/llama.cpp/, into `target` atomically (a
    reader sees no folder or a whole one); tarfile's "data" filter refuses links out of the
    folder, absolute paths and device files."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = _vendor_members(tar)
                if not any(member.name == CONVERTER for member in members):
                    raise StageError(f"{archive}: no {_VENDOR}{CONVERTER} inside; give a llama-cpp-python source "
                                     "distribution (.tar.gz)")
                tar.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise StageError(f"{archive}: not a readable llama-cpp-python source distribution ({error})") from None
        os.chmod(staging, 0o755)  # mkdtemp makes 0700: the cache is a normal folder
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep its folder
            if not (target / CONVERTER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _vendor_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The kept files, renamed relative to vendor/llama.cpp/ (the sdist's top folder dropped);
    folders are made as their files are extracted."""
    kept = []
    for member in tar.getmembers():
        _, marker, inner = member.name.partition("/" + _VENDOR)
        if marker and member.isfile() and (inner in _KEPT_FILES or inner.startswith(_KEPT_FOLDERS)):
            member.name = inner
            kept.append(member)
    return kept


# -- converting and quantizing -----------------------------------------------------------------


def convert(model_dir: Path, outfile: Path, outtype: str, converter: Path) -> Path:
    """`model_dir` (a transformers folder) → `outfile` with llama.cpp's converter, written under a
    .partial name first so that a failed or interrupted run leaves no final file behind."""
    if outtype not in CONVERTER_TYPES:
        raise ValueError(f"the converter writes {', '.join(CONVERTER_TYPES)}, not {outtype}: quantize() makes the rest")
    partial = outfile.with_name(outfile.name + ".partial")
    environment = dict(os.environ)
    if (converter / "gguf-py").is_dir():  # llama.cpp's tree: its own gguf-py, not an installed `gguf`
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(converter / "gguf-py"),
                                                                  environment.get("PYTHONPATH", "")]))
    command = [sys.executable, str(converter / CONVERTER), str(model_dir), "--outfile", str(partial),
               "--outtype", outtype]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=environment)
        if done.returncode != 0 or not partial.is_file():
            raise StageError(f"export-gguf: llama.cpp's converter failed on {model_dir} "
                             f"({last_line(done.stderr + done.stdout)})")
        partial.replace(outfile)
    finally:
        partial.unlink(missing_ok=True)
    return outfile


def quantize(source: Path, target: Path, gguf_type: str) -> Path:
    """`source` (an f16 or f32 GGUF) → `target` of `gguf_type` with llama.cpp's quantizer."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZER_FTYPES[gguf_type])
    partial = target.with_name(target.name + ".partial")
    try:
        with _native_stderr() as output:
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if status != 0 or not partial.is_file():
            # llama.cpp's log is silent once a Llama(verbose=False) ran in this process: then name the file.
            said = last_line(output.text) if output.text.strip() else f"llama.cpp said nothing; is {source} a whole GGUF?"
            raise StageError(f"export-gguf: llama.cpp could not quantize {source.name} to {gguf_type} ({said})")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    fallback = [line for line in output.text.splitlines() if "fallback quantization" in line]
    if fallback:  # rows whose length is not a multiple of a k-quant's 256-value block
        log.info("%s: %s", target.name, fallback[-1].split("WARNING:")[-1].strip())
    return target


class _Captured:
    text = ""


@contextmanager
def _native_stderr() -> Iterator[_Captured]:
    """llama.cpp's quantizer logs a line per tensor (and a warning per fallback): keep them for
    the error message instead of showing them. llama_cpp prints its log to sys.stderr (which a
    progress bar or pytest may have replaced); llama.cpp writes some lines to file descriptor 2."""
    captured, python_side = _Captured(), io.StringIO()
    sys.stderr.flush()
    saved_fd, saved_stream = os.dup(2), sys.stderr
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        sys.stderr = python_side
        try:
            yield captured
        finally:
            sys.stderr = saved_stream
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sink.seek(0)
            captured.text = python_side.getvalue() + sink.read().decode("utf-8", "replace")


def last_line(output: str) -> str:
    """The line of a tool's output that says what went wrong: the last non-blank one."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


# -- the checks --------------------------------------------------------------------------------


def check_questions(language: str) -> list[str]:
    folder = "ko" if language == "ko" else "en"
    text = resources.files("slm_factory.export").joinpath(f"prompts/{folder}/check_questions.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def prompt_ids(tokenizer: Any, question: str, system: str) -> list[int]:
    """The token ids of a question in the model's chat template, ready for the answer."""
    from slm_factory.training.formats import encode, render

    if not tokenizer.chat_template:
        return encode(tokenizer, question)
    messages = [{"role": "system", "content": system}] if system else []
    return encode(tokenizer, render(tokenizer, [*messages, {"role": "user", "content": question}], True))


def greedy_check(model_dir: Path, gguf_path: Path, prompts: Sequence[str], max_new_tokens: int = CHECK_TOKENS,
                 system: str = "") -> dict[str, Any]:
    """The merged model (transformers, fp32, greedy) and the GGUF (llama.cpp, temperature 0,
    top_k 1) continue the same token ids; per prompt, both token lists and how many leading
    tokens agree. Both stop at the model's end-of-turn tokens."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not prompts:
        raise ValueError("greedy_check needs at least one prompt")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    stops = _stop_ids(model, tokenizer)
    inputs = [prompt_ids(tokenizer, prompt, system) for prompt in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops, default=None)
    hf_tokens = []
    with torch.inference_mode():
        for ids in inputs:
            tensor = torch.tensor([ids])
            output = model.generate(tensor, attention_mask=torch.ones_like(tensor), do_sample=False, num_beams=1,
                                    max_new_tokens=max_new_tokens, repetition_penalty=1.0,
                                    eos_token_id=sorted(stops) or None, pad_token_id=pad)
            hf_tokens.append(_until_stop(output[0, len(ids):].tolist(), stops))
    del model
    llm = Llama(model_path=str(gguf_path), n_ctx=max(256, max(map(len, inputs)) + max_new_tokens + 8), verbose=False)
    gguf_tokens = [_llama_greedy(llm, ids, max_new_tokens, stops) for ids in inputs]
    del llm
    results = []
    for prompt, hf, gg in zip(prompts, hf_tokens, gguf_tokens):
        leading = next((index for index, (a, b) in enumerate(zip(hf, gg)) if a != b), min(len(hf), len(gg)))
        results.append({"prompt": prompt, "hf_tokens": hf, "gguf_tokens": gg, "matching_tokens": leading,
                        "hf_text": tokenizer.decode(hf), "gguf_text": tokenizer.decode(gg), "identical": hf == gg})
    return {"gguf": str(gguf_path), "max_new_tokens": max_new_tokens, "prompts": results,
            "identical": sum(item["identical"] for item in results),
            "first_token_matches": sum(item["matching_tokens"] > 0 or not item["hf_tokens"] for item in results)}


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = model.generation_config.eos_token_id
    stops = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        stops.add(tokenizer.eos_token_id)
    return stops


def _until_stop(tokens: list[int], stops: set[int]) -> list[int]:
    for index, token in enumerate(tokens):
        if token in stops:
            return tokens[:index + 1]
    return tokens


def _llama_greedy(llm: Any, ids: list[int], max_new_tokens: int, stops: set[int]) -> list[int]:
    tokens: list[int] = []
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        tokens.append(int(token))
        if token in stops or len(tokens) >= max_new_tokens:
            break
    return tokens


def answers(gguf_path: Path, prompt: str, system: str = "", max_tokens: int = 32) -> str:
    """The GGUF's greedy answer to one question, in the chat template the file carries."""
    from llama_cpp import Llama

    from slm_factory.training.formats import fold_system

    try:
        llm = Llama(model_path=str(gguf_path), n_ctx=512, verbose=False)
    except ValueError as error:  # llama_cpp's "Failed to load model from file"
        raise StageError(f"{gguf_path}: llama.cpp cannot load this GGUF ({error})") from None
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    try:
        reply = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, top_k=1)
    except Exception as error:  # noqa: BLE001 - a template that refuses a system turn (Gemma 2's raises)
        if not system or "system" not in str(error).lower():
            raise
        reply = llm.create_chat_completion(messages=fold_system(messages), max_tokens=max_tokens,
                                           temperature=0.0, top_k=1)
    del llm
    return (reply["choices"][0]["message"]["content"] or "").strip()


# -- the stage ---------------------------------------------------------------------------------


def model_folder(ctx: StageContext) -> Path:
    """merged_model/, or the folder of `export-gguf --model-dir`."""
    given = ctx.options.get("model_dir")
    folder = Path(given).expanduser() if given else ctx.workspace.path("merged_model")
    if not given and not folder.is_dir():
        raise StageError(f"{folder} does not exist; run `slm-factory export` first, or give "
                         "`export-gguf --model-dir DIR`")
    if not folder.is_dir() or not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        fix = "give the merged model's folder" if given else "rerun `slm-factory export`"
        raise StageError(f"{'--model-dir: ' if given else ''}{folder} is not a transformers model folder "
                         f"(config.json and *.safetensors); {fix}")
    return folder.resolve()


def run(ctx: StageContext) -> StageResult:
    from slm_factory.training.formats import system_prompt

    config = ctx.config
    model_dir = model_folder(ctx)
    gguf_type = config.gguf_export.quantization_type
    converter = find_converter(config, ctx.progress)
    folder = ctx.workspace.path("gguf")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"model-{gguf_type}.gguf"
    timings: dict[str, float] = {}
    # The f16 intermediate is deleted after the check unless f16 was asked for: merged_model/ stays
    # beside it and remakes it in seconds (minutes for a 7B), while it weighs 2 bytes a parameter
    # (14 GB for a 7B) next to a q4_k_m of a quarter of that.
    intermediate = final if gguf_type == INTERMEDIATE else folder / f".model-{INTERMEDIATE}.intermediate.gguf"
    try:
        started = time.perf_counter()
        with ctx.progress.task(f"converting {model_dir.name} to GGUF {INTERMEDIATE}", total=1) as advance:
            convert(model_dir, intermediate, INTERMEDIATE, converter)
            advance()
        timings[f"convert_{INTERMEDIATE}"] = time.perf_counter() - started
        if final != intermediate:
            started = time.perf_counter()
            with ctx.progress.task(f"making the {gguf_type} GGUF", total=1) as advance:
                if gguf_type in CONVERTER_TYPES:
                    convert(model_dir, final, gguf_type, converter)
                else:
                    quantize(intermediate, final, gguf_type)
                advance()
            timings[gguf_type] = time.perf_counter() - started
        system = system_prompt(config)
        questions = check_questions(config.project.language)
        started = time.perf_counter()
        with ctx.progress.task("checking the GGUF against the merged model", total=1) as advance:
            check = greedy_check(model_dir, intermediate, questions, CHECK_TOKENS, system)
            reply = answers(final, questions[0], system)
            advance()
        timings["check"] = time.perf_counter() - started
    finally:
        if intermediate != final:
            intermediate.unlink(missing_ok=True)
    modelfile, template_line = write_modelfile(ctx, model_dir, final, system)
    report = {"model_dir": str(model_dir), "type": gguf_type, "file": final.name, "bytes": final.stat().st_size,
              "greedy_match": check, "answer_check": {"file": final.name, "question": questions[0], "answer": reply},
              "seconds": {name: round(value, 2) for name, value in timings.items()}}
    write_atomic(folder / "gguf_check.json", json.dumps(report, ensure_ascii=False, indent=2).encode("utf-8"))
    result = _result(final, gguf_type, check, questions[0], reply)
    result.lines.append(template_line)
    if config.export.ollama.enabled:  # export runs `ollama create` for merged_model/; this one is the user's call
        result.lines.append(f"to serve it with Ollama: ollama create {config.export.ollama.model_name} -f {modelfile}")
    return result


def write_modelfile(ctx: StageContext, model_dir: Path, gguf_file: Path, system: str) -> tuple[Path, str]:
    """gguf/Modelfile: FROM the GGUF beside it, with the same TEMPLATE, SYSTEM and stops as the
    merged model's; and a line saying whether its TEMPLATE checked."""
    from transformers import AutoTokenizer

    from slm_factory.export.ollama import modelfile_text, plan_modelfile

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    plan = plan_modelfile(tokenizer, system)
    text = modelfile_text(f"./{gguf_file.name}", plan, system, dict(ctx.config.export.ollama.parameters))
    target = ctx.workspace.path("gguf_modelfile")
    write_atomic(target, text.encode("utf-8"))
    if plan.template is None:
        return target, f"Modelfile: no TEMPLATE written: {plan.warning}"
    return target, (f"Modelfile TEMPLATE ({plan.family}) renders {plan.conversations_checked} test conversations "
                    f"exactly as the chat template does; stop: {', '.join(plan.stops)}")


def _result(final: Path, gguf_type: str, check: dict[str, Any], question: str, reply: str) -> StageResult:
    total = len(check["prompts"])
    lines = [f"{INTERMEDIATE} GGUF matches the merged model on {check['identical']}/{total} prompts "
             f"(first {check['max_new_tokens']} tokens)"]
    for item in check["prompts"]:
        if not item["identical"]:
            lines.append(f"  differs after {item['matching_tokens']} tokens on {item['prompt']!r}: "
                         f"{item['hf_text']!r} vs {item['gguf_text']!r}")
    lines.append(f"{final.name} answers {question!r}: {reply[:80]!r}" if reply
                 else f"{final.name} loads but gave an empty answer to {question!r}")
    # A converter bug shows as disagreement from the first token on; a later divergence can be a
    # near-tie that f16 rounding tips the other way. An empty answer is reported, not failed: a
    # model that answers only whitespace (an untrained one) is exported as it is.
    failed = check["first_token_matches"] == 0
    if failed:
        lines.append("the GGUF does not behave as the merged model: see gguf/gguf_check.json")
    size = final.stat().st_size / 1e6
    return StageResult(items=1, lines=lines, failed=failed,
                       summary=f"GGUF export complete: {final} ({size:.1f} MB, {gguf_type})",
                       extra={"greedy_match": check, "answer": reply})
