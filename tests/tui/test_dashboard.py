"""The dashboard driven by Textual's Pilot: on hand-written project folders, on a progress file that
live.PublishedProgress writes, and beside a real `run` against a llama.cpp server; then the
`dashboard` command.

The dashboard must never touch what it watches: one test compares every file's bytes and mtime
under the project before and after a session, and the damaged-file tests check that the last good
state stays on screen.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import yaml

from slm_factory import live
from slm_factory.config import load_config
from slm_factory.pipeline import STAGES, Progress, config_fingerprint, input_fingerprint, output_signature
from slm_factory.workspace import Workspace
from tests.generation.test_resume import sample_project

textual = pytest.importorskip("textual")

from slm_factory.tui.dashboard import NO_RUN, STOPPED, DashboardApp, ProjectWatcher  # noqa: E402

PAIRS = [{"instruction": f"When does the 2024 youth housing subsidy close ({i})?", "input": "",
          "output": "Applications close on 31 March.", "id": f"p{i}"} for i in range(3)]


# -- a hand-written project ------------------------------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def make_project(root: Path, dashboard: dict | None = None) -> Path:
    """One document, parsed_documents.json (1 document) and qa_alpaca.json (3 pairs), both recorded
    in .state.json as a run would record them; every later stage not run yet."""
    (root / "documents").mkdir(parents=True)
    (root / "documents" / "subsidy.txt").write_text("Applications close on 31 March.", encoding="utf-8")
    config = root / "project.yaml"
    config.write_text(yaml.safe_dump({"dashboard": dashboard or {}}), encoding="utf-8")
    output = root / "output"
    write_json(output / "parsed_documents.json",
               {"documents": [{"id": "d1", "text": "Applications close on 31 March."}]})
    write_json(output / "qa_alpaca.json", PAIRS)
    record_state(config, ["parse", "generate"])
    return config


def record_state(config: Path, names: list[str]) -> None:
    project = load_config(config)
    workspace = Workspace(project.output_dir)
    stages = {stage.name: {"config": config_fingerprint(stage, project),
                           "inputs": input_fingerprint(stage, project, workspace),
                           "output": output_signature(stage, workspace)}
              for stage in STAGES if stage.name in names}
    write_json(workspace.state_path, {"stages": stages})


def progress_state(outcome: str = "running", pid: int | None = None, **changes: Any) -> dict[str, Any]:
    state = {"version": 1, "pid": os.getpid() if pid is None else pid, "host": socket.gethostname(),
             "command": "run", "started": "2026-01-01T10:00:00+00:00", "updated": "2026-01-01T10:01:00+00:00",
             "finished": None, "outcome": outcome, "stages": ["parse", "generate", "validate"],
             "ended": {"parse": {"status": "ran", "seconds": 1.2, "items": 1}}, "current": "generate",
             "task": {"description": "Generating", "done": 5, "total": 20, "per_second": 1.5, "note": ""},
             "teacher": {"requests": 12, "completed": 5, "failures": 1, "retries": 2, "cache_hits": 3,
                         "prompt_tokens": 1200, "completion_tokens": 340, "items_per_s": 0.75},
             "train": None}
    state.update(changes)
    return state


def write_progress(config: Path, state: Any) -> None:
    write_json(live.progress_path(config.parent / "output"), state)


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
    return int(finished.stdout)


# -- driving the app -------------------------------------------------------------------------------


def make_app(config: Path, interval: float = 0.05) -> DashboardApp:
    project = load_config(config)
    return DashboardApp(ProjectWatcher(project), interval, theme=project.dashboard.theme, label=str(config))


def drive(app: DashboardApp, script: Callable[[Any], Coroutine[Any, Any, None]],
          size: tuple[int, int] = (180, 48)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(main())


def screen(app: DashboardApp) -> str:
    return "\n".join(app.text_of(f"#{name}") for name in ("run", "task", "teacher", "train", "ended", "notes"))


async def wait_until(pilot: Any, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not shown within {timeout} s; the screen says:\n{screen(pilot.app)}\n"
                                 f"{pilot.app.table_rows()}")
        await pilot.pause(0.05)


async def fresh_looks(pilot: Any, count: int = 2) -> None:
    """Wait for `count` more looks: the last of them began after whatever the test just changed."""
    app = pilot.app
    target = app.looks + count
    await wait_until(pilot, lambda: app.looks >= target)


def freshness_of(app: DashboardApp) -> dict[str, str]:
    return {name: row["freshness"] for name, row in app.table_rows().items()}


# -- the stage table -------------------------------------------------------------------------------


def test_stage_table_shows_each_artifact_and_is_rebuilt_only_when_a_file_changes(tmp_path: Path):
    config = make_project(tmp_path)
    app = make_app(config)

    async def script(pilot) -> None:
        await fresh_looks(pilot, 4)
        rows = app.table_rows()
        assert [name for name in rows] == [stage.name for stage in STAGES]
        assert rows["parse"] == {**rows["parse"], "on": "on", "artifact": "parsed_documents.json", "items": "1",
                                 "freshness": "up to date"}
        assert rows["generate"]["items"] == "3" and rows["generate"]["freshness"] == "up to date"
        assert rows["generate"]["modified"]  # a date and time
        assert rows["generate-dialogue"]["on"] == "off" and rows["generate-dialogue"]["freshness"] == "off"
        assert rows["validate"] == {**rows["validate"], "on": "on", "items": "", "freshness": "missing"}
        assert app.watcher.table_builds == 1  # four looks, nothing changed: counted once

        (tmp_path / "documents" / "subsidy.txt").write_text("Applications close on 30 April.", encoding="utf-8")
        await fresh_looks(pilot)
        assert freshness_of(app)["parse"] == "stale" and freshness_of(app)["generate"] == "stale"
        assert app.watcher.table_builds == 2

        write_json(tmp_path / "output" / "qa_alpaca.json", PAIRS[:2])
        await fresh_looks(pilot)
        assert app.table_rows()["generate"]["items"] == "2" and app.watcher.table_builds == 3

    drive(app, script)


def test_a_corrupt_state_file_with_no_earlier_table_shows_freshness_unknown(tmp_path: Path):
    config = make_project(tmp_path)
    (tmp_path / "output" / ".state.json").write_bytes(b"\xff\xfe not json")
    app = make_app(config)

    async def script(pilot) -> None:
        await fresh_looks(pilot)
        assert freshness_of(app)["generate"] == "unknown" and app.table_rows()["generate"]["items"] == "3"
        assert freshness_of(app)["validate"] == "missing"
        assert ".state.json could not be read" in app.text_of("#notes")

    drive(app, script)


# -- the live run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome, shown", [
    (None, NO_RUN), ("running", "running"), ("done", "done"), ("failed", "failed"),
    ("interrupted", "interrupted"), ("dead", STOPPED),
])
def test_each_state_of_a_run(tmp_path: Path, outcome: str | None, shown: str):
    config = make_project(tmp_path)
    if outcome == "dead":
        write_progress(config, progress_state("running", pid=dead_pid()))
    elif outcome is not None:
        write_progress(config, progress_state(outcome))
    app = make_app(config)

    async def script(pilot) -> None:
        await fresh_looks(pilot)
        run = app.text_of("#run")
        if outcome is None:
            assert run == NO_RUN
            assert app.text_of("#task") == app.text_of("#teacher") == app.text_of("#ended") == ""
            assert not app.query_one("#bar").display
            return
        assert re.match(r"run \(pid \d+\)  (.+?)  stage", run)[1] == shown
        assert "run (pid" in run and "stage 2 of 3: generate" in run
        assert app.text_of("#task") == "Generating: 5/20 (25%) · 1.50/s"
        assert app.query_one("#bar").display and app.query_one("#bar").percentage == pytest.approx(0.25)
        assert app.text_of("#ended") == "ended: parse: ran, 1.2 s, 1 item"
        teacher = app.text_of("#teacher")
        for part in ("(generate)", "0.75 replies/s", "12 requests", "1 failures", "2 retries", "3 cache hits",
                     "tokens 1200 prompt + 340 completion"):
            assert part in teacher

    drive(app, script)


def test_damaged_files_leave_the_last_good_state_on_screen(tmp_path: Path):
    config = make_project(tmp_path)
    write_progress(config, progress_state("running"))
    app = make_app(config)
    progress = live.progress_path(tmp_path / "output")
    good = json.dumps(progress_state("running"))

    async def script(pilot) -> None:
        await fresh_looks(pilot)
        run, table = app.text_of("#run"), app.table_rows()
        assert "running" in run and table["generate"]["items"] == "3"
        for damaged in (b"\x00\xff garbage", good[: len(good) // 2].encode(), b"",
                        json.dumps({**progress_state("running"), "version": 99}).encode(),
                        json.dumps({**progress_state("running"), "stages": 5}).encode(),
                        json.dumps({**progress_state("running"), "task": {"done": "five"}}).encode(),
                        b"[1, 2, 3]"):
            progress.write_bytes(damaged)
            await fresh_looks(pilot)
            assert app.text_of("#run") == run, damaged
            assert "Generating: 5/20" in app.text_of("#task")
            assert (".progress.json is damaged or from another version; showing the last good state"
                    in app.text_of("#notes"))

        progress.write_text(json.dumps(progress_state("done", current=None, task=None)), encoding="utf-8")
        await fresh_looks(pilot)
        assert "done" in app.text_of("#run") and "damaged" not in app.text_of("#notes")

        (tmp_path / "output" / "qa_alpaca.json").write_text('[{"instruction": "half a pa', encoding="utf-8")
        await fresh_looks(pilot)
        assert app.table_rows()["generate"]["items"] == "unreadable (last 3)"
        table = app.table_rows()

        for state in (b"{not json", b"\xff\xfe\x00", b'["a list"]', b'{"stages": 3}'):
            (tmp_path / "output" / ".state.json").write_bytes(state)
            await fresh_looks(pilot)
            assert app.table_rows() == table, state
            assert ".state.json" in app.text_of("#notes") and "last good state" in app.text_of("#notes")
        assert app.is_running

    drive(app, script)


def test_a_progress_file_written_by_published_progress_shows_step_and_loss(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(live, "MIN_INTERVAL", 0.0)  # every change written at once, as a slow run's would be
    config = make_project(tmp_path)
    app = make_app(config)
    published = live.PublishedProgress(Progress(), live.progress_path(tmp_path / "output"), "train",
                                       ["convert", "train"])

    async def script(pilot) -> None:
        await fresh_looks(pilot)
        assert NO_RUN in app.text_of("#run")
        published.stage_started("train")
        with published.task("Training", 20) as advance:
            advance(5, "loss 1.23")
            published.metrics(step=5, steps=20, loss=1.2345, tokens_per_s=412.0, epoch=0.25)
            await fresh_looks(pilot)
            assert "train (pid" in app.text_of("#run") and "running" in app.text_of("#run")
            assert "stage 2 of 2: train" in app.text_of("#run")
            assert re.fullmatch(r"Training: 5/20 \(25%\) · [\d.]+/s · loss 1\.23", app.text_of("#task"))
            assert app.text_of("#train") == "training: step 5/20 · epoch 0.25 · loss 1.2345 · 412 tokens/s"
        published.finish("done")
        await fresh_looks(pilot)
        assert "done" in app.text_of("#run") and app.text_of("#task") == ""
        assert "loss 1.2345" in app.text_of("#train")

    drive(app, script)


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    return {str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns) if path.is_file() else None
            for path in sorted(root.rglob("*"))}


def test_the_dashboard_writes_nothing_and_takes_no_lock(tmp_path: Path):
    config = make_project(tmp_path, dashboard={"theme": "light"})
    write_progress(config, progress_state("running"))
    (tmp_path / "output" / "checkpoints" / "adapter").mkdir(parents=True)
    (tmp_path / "output" / "checkpoints" / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    before = snapshot(tmp_path)
    app = make_app(config)

    async def script(pilot) -> None:
        await fresh_looks(pilot, 6)
        assert app.theme == "textual-light"
        await pilot.press("q")

    drive(app, script)
    assert app.looks >= 6 and not app.is_running  # q quit
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "output" / ".lock").exists()


# -- beside a real run -----------------------------------------------------------------------------


def pairs_file_count(output: Path) -> int:
    return len(json.loads((output / "qa_alpaca.json").read_text(encoding="utf-8")))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dashboard_follows_a_real_run_while_it_writes_state(tmp_path: Path, llama_server: str):
    """Tested with Pilot while a real pipeline writes state: `run --to score` against SmolLM2 on a
    llama.cpp server (generate and score both ask the teacher), watched at 0.2 s."""
    config = sample_project(tmp_path, {"backend": "openai", "model": "smollm2", "api_base": f"{llama_server}/v1",
                                       "max_concurrency": 2, "cache": False},
                            {"mode": "answer_first", "questions_per_chunk": 1})
    # A short run: one document cut to a few chunks (`run` parses it again), short replies.
    documents = tmp_path / "documents"
    for document in documents.iterdir():
        if document.suffix == ".md":
            document.write_text(document.read_text(encoding="utf-8")[:6000], encoding="utf-8")
        else:
            document.unlink()
    raw = yaml.safe_load(config.read_text())
    raw["teacher"]["max_tokens"] = 256
    raw["scoring"] = {"enabled": True, "threshold": 1}
    config.write_text(yaml.safe_dump(raw))
    output = tmp_path / "output"
    app = make_app(config, interval=0.2)
    seen: dict[str, Any] = {"states": set(), "stages": set(), "requests": 0, "teacher_stages": set()}
    command = [sys.executable, "-m", "slm_factory", "run", "--to", "score", "-c", str(config)]

    async def script(pilot) -> None:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while process.poll() is None and time.monotonic() - started < 240:
                await pilot.pause(0.1)
                run, teacher = app.text_of("#run"), app.text_of("#teacher")
                seen["states"].update(state for state in ("running", "done", STOPPED) if state in run)
                seen["stages"].update(re.findall(r"stage \d+ of \d+: ([\w-]+)", run))
                if found := re.search(r"teacher \(([\w-]+)(?:, ended)?\): .*? (\d+) requests", teacher):
                    seen["teacher_stages"].add(found[1])
                    seen["requests"] = max(seen["requests"], int(found[2]))
        finally:
            if process.poll() is None:
                process.kill()
            seen["returncode"] = process.wait()
        await wait_until(pilot, lambda: "done" in app.text_of("#run"))
        await wait_until(pilot, lambda: (output / "qa_alpaca.json").exists()
                         and app.table_rows()["generate"]["items"] == str(pairs_file_count(output)))
        seen["table"] = app.table_rows()
        seen["ended"] = app.text_of("#ended")

    with (tmp_path / "run.log").open("wb") as log:
        drive(app, script)
    assert seen["returncode"] == 0, (tmp_path / "run.log").read_text(errors="replace")[-3000:]
    assert "running" in seen["states"] and STOPPED not in seen["states"]
    assert {"generate", "score"} <= seen["stages"], seen
    assert seen["requests"] > 0 and seen["teacher_stages"] & {"generate", "score"}, seen
    assert pairs_file_count(output) > 0
    generate = seen["table"]["generate"]
    assert generate["artifact"] == "qa_alpaca.json" and generate["freshness"] == "up to date"
    assert "generate: ran" in seen["ended"] and "score: ran" in seen["ended"]


# -- the command -----------------------------------------------------------------------------------


def command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slm_factory", "dashboard", *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def test_dashboard_without_a_terminal_says_so_in_one_line(tmp_path: Path):
    config = make_project(tmp_path)
    result = command("-c", str(config))
    assert result.returncode == 2
    line = one_line(result)
    assert "needs a terminal" in line and f"slm-factory status -c {config}" in line


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf"])
def test_dashboard_refuses_an_interval_that_is_not_above_zero(tmp_path: Path, interval: str):
    config = make_project(tmp_path)
    result = command("-c", str(config), f"--interval={interval}")
    assert result.returncode == 2
    assert "--interval must be a number of seconds above 0" in one_line(result)


def test_dashboard_with_a_missing_config_says_so_in_one_line(tmp_path: Path):
    result = command("-c", str(tmp_path / "nowhere.yaml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nowhere.yaml" in one_line(result)


def test_dashboard_takes_its_interval_and_theme_from_the_config_and_the_option(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from slm_factory.cli import app as cli

    config = make_project(tmp_path, dashboard={"refresh_interval": 7, "theme": "light"})
    seen: list[tuple[float, str]] = []
    real_run = DashboardApp.run

    async def pilot_script(pilot) -> None:
        await fresh_looks(pilot, 1)
        seen.append((pilot.app.interval, pilot.app.theme))
        await pilot.press("q")

    monkeypatch.setattr("slm_factory.cli.dashboard._has_terminal", lambda: True)
    monkeypatch.setattr(DashboardApp, "run", lambda self, **kw: real_run(self, headless=True, size=(160, 40),
                                                                          auto_pilot=pilot_script))
    for args in ([], ["--interval", "0.5"]):
        result = CliRunner().invoke(cli, ["dashboard", "-c", str(config), *args])
        assert result.exit_code == 0, result.output
    assert seen == [(7.0, "textual-light"), (0.5, "textual-light")]


def test_the_cli_does_not_import_textual_until_the_dashboard_runs():
    result = subprocess.run([sys.executable, "-c", "import sys; from slm_factory.cli import app; "
                             "print('textual' in sys.modules)"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
