"""What a running command tells the outside world: `output/.progress.json`.

`run`, `update`, the wizard and the single-stage commands publish, while they work, which stage is
running, its counter, the teacher's throughput and failures, and the training loss. The dashboard
(and anything else: it is plain JSON) reads the file; it never talks to the run. The file is
replaced whole (write_atomic), at most once a second, and at every stage's start and end, so a
reader sees a complete older or newer state, never half of one; the run never waits on a reader.

The shape (version 1):
    {"version": 1, "pid": 123, "host": "...", "command": "run",
     "started": iso, "updated": iso, "finished": iso or null,
     "outcome": "running" | "done" | "failed" | "interrupted",
     "stages": ["parse", ...],                       # what this command may run, in order
     "ended": {"parse": {"status": "ran", "seconds": 1.2, "items": 3}},   # ran, skipped, up-to-date, failed
     "current": "generate" or null,
     "task": {"description": "Generating", "done": 5, "total": 20, "per_second": 1.5, "note": ""} or null,
     "teacher": {"requests": .., "completed": .., "failures": .., "retries": .., "cache_hits": ..,
                 "prompt_tokens": .., "completion_tokens": .., "items_per_s": ..} or null,
     "train": {"step": 5, "steps": 20, "loss": 1.23, "tokens_per_s": 400.0, "epoch": 0.5} or null}
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_factory.pipeline import Progress
from slm_factory.workspace import write_atomic

if TYPE_CHECKING:
    from slm_factory.pipeline import StageContext, StageRun

PROGRESS_FILE = ".progress.json"
VERSION = 1
# Writes closer together than this are folded into the next one: the file is for eyes, and a
# stage that advances a thousand times a second must not spend its time on fsync.
MIN_INTERVAL = 1.0
TEACHER_FIGURES = ("requests", "completed", "failures", "retries", "cache_hits", "prompt_tokens",
                   "completion_tokens", "items_per_s")


def progress_path(output_dir: Path) -> Path:
    return Path(output_dir) / PROGRESS_FILE


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PublishedProgress(Progress):
    """Wraps the progress a command shows on screen and keeps `.progress.json` in step with it."""

    def __init__(self, inner: Progress, path: Path, command: str, stages: list[str]) -> None:
        self.inner = inner
        self.path = path
        self.state: dict[str, Any] = {
            "version": VERSION, "pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": now(), "updated": now(), "finished": None, "outcome": "running",
            "stages": list(stages), "ended": {}, "current": None, "task": None, "teacher": None, "train": None,
        }
        self._teacher: Any = None
        self._last_write = 0.0
        self._started_task = 0.0
        self.failed_writes = 0

    # -- the Progress interface ----------------------------------------------------------------
    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        with self.inner.task(description, total) as show:
            self.state["task"] = {"description": description, "done": 0, "total": total, "per_second": 0.0, "note": ""}
            self._started_task = time.monotonic()
            self.write(force=True)

            def advance(n: int = 1, note: str | None = None) -> None:
                show(n, note)
                task = self.state["task"]
                if task is None:
                    return
                task["done"] += n
                seconds = time.monotonic() - self._started_task
                task["per_second"] = round(task["done"] / seconds, 3) if seconds > 0 else 0.0
                if note is not None:
                    task["note"] = note
                self.write()

            try:
                yield advance
            finally:
                self.state["task"] = None
                self.write(force=True)

    def stage_started(self, name: str) -> None:
        self.inner.stage_started(name)
        self.state.update(current=name, task=None, teacher=None, train=None)
        self._teacher = None
        self.write(force=True)

    def stage_ended(self, run: StageRun) -> None:
        self.inner.stage_ended(run)
        self._sample_teacher()
        items = run.result.items if run.result is not None else None
        self.state["ended"][run.stage] = {"status": run.status, "seconds": round(run.seconds, 3), "items": items}
        self.state["current"] = None
        self.write(force=True)

    def teacher_opened(self, teacher: Any) -> None:
        self.inner.teacher_opened(teacher)
        self._teacher = teacher

    def metrics(self, **values: Any) -> None:
        self.inner.metrics(**values)
        self.state["train"] = {**(self.state["train"] or {}), **values}
        self.write()

    # -- the file ------------------------------------------------------------------------------
    def finish(self, outcome: str) -> None:
        self.state.update(outcome=outcome, finished=now(), current=None if outcome == "done" else self.state["current"])
        self.write(force=True)

    def write(self, force: bool = False) -> None:
        clock = time.monotonic()
        if not force and clock - self._last_write < MIN_INTERVAL:
            return
        self._last_write = clock
        self._sample_teacher()
        self.state["updated"] = now()
        try:
            write_atomic(self.path, json.dumps(self.state, ensure_ascii=False).encode("utf-8"))
        except OSError:
            # A full disk or a read-only output folder must not stop the run the file describes.
            self.failed_writes += 1

    def _sample_teacher(self) -> None:
        if self._teacher is None:
            return
        try:
            stats = self._teacher.stats()
        except Exception:  # noqa: BLE001 - figures for a screen are never worth a failed stage
            return
        self.state["teacher"] = {key: stats.get(key, 0) for key in TEACHER_FIGURES}


@contextmanager
def publishing(ctx: StageContext, command: str, stages: list[str]) -> Iterator[PublishedProgress]:
    """For the block, `ctx.progress` also writes `.progress.json`; at the end the file says how the
    command ended (done, failed, interrupted). Only the main process of a distributed run writes."""
    from slm_factory.pipeline import is_main_process

    published = PublishedProgress(ctx.progress, progress_path(ctx.workspace.root), command, stages)
    if not is_main_process():
        yield published
        return
    ctx.workspace.ensure()
    ctx.progress = published
    outcome = "done"
    try:
        yield published
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    except BaseException:
        outcome = "failed"
        raise
    finally:
        if outcome == "done" and any(end["status"] == "failed" for end in published.state["ended"].values()):
            outcome = "failed"
        published.finish(outcome)
        ctx.progress = published.inner


def read_progress(output_dir: Path) -> dict[str, Any] | None:
    """The last complete state a command published, or None (no file, or one that is not ours).
    Never raises: a reader must not fail because a run is writing."""
    try:
        data = json.loads(progress_path(output_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    return data


def is_running(state: dict[str, Any]) -> bool:
    """Whether the command that wrote `state` is still at work: its outcome says running and its
    process is alive (on another host, the file's word is all there is)."""
    if state.get("outcome") != "running":
        return False
    if state.get("host") != socket.gethostname():
        return True
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
