"""The dashboard: what each stage has produced, and what the command running on the project is doing.

It only reads: `output/.progress.json` (what a running command publishes, slm_factory.live) and the
artifacts and `.state.json` (through pipeline.stage_status). It never writes, never takes the
project lock and never talks to the run, so watching can neither slow a run down nor break it. A
file that is missing, damaged or from another version leaves the last good view on screen, with a
line saying what could not be read.

The stage table counts items by reading whole artifacts, which can be large: it is rebuilt only
when a file it depends on changed (size, mtime or inode), and every look at the files happens in a
worker thread, off the screen's event loop.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static
from textual.worker import Worker, WorkerState

from slm_factory import live
from slm_factory.pipeline import DOCUMENTS, STAGES, StageStatus, stage_inputs, stage_status
from slm_factory.workspace import Workspace

if TYPE_CHECKING:
    from slm_factory.config import ProjectConfig

OUTCOMES = ("running", "done", "failed", "interrupted")
STOPPED = "stopped: its process ended"
NO_RUN = "no run yet"
THEMES = {"dark": "textual-dark", "light": "textual-light"}
TABLE_COLUMNS = ("stage", "on", "artifact", "items", "modified", "freshness")

Signature = tuple[Any, ...]


# -- reading the project (no Textual here: the worker thread runs it) ---------------------------


def freshness(row: StageStatus, state_readable: bool = True) -> str:
    if not row.enabled:
        return "off"
    if not row.exists:
        return "missing"
    if not state_readable:
        return "unknown"
    return "up to date" if row.up_to_date else "stale"


def path_signature(path: Path) -> Signature:
    """What changes whenever the file (or a file under the folder) is rewritten: a stat per file,
    never its content. The inode is part of it because artifacts are replaced by rename."""
    try:
        if path.is_dir():
            return tuple(sorted((str(child.relative_to(path)), *_stat(child)) for child in path.rglob("*")
                                if child.is_file()))
        return _stat(path)
    except OSError:  # vanished between the listing and the stat: the next look sees what replaced it
        return ("changing",)


def _stat(path: Path) -> Signature:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ("missing",)
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def watched_paths(config: ProjectConfig, workspace: Workspace) -> list[Path]:
    """Every file and folder stage_status reads: the run state, each stage's inputs and outputs."""
    names: list[str] = []
    for stage in STAGES:
        names += [stage.output, *stage.also_writes, *stage_inputs(stage, config)]
    paths = [workspace.state_path]
    for name in dict.fromkeys(names):
        paths.append(config.documents_dir if name == DOCUMENTS else workspace.path(name))
    return paths


def json_unreadable(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError):
        return True
    return False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def well_formed(state: dict[str, Any]) -> bool:
    """Whether a version-1 progress state has the shape the screen relies on (a file edited by hand
    or by another program may say version 1 and hold anything)."""
    stages, ended, task = state.get("stages"), state.get("ended"), state.get("task")
    return (state.get("outcome") in OUTCOMES
            and isinstance(stages, list) and all(isinstance(name, str) for name in stages)
            and isinstance(ended, dict) and all(isinstance(end, dict) for end in ended.values())
            and (state.get("current") is None or isinstance(state.get("current"), str))
            and (task is None or (isinstance(task, dict) and _number(task.get("done")) and _number(task.get("total"))))
            and all(state.get(key) is None or isinstance(state.get(key), dict) for key in ("teacher", "train")))


@dataclass(frozen=True)
class Look:
    """One look at the project: what the screen shows until the next one."""

    rows: list[StageStatus] | None
    state_readable: bool
    # Artifacts that exist but no longer parse: the item count they had when last read, if any.
    unreadable: dict[str, int | None]
    progress: dict[str, Any] | None
    alive: bool
    # The last teacher figures seen for each stage of this run (the file holds only the current stage's).
    teacher_by_stage: dict[str, dict[str, Any]]
    problems: list[str]
    at: float


