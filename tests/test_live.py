"""`.progress.json`: what a running command publishes for the dashboard (slm_factory.live).

Unit tests drive PublishedProgress through the pipeline's own hooks; the end-to-end tests read the
file while a real `run` works against the echo teacher (a real HTTP server), as the dashboard does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from slm_factory import live
from slm_factory.config import ProjectConfig
from slm_factory.pipeline import Progress, StageContext, StageResult, StageRun, run_pipeline, STAGES
from slm_factory.workspace import Workspace
from tests.generation.test_resume import echo_teacher, make_project  # noqa: F401  (fixture)


class Recorder(Progress):
    """The screen's progress: records what it was told, so the wrapper is seen to pass it on."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def stage_started(self, name: str) -> None:
        self.calls.append(("started", name))

    def stage_ended(self, run: StageRun) -> None:
        self.calls.append(("ended", run.stage, run.status))

    def metrics(self, **values: Any) -> None:
        self.calls.append(("metrics", values))


class FakeTeacher:
    def __init__(self) -> None:
        self.requests = 0

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "completed": self.requests, "failures": 1, "retries": 2,
                "cache_hits": 0, "prompt_tokens": 10 * self.requests, "completion_tokens": 5, "items_per_s": 1.5,
                "window": {"ceiling": 4}}


def published(tmp_path: Path, stages: list[str] | None = None) -> live.PublishedProgress:
    return live.PublishedProgress(Recorder(), live.progress_path(tmp_path), "run", stages or ["parse", "generate"])


def on_disk(tmp_path: Path) -> dict[str, Any]:
    state = live.read_progress(tmp_path)
    assert state is not None
    return state


def test_a_stage_start_and_end_are_written_at_once_and_passed_on(tmp_path):
    progress = published(tmp_path)
    progress.stage_started("parse")
    assert on_disk(tmp_path)["current"] == "parse"
    progress.stage_ended(StageRun("parse", "ran", StageResult(items=3), 1.23456))
    state = on_disk(tmp_path)
    assert state["current"] is None
    assert state["ended"] == {"parse": {"status": "ran", "seconds": 1.235, "items": 3}}
    assert state["outcome"] == "running" and state["pid"] == os.getpid() and state["stages"] == ["parse", "generate"]
    assert progress.inner.calls == [("started", "parse"), ("ended", "parse", "ran")]


