"""The output/ folder: every artifact's path, and the only way artifacts are written.

Writes are atomic (temp file, fsync, rename), so a crash leaves either the old file or the
new one, never half of one. Stages that produce items one by one append them to a checkpoint
JSONL file as each finishes, so a kill -9 loses at most the items in flight.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound="BaseModel")

# Artifact names are kept from the original slm-factory so its users find their files.
ARTIFACTS: dict[str, str] = {
    "parsed_documents": "parsed_documents.json",
    "qa_alpaca": "qa_alpaca.json",
    "qa_validated": "qa_validated.json",
    "qa_scored": "qa_scored.json",
    "qa_train": "qa_train.json",
    "qa_augmented": "qa_augmented.json",
    "qa_reviewed": "qa_reviewed.json",
    # Every review decision as it is made (append-only): qa_reviewed.json is rebuilt from it.
    "review_log": "qa_reviewed.decisions.jsonl",
    "qa_test": "qa_test.json",
    "data_analysis": "data_analysis.json",
    "report": "report.html",
    "dialogues": "dialogues.json",
    "training_data": "training_data.jsonl",
    "adapter": "checkpoints/adapter",
    "merged_model": "merged_model",
    "modelfile": "merged_model/Modelfile",
    "gguf": "gguf",
    "gguf_modelfile": "gguf/Modelfile",
    "eval_results": "eval_results.json",
    "eval_report": "eval_results.html",
    "compare_results": "compare_results.json",
    "compare_report": "compare_results.html",
    # One rejection record per dropped pair (id, stage, rule, detail, the pair), per stage.
    "rejected_validate": "rejected/validate.json",
    "rejected_score": "rejected/score.json",
    "rejected_split": "rejected/split.json",
    "rejected_augment": "rejected/augment.json",
}
INTERMEDIATE = ("qa_validated", "qa_scored", "qa_augmented", "data_analysis", "report",
                "rejected_validate", "rejected_score", "rejected_split", "rejected_augment")
STATE_FILE = ".state.json"
PARSE_CACHE_DIR = ".parse_cache"  # one parsed document per file, reused by the next parse


class Workspace:
    def __init__(self, output_dir: Path) -> None:
        self.root = Path(output_dir)

    def path(self, artifact: str) -> Path:
        return self.root / ARTIFACTS[artifact]

    def partial_path(self, artifact: str) -> Path:
        """The checkpoint file of an artifact built item by item: qa_alpaca.partial.jsonl."""
        target = self.path(artifact)
        return target.with_name(target.stem + ".partial.jsonl")

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def parse_cache_dir(self) -> Path:
        return self.root / PARSE_CACHE_DIR

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    # -- JSON artifacts ----------------------------------------------------------------------
    def write_json(self, artifact: str, data: Any) -> Path:
        target = self.path(artifact)
        write_atomic(target, json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"))
        return target

    def read_json(self, artifact: str) -> Any:
        return read_json_file(self.path(artifact), ARTIFACTS[artifact])

    def checkpoint(self, artifact: str) -> "Checkpoint":
        return Checkpoint(self.partial_path(artifact))

    # -- run state ---------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        """The run state, or {} when there is none or it is damaged (not UTF-8, not JSON, not an
        object of stages): every stage then counts as not up to date, which is safe."""
        return self.read_state()[0]

    def read_state(self) -> tuple[dict[str, Any], str]:
        """(the run state or {}, why the file could not be used: "" when it could or is absent)."""
        name = self.state_path.name
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, ""
        except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return {}, f"{name} could not be read ({type(error).__name__})"
        if not isinstance(state, dict) or not isinstance(state.get("stages", {}), dict):
            return {}, f"{name} is not a run state (not a JSON object with a stages object)"
        return state, ""

    def save_state(self, state: dict[str, Any]) -> None:
        write_atomic(self.state_path, json.dumps(state, ensure_ascii=False, indent=2).encode("utf-8"))


class ArtifactError(Exception):
    """An input file that is missing, damaged or not what it should be: a user-fixable problem,
    reported as one line naming the file and what to do (never a traceback)."""


def read_json_file(path: Path, name: str | None = None) -> Any:
    """Read a JSON file; a missing or damaged one raises ArtifactError naming it."""
    label = name or str(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path} is a folder, not a JSON file") from None
    except UnicodeDecodeError:
        raise ArtifactError(f"{label} is not UTF-8 text; is it the right file?") from None
    except json.JSONDecodeError as error:
        raise ArtifactError(
            f"{label} is damaged (not valid JSON at line {error.lineno}, column {error.colno}); "
            "rerun the stage that writes it"
        ) from None


def read_records(path: Path, model: type[ModelT], label: str | None = None) -> list[ModelT]:
    """A JSON list of records (QA pairs, documents), each checked against `model`; a file that
    is not such a list raises ArtifactError naming the file, the record and the field."""
    from pydantic import ValidationError

    data = read_json_file(path, label)
    if isinstance(data, dict) and isinstance(data.get("documents"), list):
        data = data["documents"]
    if not isinstance(data, list):
        raise ArtifactError(f"{label or path} should hold a JSON list of records, not a {type(data).__name__}")
    records = []
    for index, item in enumerate(data):
        try:
            records.append(model.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "record"
            raise ArtifactError(
                f"{label or path}: record {index + 1} is not a {model.__name__} ({where}: {first['msg']}); "
                "is it from an older version or another tool? rerun the stage that writes it"
            ) from None
    return records


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_atomic(target: Path, data: bytes) -> None:
    """Write `data` to `target` so that readers see the old file or the new one, never a mix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes 0600; an artifact gets a normal file's mode
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Checkpoint:
    """Append-only JSONL of finished items, each line flushed and fsynced as it is written.

    Reading skips a torn last line (the process died mid-write) and keeps the first copy of
    each id, so resuming after any crash yields every finished item exactly once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, key: str = "id") -> list[dict[str, Any]]:
        return list(self._iter_unique(key))

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every readable line, repeats included (a torn last line is skipped)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            for raw in handle:
                try:
                    item = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(item, dict):
                    yield item

    def done_ids(self, key: str = "id") -> set[str]:
        return {item[key] for item in self._iter_unique(key)}

    def _iter_unique(self, key: str) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        for item in self.entries():
            if item.get(key) not in seen:
                seen.add(item.get(key))
                yield item

    def append(self, item: dict[str, Any]) -> None:
        self.extend([item])

    def extend(self, items: Iterable[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = b"".join(
            json.dumps(item, ensure_ascii=False).encode("utf-8") + b"\n" for item in items
        )
        if not payload:
            return
        with self.path.open("ab") as handle:
            # A torn line from a crash would glue itself to our first line; start fresh.
            if handle.tell() and not _ends_with_newline(self.path):
                handle.write(b"\n")
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
