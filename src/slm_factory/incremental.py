"""`update`: the pipeline again after documents were added, changed, deleted or renamed, doing
only the work those changes need.

What changed is decided by content: output/document_hashes.json (`incremental.hash_file`) maps
each document's path under the documents folder to the sha256 of its bytes, the same flat
{name: hash} shape the original slm-factory wrote, so its file is read as it is. A path with a
new hash is changed; a path that is gone is deleted unless its bytes are now under another path,
which is a rename and costs nothing (documents, chunks and pairs are keyed by content, so the
parse cache and generate's ledger still hold them). The file is written only after every stage
of the update succeeded, so an update that stops is detected again in full the next time.

The stages then run as `run --resume` runs them: parse reads only new and changed files,
generate asks the teacher only for chunks it has no pairs for, and every later stage rebuilds
its artifact from the one before, so the pairs of deleted and changed documents leave every
artifact, held-out probes included (the original kept them). `incremental.merge_strategy`:
`append` keeps the pairs of unchanged documents beside the new ones; `replace` keeps only the
pairs of new and changed documents for this update (the original's replace), typically with
`incremental.resume_adapter` to continue the previous adapter on them; a later `run --resume`
brings the full set back, from the ledger, without the teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_factory.curation.teacher_work import KEEP_GIVEN_UP
from slm_factory.pipeline import StageContext, StageRun, run_pipeline
from slm_factory.workspace import write_atomic

log = logging.getLogger("slm_factory")

# Where update tells generate which documents' pairs to keep (merge_strategy: replace).
SCOPE_OPTION = "documents_only"
# The pair artifacts whose before/after the update reports, in pipeline order.
PAIR_ARTIFACTS = ("qa_alpaca", "qa_validated", "qa_scored", "qa_train", "qa_test", "qa_augmented")
_READ_CHUNK = 1 << 20


@dataclass
class Changes:
    """What the documents folder holds now against the last update (paths relative to it)."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old path, new path)
    unchanged: list[str] = field(default_factory=list)
    first: bool = False  # no hash file yet: every document counts as added

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.deleted or self.renamed)

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.changed)} changed", f"{len(self.deleted)} deleted",
                 f"{len(self.renamed)} renamed", f"{len(self.unchanged)} unchanged"]
        return ", ".join(parts)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def current_hashes(ctx: StageContext) -> dict[str, str]:
    """Every document parse would read, by its path under the documents folder."""
    from slm_factory.parsing.stage import find_documents

    folder = ctx.config.documents_dir
    return {path.relative_to(folder).as_posix(): file_sha256(path)
            for path in find_documents(folder, ctx.config.parsing.formats)}


def hash_file(ctx: StageContext) -> Path:
    return ctx.config.output_dir / ctx.config.incremental.hash_file


def saved_hashes(path: Path) -> dict[str, str] | None:
    """The hashes of the last update; None when there is no file. A file that cannot be read as
    {path: sha256} is one warning and counts as none (every document is then new: nothing is
    lost, the ledger still holds their pairs)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        log.warning("%s: not readable (%s); every document is treated as new", path, error)
        return None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        log.warning("%s: not a {document: sha256} mapping; every document is treated as new", path)
        return None
    return data


def detect(current: dict[str, str], saved: dict[str, str] | None) -> Changes:
    if saved is None:
        return Changes(added=sorted(current), first=True)
    changes = Changes()
    now_present = set(current.values())
    gone = {path: digest for path, digest in saved.items() if path not in current}
    gone_by_hash: dict[str, list[str]] = {}
    for path, digest in sorted(gone.items()):
        gone_by_hash.setdefault(digest, []).append(path)
    for path, digest in sorted(current.items()):
        if path in saved:
            (changes.unchanged if saved[path] == digest else changes.changed).append(path)
        elif gone_by_hash.get(digest):
            changes.renamed.append((gone_by_hash[digest].pop(0), path))
        else:
            changes.added.append(path)
    # A path gone whose bytes are still elsewhere (a rename, or a duplicate removed) lost nothing.
    changes.deleted = sorted(path for path, digest in gone.items()
                             if digest not in now_present)
    return changes


def save_hashes(path: Path, hashes: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(hashes, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def doc_id(sha256: str) -> str:
    """A document's id as parse gives it (parsing.base.file_id): the first 16 hex digits."""
    return sha256[:16]