def test_advances_are_folded_into_one_write_a_second(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    writes = []
    real = live.write_atomic
    monkeypatch.setattr(live, "write_atomic", lambda path, data: (writes.append(json.loads(data)), real(path, data)))
    progress = published(tmp_path)
    with progress.task("Generating", 100) as advance:
        assert writes[-1]["task"] == {"description": "Generating", "done": 0, "total": 100, "per_second": 0.0,
                                      "note": ""}
        opened = len(writes)
        for _ in range(50):
            clock[0] += 0.01  # 50 advances in half a second: no write
            advance()
        assert len(writes) == opened
        clock[0] += 0.6
        advance(2, "loss 1.0")
        assert len(writes) == opened + 1
        assert writes[-1]["task"]["done"] == 52 and writes[-1]["task"]["note"] == "loss 1.0"
        assert writes[-1]["task"]["per_second"] == pytest.approx(52 / 1.1, rel=1e-3)
    assert writes[-1]["task"] is None  # the task's end is written at once


def test_the_teacher_and_training_figures_are_published(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    progress = published(tmp_path)
    progress.stage_started("generate")
    teacher = FakeTeacher()
    progress.teacher_opened(teacher)
    with progress.task("Generating", 4) as advance:
        teacher.requests = 3
        clock[0] += 2
        advance(3)
    assert on_disk(tmp_path)["teacher"] == {"requests": 3, "completed": 3, "failures": 1, "retries": 2,
                                            "cache_hits": 0, "prompt_tokens": 30, "completion_tokens": 5,
                                            "items_per_s": 1.5}
    progress.stage_started("train")  # a new stage starts with no teacher and no training figures
    assert on_disk(tmp_path)["teacher"] is None
    clock[0] += 2
    progress.metrics(step=5, steps=20, loss=1.5, tokens_per_s=400.0)
    clock[0] += 2
    progress.metrics(step=6, loss=1.4)
    assert on_disk(tmp_path)["train"] == {"step": 6, "steps": 20, "loss": 1.4, "tokens_per_s": 400.0}
    assert ("metrics", {"step": 6, "loss": 1.4}) in progress.inner.calls


def test_a_teacher_whose_stats_fail_does_not_stop_the_stage(tmp_path):
    class Broken:
        def stats(self) -> dict:
            raise RuntimeError("closed")

    progress = published(tmp_path)
    progress.teacher_opened(Broken())
    progress.stage_started("score")
    progress.teacher_opened(Broken())
    progress.write(force=True)
    assert on_disk(tmp_path)["current"] == "score"


def test_a_write_that_fails_never_reaches_the_run(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    progress = live.PublishedProgress(Recorder(), folder / "missing" / "x" / ".progress.json", "run", [])
    (folder / "missing").write_text("a file where a folder should be")
    progress.write(force=True)
    assert progress.failed_writes == 1


def ctx_for(tmp_path: Path) -> StageContext:
    return StageContext(config=ProjectConfig(), workspace=Workspace(tmp_path / "output"), progress=Recorder())


@pytest.mark.parametrize("ending, outcome", [(None, "done"), (KeyboardInterrupt, "interrupted"),
                                             (RuntimeError, "failed")])
def test_the_file_says_how_the_command_ended(tmp_path, ending, outcome):
    ctx = ctx_for(tmp_path)
    screen = ctx.progress
    with pytest.raises(ending) if ending else _nothing():
        with live.publishing(ctx, "run", ["parse"]) as progress:
            assert ctx.progress is progress
            if ending:
                raise ending()
    assert ctx.progress is screen  # the screen's progress is back
    state = on_disk(ctx.workspace.root)
    assert state["outcome"] == outcome and state["finished"]


def test_a_failed_stage_makes_the_outcome_failed(tmp_path):
    ctx = ctx_for(tmp_path)
    with live.publishing(ctx, "run", ["parse"]):
        run_pipeline(ctx, "parse", "parse")  # no documents folder: parse fails
    state = on_disk(ctx.workspace.root)
    assert state["ended"]["parse"]["status"] == "failed" and state["outcome"] == "failed"


def test_skipped_and_up_to_date_stages_are_reported_as_ended(tmp_path):
    ctx = ctx_for(tmp_path)
    with live.publishing(ctx, "run", ["generate-dialogue"]):
        run_pipeline(ctx, "generate-dialogue", "generate-dialogue")  # off by default
    assert on_disk(ctx.workspace.root)["ended"]["generate-dialogue"]["status"] == "skipped"
    assert ("ended", "generate-dialogue", "skipped") in ctx.progress.calls


def test_other_ranks_of_a_distributed_run_do_not_write(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    ctx = ctx_for(tmp_path)
    with live.publishing(ctx, "train", ["train"]):
        pass
    assert not live.progress_path(ctx.workspace.root).exists()


@pytest.mark.parametrize("text", ["", "{", '{"version": 1, "pid"', "[1, 2]", '{"version": 99}', "\x00\xff"])
def test_a_reader_gets_none_for_anything_but_a_whole_state(tmp_path, text):
    live.progress_path(tmp_path).write_bytes(text.encode("utf-8", "surrogateescape") if text != "\x00\xff"
                                             else b"\x00\xff")
    assert live.read_progress(tmp_path) is None
    assert live.read_progress(tmp_path / "nowhere") is None


def test_is_running_follows_the_outcome_and_the_process():
    import socket

    here = {"outcome": "running", "host": socket.gethostname(), "pid": os.getpid()}
    assert live.is_running(here)
    assert not live.is_running({**here, "outcome": "done"})
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not live.is_running({**here, "pid": int(ended.stdout)})  # killed without a word: not running
    assert not live.is_running({**here, "pid": "x"})
    assert live.is_running({**here, "host": "another-machine", "pid": 1})  # only the file's word


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


# -- a real run writes it ------------------------------------------------------------------------


def watch(config: Path, process: subprocess.Popen, seconds: float = 90) -> list[dict[str, Any]]:
    """Every distinct state the dashboard would have seen, read as it reads them."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = live.read_progress(config.parent / "output")
        if state is not None and (not seen or state != seen[-1]):
            seen.append(state)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    final = live.read_progress(config.parent / "output")
    if final is not None and final != seen[-1:]:
        seen.append(final)
    return seen


@pytest.mark.slow
def test_a_real_run_publishes_its_stages_counts_and_teacher(tmp_path, echo_teacher):
    base, _ = echo_teacher
    config = make_project(tmp_path, base)
    process = subprocess.Popen([sys.executable, "-m", "slm_factory", "run", "--to", "generate", "-q", "-c", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = watch(config, process)
    assert process.wait(timeout=60) == 0, process.stderr.read().decode()
    generating = [s for s in seen if s["current"] == "generate" and s["task"] and s["task"]["done"] > 0]
    assert generating, "the generate counter was never published"
    assert any((s["teacher"] or {}).get("requests", 0) > 0 for s in generating)
    done = [s["task"]["done"] for s in generating]
    assert done == sorted(done)  # the counter only goes forward
    final = seen[-1]
    assert final["outcome"] == "done" and final["command"] == "run" and final["pid"] == process.pid
    assert final["stages"] == ["parse", "generate"]
    pairs = json.loads((config.parent / "output" / "qa_alpaca.json").read_text(encoding="utf-8"))
    assert final["ended"]["generate"]["status"] == "ran" and final["ended"]["generate"]["items"] == len(pairs)
    assert final["ended"]["parse"]["status"] == "ran"
    assert not live.is_running(final)


@pytest.mark.slow
def test_ctrl_c_and_kill_leave_a_state_that_says_so(tmp_path, echo_teacher):
    base, _ = echo_teacher
    config = make_project(tmp_path, base)

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "slm_factory", "generate", "-q", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def wait_for_work(process: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = live.read_progress(config.parent / "output")
            if state and state["pid"] == process.pid and (state["task"] or {}).get("done", 0) > 0:
                return
            time.sleep(0.05)
        pytest.fail("generate never published progress")

    process = start()
    wait_for_work(process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    state = live.read_progress(config.parent / "output")
    assert state["outcome"] == "interrupted" and state["current"] == "generate" and not live.is_running(state)

    process = start()
    wait_for_work(process)
    process.kill()
    process.wait(timeout=30)
    state = live.read_progress(config.parent / "output")
    assert state["outcome"] == "running" and not live.is_running(state)  # the dashboard says: stopped


def test_status_says_a_command_is_running_and_forgets_a_dead_one(tmp_path):
    (tmp_path / "project.yaml").write_text("project:\n  name: live\n", encoding="utf-8")
    output = tmp_path / "output"
    progress = live.PublishedProgress(Recorder(), live.progress_path(output), "run", ["parse", "generate"])
    progress.stage_started("generate")  # this test's process is the running command

    def status(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "slm_factory", "status", "-c", str(tmp_path / "project.yaml"), *extra],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"`run` is running (process {os.getpid()}" in status() and "now at generate" in status()
    assert json.loads(status("--json"))["running"]["current"] == "generate"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    progress.state["pid"] = int(ended.stdout)
    progress.write(force=True)
    assert "is running" not in status() and json.loads(status("--json"))["running"] is None


def test_run_names_the_dashboard_when_dashboard_enabled_is_on(tmp_path):
    config = tmp_path / "project.yaml"
    for enabled in (True, False):
        config.write_text(f"dashboard:\n  enabled: {str(enabled).lower()}\n", encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "slm_factory", "run", "--to", "parse", "-c", str(config)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1  # no documents folder: parse fails, after the line
        assert (f"live view: slm-factory dashboard -c {config}" in done.stdout) is enabled
        assert "Traceback" not in done.stderr
