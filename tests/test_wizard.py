"""`slm-factory wizard`: its sentences in both languages, its cost estimates against generate's own
plan and ledger, its resume point, and the whole guided flow driven through a pseudo-terminal
(pexpect): a new Korean project made by typing and arrow keys, and an English project whose
documents are marked in a checkbox list, run against SmolLM2 behind a real llama.cpp server."""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slm_factory.config import load_config
from slm_factory.pipeline import STAGES, StageContext, resume_point, run_stage, stage_named, stage_status
from slm_factory.workspace import Workspace
from slm_factory import wizard
from tests.generation.test_resume import SAMPLES, echo_teacher, sample_project  # noqa: F401  (a fixture)

pexpect = pytest.importorskip("pexpect")

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "slm_factory" / "assets" / "wizard"
DOWN, ENTER, SPACE = "\x1b[B", "\r", " "
ENGLISH_SAMPLE = "us-18f-content-guide-urls-and-filenames.md"
QUESTIONS = {"auto_generate": False, "categories": {"guide": [
    "How should words be separated in 18F URLs?",
    "Should a government domain name start with www?",
]}}
NO_TEACHER = {"backend": "openai", "model": "nobody", "api_base": "http://127.0.0.1:9/v1"}


# -- sentences -----------------------------------------------------------------------------------