# -- pairs before and after ----------------------------------------------------------------------


@dataclass
class PairCount:
    artifact: str
    before: int
    after: int
    added: int
    removed: int


def pair_records(ctx: StageContext) -> dict[str, list[dict[str, Any]]]:
    """The records of each pair artifact that exists; one that cannot be read counts as empty (the
    stage that writes it says what is wrong with it)."""
    records: dict[str, list[dict[str, Any]]] = {}
    for name in PAIR_ARTIFACTS:
        path = ctx.workspace.path(name)
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = []
        records[name] = [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
    return records


def pair_ids(records: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    return {name: {str(item.get("id")) for item in items} for name, items in records.items()}


def pair_counts(before: dict[str, set[str]], after: dict[str, set[str]]) -> list[PairCount]:
    rows = []
    for name in PAIR_ARTIFACTS:
        if name not in before and name not in after:
            continue
        old, new = before.get(name, set()), after.get(name, set())
        rows.append(PairCount(name, len(old), len(new), len(new - old), len(old - new)))
    return rows


def leftover_pairs(records: dict[str, list[dict[str, Any]]], gone_ids: set[str]) -> dict[str, int]:
    """Pairs that still name a deleted or changed document's old id, per artifact (should be none)."""
    counts = {name: sum(1 for item in items if item.get("doc_id") in gone_ids) for name, items in records.items()}
    return {name: count for name, count in counts.items() if count}


# -- the update ------------------------------------------------------------------------------------


@dataclass
class UpdateResult:
    changes: Changes
    runs: list[StageRun]
    pairs: list[PairCount]
    teacher_calls: dict[str, int]
    failed: bool
    lines: list[str] = field(default_factory=list)


@dataclass
class Scan:
    """The documents folder now, the hashes of the last update, and what changed between them."""

    current: dict[str, str]
    saved: dict[str, str] | None
    changes: Changes


def scan(ctx: StageContext) -> Scan:
    current, saved = current_hashes(ctx), saved_hashes(hash_file(ctx))
    return Scan(current, saved, detect(current, saved))


def scope_ids(changes: Changes, current: dict[str, str]) -> set[str]:
    """The document ids whose pairs a `replace` update keeps: the new and changed documents."""
    return {doc_id(current[path]) for path in (*changes.added, *changes.changed)}


def run_update(ctx: StageContext, found: Scan, start: str | None = None, end: str | None = None,
               report: Callable[[StageRun], None] = lambda run: None) -> UpdateResult:
    """The stages from `start` to `end` as `run --resume` runs them, after `scan`; the hash file
    is written when none of them failed."""
    current, saved, changes = found.current, found.saved, found.changes
    before = pair_ids(pair_records(ctx))
    ctx.options[KEEP_GIVEN_UP] = True  # an unchanged document's pairs cost no request, failed ones included
    if ctx.config.incremental.merge_strategy == "replace" and not changes.first:
        ctx.options[SCOPE_OPTION] = sorted(scope_ids(changes, current))
    runs = run_pipeline(ctx, start, end, resume=True, report=report)
    failed = any(run.status == "failed" for run in runs)
    calls = {run.stage: int(run.result.extra["teacher"].get("requests", 0)) for run in runs
             if run.result is not None and isinstance(run.result.extra.get("teacher"), dict)}
    after = pair_records(ctx)
    result = UpdateResult(changes, runs, pair_counts(before, pair_ids(after)), calls, failed)
    gone = {doc_id(saved[path]) for path in (*changes.deleted, *changes.changed)} if saved else set()
    leftovers = leftover_pairs(after, gone - {doc_id(digest) for digest in current.values()}) if not failed else {}
    if leftovers:  # a stage after `end` has not rebuilt its artifact yet
        result.lines.append("pairs of deleted or changed documents remain in "
                            + ", ".join(f"{name}.json ({n})" for name, n in leftovers.items())
                            + ": run `slm-factory update` through the last stage to remove them")
    if not failed:
        try:
            save_hashes(hash_file(ctx), current)
        except OSError as error:
            result.lines.append(f"{hash_file(ctx)}: could not be written ({error.strerror or error}); the next "
                                "update finds the same changes again")
    return result
