"""The `parse` stage: every document in the documents folder → parsed_documents.json.

Files are parsed in a process pool (parsing is CPU-bound and one bad file must not take the
others down); each failure is one line naming the file, and the run goes on with the rest.
A file whose document is in output/.parse_cache (same bytes, parser and options) is not parsed
again (see parsing/cache.py).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from slm_factory.parsing import korean
from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.cache import ParseCache
from slm_factory.parsing.registry import EXTENSIONS, ParseOutcome, parse_file
from slm_factory.pipeline import StageContext, StageResult
from slm_factory.records import Document
from slm_factory.workspace import write_atomic


def parse_options(ctx: StageContext) -> ParseOptions:
    parsing = ctx.config.parsing
    password = parsing.pdf.password.get_secret_value() if parsing.pdf.password else None
    return ParseOptions(
        pdf_extract_tables=parsing.pdf.extract_tables,
        pdf_password=password,
        hwpx_apply_spacing=parsing.hwpx.apply_spacing,
    )


def find_documents(folder: Path, formats: list[str]) -> list[Path]:
    """Files under `folder` whose extension belongs to an enabled format, in a stable order."""
    wanted = {fmt.lower().lstrip(".") for fmt in formats}
    files = [
        path
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".") and EXTENSIONS.get(path.suffix.lower()) in wanted
    ]
    return sorted(files)


def run(ctx: StageContext) -> StageResult:
    folder = ctx.config.documents_dir
    if not folder.is_dir():
        return StageResult(failed=True, lines=[f"documents folder {folder} does not exist; create it and add documents"])
    files = find_documents(folder, ctx.config.parsing.formats)
    if not files:
        formats = ", ".join(ctx.config.parsing.formats)
        return StageResult(failed=True, lines=[f"no documents ({formats}) in {folder}; add some and run parse again"])
    chosen = ctx.options.get("only_documents")
    if chosen:  # the wizard's "some documents": paths under the documents folder
        wanted = set(chosen)
        files = [path for path in files if path.relative_to(folder).as_posix() in wanted]
        if not files:
            return StageResult(failed=True, lines=[f"none of the chosen documents is in {folder} any more"])

    outcomes, reused = parse_all(files, folder, parse_options(ctx), ctx)
    documents = [o.document for o in outcomes if o.document is not None]
    table = _format_counts(outcomes)
    result = StageResult(
        items=len(documents),
        counts={status: sum(row[status] for row in table.values()) for status in ("parsed", "warned", "failed")},
        extra={"formats": table, "cache": {"reused": reused, "parsed": len(files) - reused}},
    )
    if not documents:
        result.failed = True
        result.lines.append("no document could be parsed; parsed_documents.json was not written")
        return result
    write_atomic(ctx.workspace.path("parsed_documents"), _documents_json(documents))
    return result


def _documents_json(documents: list[Document]) -> bytes:
    # The bytes json.dumps(indent=2, ensure_ascii=False) writes, from pydantic's serializer in
    # ~1/5 of the time (0.1 s instead of 0.5 s for the corpus's 21 MB): a rerun is mostly this.
    from pydantic import TypeAdapter

    return TypeAdapter(list[Document]).dump_json(documents, indent=2)


def parse_all(
    files: list[Path], folder: Path, options: ParseOptions, ctx: StageContext
) -> tuple[list[ParseOutcome], int]:
    """Every file's outcome in order, from the parse cache where it holds one; and how many did."""
    cache = ParseCache(ctx.workspace.parse_cache_dir, options)
    probes = [cache.probe(path) for path in files]
    missing = [(path, probe) for path, probe in zip(files, probes) if probe.document is None]
    fresh = iter(parse_fresh([path for path, _ in missing], folder, options, ctx))
    outcomes = []
    for path, probe in zip(files, probes):
        if probe.document is not None:
            outcomes.append(_report(_cached_outcome(path, folder, probe.document), ctx))
            continue
        outcome = next(fresh)
        if probe.key is not None and outcome.document is not None:
            cache.store(probe, path, outcome.document)
        outcomes.append(outcome)
    cache.prune(probes)
    reused = len(files) - len(missing)
    ctx.log.info(f"{reused} of {len(files)} documents unchanged (read from {cache.folder}), {len(missing)} parsed")
    return outcomes, reused


def parse_fresh(files: list[Path], folder: Path, options: ParseOptions, ctx: StageContext) -> list[ParseOutcome]:
    if not files:
        return []
    # Hangul line wraps are decided here, with one Kiwi (~250 MB) rather than one per worker.
    outcomes = _parse_each(files, folder, dataclasses.replace(options, defer_hangul_wraps=True), ctx)
    documents = [outcome.document for outcome in outcomes if outcome.document is not None]
    wraps = korean.settle_documents(documents, options.hwpx_apply_spacing, threads=os.cpu_count() or 1)
    if wraps:
        ctx.log.info(f"decided {wraps} Hangul line wraps (a space or none) with Kiwi")
    return outcomes


def _cached_outcome(path: Path, folder: Path, document: Document) -> ParseOutcome:
    label = str(path.relative_to(folder))
    return ParseOutcome(str(path), document.format, document, warnings=[f"{label}: {w}" for w in document.warnings])


def _parse_each(files: list[Path], folder: Path, options: ParseOptions, ctx: StageContext) -> list[ParseOutcome]:
    labels = [str(path.relative_to(folder)) for path in files]
    workers = min(len(files), os.cpu_count() or 1, 8)
    track = ctx.progress.track
    if workers <= 1:
        iterator = (parse_file(path, options, label) for path, label in zip(files, labels))
        return [_report(o, ctx) for o in track(iterator, len(files), "Parsing")]
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        futures = [pool.submit(parse_file, path, options, label) for path, label in zip(files, labels)]
        return [_report(_outcome(f, path, options, label), ctx)
                for f, path, label in track(zip(futures, files, labels), len(files), "Parsing")]


def _outcome(future: Future[ParseOutcome], path: Path, options: ParseOptions, label: str) -> ParseOutcome:
    try:
        return future.result()
    except BrokenProcessPool:
        # A worker died (out of memory, a crash inside a C library) and took the pool down.
        # Retry this file alone in a fresh process, so only the culprit fails.
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=_pool_context()) as pool:
                return pool.submit(parse_file, path, options, label).result()
        except BrokenProcessPool:
            return ParseOutcome(str(path), path.suffix.lstrip(".").lower(),
                                error=f"{label}: the parser crashed on this file (process died)")


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork is unsafe once threads exist (the progress bar has one); forkserver is cheap on Linux.
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _report(outcome: ParseOutcome, ctx: StageContext) -> ParseOutcome:
    if outcome.error:
        ctx.log.error(outcome.error)
    for warning in outcome.warnings:
        ctx.log.warning(warning)
    return outcome


def _format_counts(outcomes: list[ParseOutcome]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        table.setdefault(outcome.format, Counter())[outcome.status] += 1
    return {fmt: {s: counts[s] for s in ("parsed", "warned", "failed")} for fmt, counts in sorted(table.items())}