def flat(table: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_english_and_korean_sentences_have_the_same_keys_and_placeholders():
    english = flat(yaml.safe_load((ASSETS / "en.yaml").read_text(encoding="utf-8")))
    korean = flat(yaml.safe_load((ASSETS / "ko.yaml").read_text(encoding="utf-8")))
    assert sorted(english) == sorted(korean)
    for key in english:
        assert placeholders(english[key]) == placeholders(korean[key]), key
    assert re.search("[가-힣]", korean["run_required"]) and not re.search("[가-힣]", english["run_required"])
    # Every stage is described in both, and every sentence formats with its own placeholders.
    assert {stage.name for stage in STAGES} == set(wizard.sentences("en")["stages"]) == set(wizard.sentences("ko")["stages"])
    for language in wizard.LANGUAGES:
        say = wizard.Messages(language)
        for key, text in flat(say.table).items():
            if "." not in key:
                say(key, **{name: "x" for name in placeholders(text)})


def test_every_stage_is_required_or_has_the_key_that_turns_it_on_and_a_skip_turns_it_off():
    from slm_factory.config import parse_config

    for stage in STAGES:
        assert (stage.name in wizard.REQUIRED) != (stage.name in wizard.ENABLE_KEYS), stage.name
    for name, key in wizard.ENABLE_KEYS.items():
        section, _, field = key.rpartition(".")
        config = parse_config({section: {field: True}})
        assert stage_named(name).enabled(config), key
        also = wizard.skip(config, name)
        assert not stage_named(name).enabled(config), name
        assert also == (["eval"] if name == "split" else ["split"] if name == "eval" else []), name


def test_a_skipped_stage_is_read_around():
    from slm_factory.config import parse_config
    from slm_factory.pipeline import pairs_input

    config = parse_config({"scoring": {"enabled": True}})
    assert pairs_input(stage_named("split"), config) == "qa_scored"
    wizard.skip(config, "score")
    assert pairs_input(stage_named("split"), config) == "qa_validated"


# -- estimates and the resume point --------------------------------------------------------------


def parsed_sample(tmp_path: Path, questions: dict) -> StageContext:
    config = load_config(sample_project(tmp_path / "proj", NO_TEACHER, questions))
    return StageContext(config=config, workspace=Workspace(config.output_dir))


def test_generate_estimate_is_plan_jobs_less_what_the_ledger_holds(tmp_path):
    from slm_factory.generation.qa import Ledger, generation_key, pair_id, plan_jobs
    from slm_factory.generation.stage import load_documents, system_prompt

    ctx = parsed_sample(tmp_path, QUESTIONS)
    documents = load_documents(ctx)
    jobs = plan_jobs(ctx.config, documents)
    asked = sum(len(job.questions) for job in jobs)
    assert asked >= 2
    cost = wizard.estimate("generate", ctx)
    assert (cost.requests, cost.reused, cost.bound) == (asked, 0, "exact")
    assert cost.documents == len(documents) == len(SAMPLES) and cost.chunks >= cost.documents

    # Two answers written by an earlier run (the stage's own ledger and key): two requests fewer.
    ledger = Ledger(ctx.workspace.checkpoint("qa_alpaca"), generation_key(ctx.config, system_prompt(ctx)))
    for job in jobs[:2]:
        category, question = job.questions[0]
        ledger.add("pair", {"id": pair_id(job.document.id, job.chunk.id, question), "instruction": question,
                            "output": "an answer", "chunk_id": job.chunk.id})
    again = wizard.estimate("generate", ctx)
    assert (again.requests, again.reused) == (asked - 2, 2)
    # Under other settings (another temperature) the saved answers do not count.
    ctx.config.teacher.temperature = 0.9
    assert wizard.estimate("generate", ctx).requests == asked


def test_open_mode_estimate_counts_the_question_request_and_each_answer(tmp_path):
    from slm_factory.generation.qa import plan_jobs
    from slm_factory.generation.stage import load_documents

    ctx = parsed_sample(tmp_path, {"questions_per_chunk": 2, "mode": "open"})
    jobs = plan_jobs(ctx.config, load_documents(ctx))
    cost = wizard.estimate("generate", ctx)
    assert cost.requests == 3 * len(jobs) and cost.bound == "at_most"
    say = wizard.Messages("en")
    assert f"teacher requests at most {3 * len(jobs)}" in wizard.cost_line(say, cost)


def test_score_estimate_is_one_request_per_pair_not_saved(tmp_path):
    ctx = parsed_sample(tmp_path, QUESTIONS)
    pairs = [{"id": f"p{i}", "instruction": f"What is item {i} of the guide?", "output": "It is.",
              "source_doc": ENGLISH_SAMPLE, "chunk_id": "c"} for i in range(5)]
    ctx.workspace.write_json("qa_validated", pairs)
    assert wizard.estimate("score", ctx).requests == 5
    ctx.workspace.checkpoint("qa_scored").append({"entry": "k", "id": "p0", "result": {"score": 5}})
    cost = wizard.estimate("score", ctx)
    assert (cost.items, cost.requests, cost.reused, cost.bound) == (5, 4, 1, "about")
    assert wizard.estimate("validate", ctx) is None


def test_eval_and_compare_ask_the_teacher_only_to_judge(tmp_path):
    from slm_factory.config import parse_config

    config = parse_config({"paths": {"output": str(tmp_path / "output")}, "eval": {"max_samples": 3}})
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    ctx.workspace.ensure()
    ctx.workspace.write_json("qa_test", [{"id": f"q{i}", "instruction": "?", "output": "!"} for i in range(5)])
    assert wizard.estimate("eval", ctx) is None and wizard.estimate("compare", ctx) is None
    config.eval.metrics = ["rouge", "judge"]
    assert wizard.estimate("eval", ctx).requests == 3  # eval.max_samples
    assert wizard.estimate("compare", ctx).requests == 2 * 5  # compare.max_samples (20): both models
    ctx.workspace.checkpoint("eval_results").append({"entry": "k", "id": "hf:student:q0", "result": {"score": 4}})
    ctx.workspace.checkpoint("compare_results").append({"entry": "k", "id": "hf:base:q1", "result": {"score": 4}})
    assert (wizard.estimate("eval", ctx).requests, wizard.estimate("eval", ctx).reused) == (2, 1)
    assert wizard.estimate("compare", ctx).requests == 9  # one of q1's two answers is graded


def test_resume_start_counts_the_documents_the_wizard_chose(tmp_path):
    ctx = parsed_sample(tmp_path, QUESTIONS)
    assert wizard.resume_start(ctx.config, ctx.workspace, {}) == resume_point(stage_status(ctx.config, ctx.workspace)) \
        == "generate"
    ctx.options = {"only_documents": [ENGLISH_SAMPLE]}
    assert run_stage(stage_named("parse"), ctx).status == "ran"
    assert wizard.resume_start(ctx.config, ctx.workspace, ctx.options) == "generate"
    # Without the choice, parse read fewer documents than the folder holds: it is stale.
    assert wizard.resume_start(ctx.config, ctx.workspace, {}) == resume_point(stage_status(ctx.config, ctx.workspace)) \
        == "parse"


def test_resume_continues_an_interrupted_training_from_its_checkpoint(tmp_path):
    from slm_factory.config import parse_config

    config = parse_config({"paths": {"output": str(tmp_path / "output")}})
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    assert wizard.training_resume(ctx) == {}
    checkpoint = tmp_path / "output" / "checkpoints" / "trainer" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    assert wizard.training_resume(ctx) == {}  # cut short while saving: no trainer_state.json
    (checkpoint / "trainer_state.json").write_text("{}")
    assert wizard.training_resume(ctx) == {"resume": True}


# -- through a terminal --------------------------------------------------------------------------


def spawn(config: Path, *extra: str, timeout: int = 60):
    env = {**os.environ, "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "slm_factory", "wizard", "-c", str(config), *extra],
                          dimensions=(40, 140), env=env, encoding="utf-8", timeout=timeout)
    child.logfile_read = Transcript()
    return child


class Transcript:
    """Everything the wizard wrote to the terminal, escape sequences removed."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\x07", "", "".join(self.parts))


def expect(child, pattern: str) -> None:
    """Wait for `pattern`; a wizard that ends or stalls first fails with what it wrote."""
    try:
        child.expect(pattern)
    except (pexpect.EOF, pexpect.TIMEOUT) as error:
        pytest.fail(f"{pattern!r} never came ({type(error).__name__}); the wizard wrote:\n{child.logfile_read.text[-4000:]}")


def finish(child) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.logfile_read.text


def test_a_new_korean_project_is_made_by_arrow_keys_and_typing(tmp_path):
    config = tmp_path / "민원" / "project.yaml"
    child = spawn(config)
    expect(child, "프로젝트 언어")
    child.send(DOWN + ENTER)  # English (en) → 한국어 (ko)
    expect(child, "새 프로젝트를 만들까요")
    child.send("y")
    expect(child, "프로젝트 이름")
    child.send("\x7f" * 10 + "민원-안내" + ENTER)  # the folder's name is offered: erase it, type another
    code, text = finish(child)
    assert code == 0, text
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert settings["project"] == {**settings["project"], "name": "민원-안내", "language": "ko"}
    assert (config.parent / "documents").is_dir() and (config.parent / "output").is_dir()
    assert "문서를 넣은 뒤" in text and f"slm-factory wizard -c {config}" in text


def test_a_declined_project_is_not_made_and_typing_filters_the_language(tmp_path):
    config = tmp_path / "project.yaml"
    child = spawn(config)
    expect(child, "Language of the project")
    child.send("ko")  # typed: the list keeps only 한국어 (ko)
    child.send(ENTER)
    expect(child, "새 프로젝트를 만들까요")
    child.send("n")
    code, text = finish(child)
    assert code == 0, text
    assert "프로젝트를 만들지 않았습니다" in text and not config.exists()


def test_a_failed_stage_stops_with_its_error_and_the_line_to_continue(tmp_path):
    config = sample_project(tmp_path / "proj", {**NO_TEACHER, "max_retries": 0}, QUESTIONS)
    child = spawn(config)
    expect(child, "Which documents")
    child.send(ENTER)
    for stage in ("parse", "generate"):
        expect(child, f"Run {stage} now")
        child.send("y")
    code, text = finish(child)
    assert code == 1, text
    assert "error: " in text and "127.0.0.1:9" in text and "Traceback" not in text
    assert f"generate failed. Fix the problem above, then continue with `slm-factory wizard --resume -c {config}`" in text


def test_without_a_terminal_it_says_which_commands_to_use(tmp_path):
    done = subprocess.run([sys.executable, "-m", "slm_factory", "wizard", "-c", str(tmp_path / "project.yaml")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "terminal" in lines[0] and "slm-factory run -c" in lines[0]
    assert not (tmp_path / "project.yaml").exists()


def test_ctrl_c_says_how_to_continue(tmp_path):
    documents = tmp_path / "documents"
    documents.mkdir()
    shutil.copy(REPO / "src" / "slm_factory" / "demo" / "documents" / ENGLISH_SAMPLE, documents)
    config = tmp_path / "project.yaml"
    config.write_text(yaml.safe_dump({"teacher": NO_TEACHER}), encoding="utf-8")
    child = spawn(config)
    expect(child, "Which documents")
    child.send("\x03")
    code, text = finish(child)
    assert code == 130, text
    assert f"slm-factory wizard --resume -c {config}" in text and "Traceback" not in text


def test_ctrl_c_while_generating_keeps_the_work_and_resume_asks_for_less(tmp_path, echo_teacher):
    base, _ = echo_teacher
    config = sample_project(tmp_path / "proj", {"backend": "openai", "model": "echo", "api_base": f"{base}/v1",
                                                "max_concurrency": 2, "cache": False}, {"questions_per_chunk": 3})
    child = spawn(config)
    expect(child, "Which documents")
    child.send(ENTER)  # all
    expect(child, "Run parse now")
    child.send("y")
    expect(child, r"teacher requests at most (\d+)\.")
    first = int(child.match.group(1))
    expect(child, "Run generate now")
    child.send("y")
    expect(child, "Generating")
    time.sleep(1.5)
    child.send("\x03")
    code, text = finish(child)
    assert code == 130 and "Traceback" not in text, text
    assert f"Continue with `slm-factory wizard --resume -c {config}`" in text
    saved = (config.parent / "output" / "qa_alpaca.partial.jsonl").read_text(encoding="utf-8").splitlines()
    assert saved

    child = spawn(config, "--resume")
    expect(child, "Up to date: parse. Continuing at generate.")
    expect(child, r"teacher requests at most (\d+); (\d+) saved in an earlier run")
    assert int(child.match.group(1)) < first and int(child.match.group(2)) > 0
    expect(child, "Run generate now")
    child.send("\x03")
    code, text = finish(child)
    assert code == 130 and "Which documents" not in text and "Traceback" not in text, text


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_guided_run_with_chosen_documents_against_the_real_teacher(tmp_path, llama_server):
    teacher = {"backend": "openai", "model": "smollm2", "api_base": f"{llama_server}/v1", "max_concurrency": 1,
               "temperature": 0.0, "max_tokens": 200, "max_retries": 1, "cache": False}
    config = sample_project(tmp_path / "proj", teacher, QUESTIONS)
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "student": {"model": "smollm2", "max_seq_length": 256}}))
    output = config.parent / "output"

    child = spawn(config, timeout=180)
    expect(child, "Which documents")
    child.send(DOWN + ENTER)  # choose some
    expect(child, "Mark the documents")
    child.send(DOWN + SPACE + ENTER)  # the second one: the English guide
    expect(child, "1 of 2 documents chosen")
    for stage, answer in [("parse", "y"), ("generate", "y"), ("validate", "n"), ("split", "n"), ("analyze", "n"),
                          ("convert", "y"), ("train", "n")]:
        expect(child, f"Run {stage} now")
        child.send(answer)
    code, text = finish(child)
    assert code == 0, text

    parsed = json.loads((output / "parsed_documents.json").read_text(encoding="utf-8"))
    assert [document["path"].rsplit("/", 1)[-1] for document in parsed] == [ENGLISH_SAMPLE]
    estimated = re.search(r"— generate: .*\nBefore the teacher runs: documents 1, chunks \d+; teacher requests (\d+)\.",
                          text)
    assert estimated, text
    state = json.loads((output / ".state.json").read_text(encoding="utf-8"))
    teacher_stats = state["stages"]["generate"]["stats"]["teacher"]
    assert int(estimated.group(1)) == teacher_stats["calls"] > 0
    assert "slm-factory validate -c" in text and f"slm-factory run --resume -c {config}" in text
    assert "generate-dialogue: off (set dialogue.enabled: true" in text
    assert "Step 2 of 14 — generate: the teacher writes" in text
    assert f"Stopped before train. Continue with `slm-factory wizard --resume -c {config}`" in text
    assert (output / "training_data.jsonl").is_file() and not (output / "checkpoints" / "adapter").exists()

    # --resume starts where it stopped: the documents are not asked again, the skips hold.
    child = spawn(config, "--resume", timeout=60)
    expect(child, "Continuing at train")
    expect(child, "Run train now")
    child.send("\x03")
    code, text = finish(child)
    assert code == 130 and "Traceback" not in text, text
    assert "Up to date: parse, generate, convert." in text and "Which documents" not in text
    assert "Skipped earlier in the wizard: validate, split, analyze." in text