class ProjectWatcher:
    """Looks at a project's output folder; keeps the last good state of everything it read."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self.workspace = Workspace(config.output_dir)
        self.rows: list[StageStatus] | None = None
        self.table_builds = 0  # how often the stage table was computed (it is the costly part)
        self._paths = watched_paths(config, self.workspace)
        self._signature: Signature | None = None
        self._table_problem = ""
        self._state_readable = True
        self._last_items: dict[str, int] = {}
        self._unreadable: dict[str, int | None] = {}
        self._progress: dict[str, Any] | None = None
        self._run_key: tuple[Any, ...] | None = None
        self._teacher_by_stage: dict[str, dict[str, Any]] = {}

    def look(self) -> Look:
        progress_problem = self._read_progress()
        self._read_table()
        progress = self._progress
        return Look(rows=self.rows, state_readable=self._state_readable, unreadable=dict(self._unreadable),
                    progress=progress, alive=live.is_running(progress) if progress else False,
                    teacher_by_stage=dict(self._teacher_by_stage),
                    problems=[p for p in (progress_problem, self._table_problem) if p], at=time.time())

    # -- .progress.json ----------------------------------------------------------------------------
    def _read_progress(self) -> str:
        state = live.read_progress(self.workspace.root)
        if state is not None and well_formed(state):
            self._remember(state)
            return ""
        path = live.progress_path(self.workspace.root)
        if state is None and not path.exists():
            self._progress = None
            return ""
        kept = "; showing the last good state" if self._progress is not None else ""
        return f"{path.name} is damaged or from another version{kept}"

    def _remember(self, state: dict[str, Any]) -> None:
        run_key = (state.get("pid"), state.get("host"), state.get("started"))
        if run_key != self._run_key:
            self._run_key, self._teacher_by_stage = run_key, {}
        # The teacher figures belong to the running stage, or, once it ended, to the stage that ended last.
        stage = state.get("current") or next(reversed(state["ended"]), None)
        if isinstance(state.get("teacher"), dict) and stage:
            self._teacher_by_stage[stage] = state["teacher"]
        self._progress = state

    # -- the stage table ---------------------------------------------------------------------------
    def _read_table(self) -> None:
        signature = tuple(path_signature(path) for path in self._paths)
        if signature == self._signature:
            return
        problem = self.workspace.read_state()[1]
        if problem and self.rows is not None:
            self._signature, self._table_problem = signature, f"{problem}; the stage table shows the last good state"
            return
        try:
            rows = stage_status(self.config, self.workspace)
        except Exception as error:  # noqa: BLE001 - a file changing under us; keep the old table, look again next time
            self._table_problem = f"stage table not updated: {type(error).__name__}: {error}"
            return
        self.table_builds += 1
        self._signature, self.rows, self._state_readable = signature, rows, not problem
        self._table_problem = f"{problem}; freshness unknown" if problem else ""
        self._count_items(rows)

    def _count_items(self, rows: list[StageStatus]) -> None:
        self._unreadable = {}
        for row in rows:
            path = self.workspace.root / row.artifact
            if row.items is not None:
                self._last_items[row.name] = row.items
            elif row.exists and path.suffix == ".json" and json_unreadable(path):
                self._unreadable[row.name] = self._last_items.get(row.name)


# -- what the screen says ------------------------------------------------------------------------


def run_state(progress: dict[str, Any] | None, alive: bool) -> str:
    if progress is None:
        return NO_RUN
    if progress["outcome"] == "running" and not alive:
        return STOPPED
    return str(progress["outcome"])


def stage_line(progress: dict[str, Any]) -> str:
    stages, current = progress["stages"], progress.get("current")
    if current in stages:
        return f"stage {stages.index(current) + 1} of {len(stages)}: {current}"
    if current:
        return f"stage: {current}"
    return f"{len(progress['ended'])} of {len(stages)} stages ended"


def task_line(task: dict[str, Any] | None) -> str:
    if task is None:
        return ""
    done, total = task["done"], task["total"]
    parts = [f"{task.get('description') or 'working'}: {done:g}/{total:g}"]
    if total:
        parts[0] += f" ({100 * done / total:.0f}%)"
    if _number(task.get("per_second")):
        parts.append(f"{task['per_second']:.2f}/s")
    if task.get("note"):
        parts.append(str(task["note"]))
    return " · ".join(parts)


def ended_line(progress: dict[str, Any]) -> str:
    """The stages this command has finished, in order: "parse: ran, 1.2 s, 3 items · ..."."""
    ended = progress["ended"]
    planned = progress["stages"]
    order = [name for name in planned if name in ended] + [name for name in ended if name not in planned]
    parts = []
    for name in order:
        end = ended[name]
        part = f"{name}: {end.get('status', '?')}"
        if _number(end.get("seconds")):
            part += f", {end['seconds']:.1f} s"
        if _number(end.get("items")):
            part += f", {end['items']} item" + ("" if end["items"] == 1 else "s")
        parts.append(part)
    return "ended: " + " · ".join(parts) if parts else ""


def teacher_line(stage: str, figures: dict[str, Any], current: bool) -> str:
    def figure(key: str) -> Any:
        value = figures.get(key, 0)
        return value if _number(value) else 0

    where = stage if current else f"{stage}, ended"
    return (f"teacher ({where}): {figure('items_per_s'):.2f} replies/s · {figure('requests')} requests · "
            f"{figure('completed')} completed · {figure('failures')} failures · {figure('retries')} retries · "
            f"{figure('cache_hits')} cache hits · tokens {figure('prompt_tokens')} prompt + "
            f"{figure('completion_tokens')} completion")


def train_line(train: dict[str, Any] | None) -> str:
    if not train:
        return ""
    parts = []
    if _number(train.get("step")):
        parts.append(f"step {train['step']}" + (f"/{train['steps']}" if _number(train.get("steps")) else ""))
    if _number(train.get("epoch")):
        parts.append(f"epoch {train['epoch']:.2f}")
    if _number(train.get("loss")):
        parts.append(f"loss {train['loss']:.4f}")
    if _number(train.get("tokens_per_s")):
        parts.append(f"{train['tokens_per_s']:.0f} tokens/s")
    return "training: " + " · ".join(parts) if parts else ""


def items_cell(row: StageStatus, look: Look) -> str:
    if row.name in look.unreadable:
        last = look.unreadable[row.name]
        return "unreadable" + (f" (last {last})" if last is not None else "")
    return "" if row.items is None else str(row.items)


_STATE_STYLE = {"running": "bold green", "done": "bold cyan", "failed": "bold red", "interrupted": "bold yellow",
                STOPPED: "bold red", NO_RUN: "dim"}
_FRESHNESS_STYLE = {"up to date": "green", "stale": "yellow", "missing": "dim", "off": "dim", "unknown": "yellow"}


# -- the screen ----------------------------------------------------------------------------------


class DashboardApp(App[None]):
    """Shows `watcher`'s project, looking again every `interval` seconds."""

    TITLE = "slm-factory dashboard"
    CSS = """
    #live { height: auto; border: round $primary; padding: 0 1; }
    #stages { height: 1fr; border: round $secondary; }
    #notes { height: auto; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, watcher: ProjectWatcher, interval: float, theme: str = "dark", label: str = "") -> None:
        super().__init__()
        self.watcher = watcher
        self.interval = interval
        self.theme_name = THEMES.get(theme, THEMES["dark"])
        self.label = label
        self.looks = 0  # looks shown so far
        self.last_look: Look | None = None
        self._looking = False
        self._shown_rows: list[StageStatus] | None = None
        self._worker_problem = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="live"):
            yield Static(id="run")
            yield ProgressBar(id="bar", show_eta=False)
            yield Static(id="task")
            yield Static(id="teacher")
            yield Static(id="train")
            yield Static(id="ended")
        yield DataTable(id="stages", cursor_type="row", zebra_stripes=True)
        yield Static(id="notes")
        yield Footer()

    def on_mount(self) -> None:
        self.theme = self.theme_name
        self.sub_title = self.label
        self.query_one("#live", Vertical).border_title = "run"
        table = self.query_one("#stages", DataTable)
        table.border_title = "stages"
        table.add_columns(*TABLE_COLUMNS)
        self.query_one("#bar", ProgressBar).display = False
        self.look_now()
        self.set_interval(self.interval, self.look_now)

    def look_now(self) -> None:
        """Start a look in a worker thread, unless the last one is still reading."""
        if self._looking:
            return
        self._looking = True
        self.run_worker(self.watcher.look, name="look", group="look", thread=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "look" or event.state in (WorkerState.PENDING, WorkerState.RUNNING):
            return
        self._looking = False
        try:
            if event.state == WorkerState.SUCCESS and isinstance(event.worker.result, Look):
                self._worker_problem = ""
                self.show(event.worker.result)
            elif event.state == WorkerState.ERROR:  # a bug in reading must not take the screen down
                self._worker_problem = f"could not look at the project: {event.worker.error!r}"
                self._show_notes(self.last_look)
        except NoMatches:  # the look ended while the app was closing: its widgets are gone
            pass

    # -- rendering ---------------------------------------------------------------------------------
    def show(self, look: Look) -> None:
        self.last_look = look
        self.looks += 1
        self._show_run(look)
        if look.rows is not None and look.rows is not self._shown_rows:
            self._show_table(look)
        self._show_notes(look)

    def _show_run(self, look: Look) -> None:
        progress = look.progress
        state = run_state(progress, look.alive)
        heading = Text()
        if progress is None:
            heading.append(state, _STATE_STYLE[NO_RUN])
        else:
            heading.append(f"{progress.get('command', '?')} (pid {progress.get('pid', '?')})  ")
            heading.append(state, _STATE_STYLE.get(state, "bold"))
            heading.append(f"  {stage_line(progress)}")
            if progress.get("updated"):
                heading.append(f"  updated {progress['updated']}", "dim")
        self.query_one("#run", Static).update(heading)
        task = progress.get("task") if progress else None
        bar = self.query_one("#bar", ProgressBar)
        bar.display = task is not None
        if task is not None:
            bar.update(total=max(task["total"], 0) or None, progress=task["done"])
        self.query_one("#task", Static).update(Text(task_line(task)))
        self.query_one("#teacher", Static).update(Text(self._teacher_text(look)))
        self.query_one("#train", Static).update(Text(train_line(progress.get("train") if progress else None)))
        self.query_one("#ended", Static).update(Text(ended_line(progress) if progress else ""))

    def _teacher_text(self, look: Look) -> str:
        if look.progress is None or not look.teacher_by_stage:
            return ""
        current = look.progress.get("current")
        if current in look.teacher_by_stage:
            return teacher_line(current, look.teacher_by_stage[current], True)
        stage, figures = list(look.teacher_by_stage.items())[-1]
        return teacher_line(stage, figures, False)

    def _show_table(self, look: Look) -> None:
        table = self.query_one("#stages", DataTable)
        table.clear()
        for row in look.rows or []:
            fresh = freshness(row, look.state_readable)
            table.add_row(row.name, "on" if row.enabled else "off", row.artifact, items_cell(row, look),
                          row.modified or "", Text(fresh, _FRESHNESS_STYLE[fresh]), key=row.name)
        self._shown_rows = look.rows

    def _show_notes(self, look: Look | None) -> None:
        lines = [*(look.problems if look else []), *([self._worker_problem] if self._worker_problem else [])]
        when = time.strftime("%H:%M:%S", time.localtime(look.at)) if look else "-"
        lines.append(f"looked at {when}, every {self.interval:g} s · q quits")
        self.query_one("#notes", Static).update(Text("\n".join(lines)))

    # -- what is on the screen, as plain text ------------------------------------------------------
    def text_of(self, selector: str) -> str:
        return str(self.query_one(selector, Static).content)

    def table_rows(self) -> dict[str, dict[str, str]]:
        table = self.query_one("#stages", DataTable)
        rows = {}
        for key in table.rows:
            cells = [str(cell) for cell in table.get_row(key)]
            rows[cells[0]] = dict(zip(TABLE_COLUMNS, cells))
        return rows
