"""How fast the parsers are against markitdown, and whether the PDF tables are the real ones.

    python bench/parse.py [--corpus DIR] [--json OUT] [--repeat N] [--no-layout-pass]

1. Every corpus file through `registry.parse_file` in a pool of 2 worker processes, as the
   `parse` stage runs it (Hangul line wraps left to the main process, which decides them with
   one Kiwi): what each file gives (status, pages, tables) and the peak RSS of the workers and
   of the main process, with nothing else loaded in them.
2. Timing, paired: in a second pool of 2, each file is parsed by us (tables on), by us with
   `pdf_extract_tables` off (PDFs) and converted by markitdown (pdf, docx, html, txt/md), one
   after the other in the same worker, N times (default 3); the best time of each counts. Both
   sides see the same machine at the same moment, so load on a shared machine moves both alike.
   Times are measured inside the workers after a warm-up import: no process or import costs.
   Ratio = markitdown s / our s, per group: PDFs with tables (our parser found one), text-only
   PDFs, all PDFs with tables off, and per format; the DOJ handbook DOCX on its own.
3. Tables per PDF: ours against full `find_tables` passes over every page: line-based
   (`use_layout=False`, the rule our grid finder follows) and PyMuPDF 2's default, which also
   runs its ONNX layout model on each page (~50 s on this corpus; skip with --no-layout-pass).

Targets (issue): PDFs with tables >= 3x markitdown's throughput with the same real tables;
text-only PDFs >= 20x; DOJ DOCX < 2 s; peak memory < 1 GB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from slm_factory.parsing import korean
from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import format_of, parse_file

WORKERS = 2
_MARKITDOWN: Any = None  # one converter per markitdown worker, made by _warm_markitdown
MARKITDOWN_FORMATS = {"pdf", "docx", "html", "txt", "md"}
DOJ = "us-doj-chapter13-standing-trustee-handbook-2012.docx"


# -- work done inside the pool workers ---------------------------------------------------------
def _warm_ours() -> None:
    from slm_factory.parsing import pdf  # PyMuPDF's import is paid once per worker

    pdf._pymupdf()


def _warm_markitdown() -> None:
    global _MARKITDOWN
    from markitdown import MarkItDown

    _MARKITDOWN = MarkItDown()


def _warm_both() -> None:
    _warm_ours()
    _warm_markitdown()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ours(path: str, options: ParseOptions) -> dict[str, Any]:
    import os

    start = time.perf_counter()
    outcome = parse_file(Path(path), options)
    seconds = time.perf_counter() - start
    document = outcome.document
    wraps = korean.windows(document.text) if document and options.defer_hangul_wraps else []
    return {
        "wraps": wraps,
        "file": Path(path).name, "format": outcome.format, "seconds": seconds, "status": outcome.status,
        "pages": (document.pages or len(document.sections)) if document else 0,
        "tables": [table.page for table in document.tables] if document else [],
        "error": outcome.error, "pid": os.getpid(), "peak_rss_mb": _peak_rss_mb(),
    }


def _markitdown(path: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        chars = len(_MARKITDOWN.convert(path).text_content)
        error = None
    except Exception as exc:  # noqa: BLE001 -- markitdown raises many types for bad input
        chars, error = 0, type(exc).__name__
    return {"file": Path(path).name, "seconds": time.perf_counter() - start, "chars": chars, "error": error}


def _timed(path: str, repeat: int) -> dict[str, Any]:
    """Best of `repeat` rounds of: ours, ours with tables off (PDF), markitdown -- back to back."""
    fmt = format_of(Path(path))
    best: dict[str, float | None] = {"ours": None, "ours_tables_off": None, "markitdown": None}
    error = None

    def keep(key: str, seconds: float) -> None:
        current = best[key]
        best[key] = seconds if current is None else min(current, seconds)

    for _ in range(repeat):
        keep("ours", _ours(path, ParseOptions())["seconds"])
        if fmt == "pdf":
            keep("ours_tables_off", _ours(path, ParseOptions(pdf_extract_tables=False))["seconds"])
        if fmt in MARKITDOWN_FORMATS:
            converted = _markitdown(path)
            keep("markitdown", converted["seconds"])
            error = converted["error"]
    return {"file": Path(path).name, **best, "markitdown_error": error}


def _table_pass(path: str, use_layout: bool) -> dict[str, Any]:
    """Tables on every page by PyMuPDF's `find_tables`, kept by the same "real table" rule as ours."""
    from slm_factory.parsing.pdf_layout import looks_like_table

    if not use_layout:
        from slm_factory.parsing import pdf

        pymupdf = pdf._pymupdf()  # without the layout model
    else:
        import pymupdf
    start = time.perf_counter()
    pages: list[int] = []
    with pymupdf.open(path) as document:
        for page in document:
            found = page.find_tables() if use_layout else page.find_tables(use_layout=False)
            for table in found.tables if found else []:
                if looks_like_table([[cell or "" for cell in row] for row in table.extract()]):
                    pages.append(page.number + 1)
    return {"file": Path(path).name, "seconds": time.perf_counter() - start, "pages": pages}


def _pool(initializer: Any = None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("forkserver"), initializer=initializer)


# -- the run -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "parse.json")
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds per file; the best counts")
    parser.add_argument("--no-layout-pass", action="store_true", help="skip the ~50 s layout-model find_tables pass")
    args = parser.parse_args()
    files = sorted(str(p) for p in args.corpus.iterdir() if format_of(p) and p.is_file())
    pdfs = [f for f in files if f.endswith(".pdf")]
    readable = [f for f in files if (format_of(Path(f)) or "") in MARKITDOWN_FORMATS]

    with _pool(_warm_ours) as pool:  # as the parse stage runs: Hangul wraps decided in the main process
        start = time.perf_counter()
        ours = list(pool.map(_ours, files, [ParseOptions(defer_hangul_wraps=True)] * len(files)))
        korean.decide((window for row in ours for window in row.pop("wraps")), use_kiwi=True)
        ours_wall = time.perf_counter() - start
    with _pool(_warm_both) as pool:
        timed = {r["file"]: r for r in pool.map(_timed, files, [args.repeat] * len(files))}
    for row in ours:
        row["seconds"] = timed[row["file"]]["ours"]
    no_tables = [row | {"seconds": timed[row["file"]]["ours_tables_off"]} for row in ours if row["format"] == "pdf"]
    markitdown = {
        name: {"file": name, "seconds": r["markitdown"], "error": r["markitdown_error"]}
        for name, r in timed.items() if r["markitdown"] is not None
    }
    parsed = [str(args.corpus / r["file"]) for r in ours if r["format"] == "pdf" and r["pages"]]
    with _pool() as pool:  # PyMuPDF imported without its layout model in these workers
        line_pass = {r["file"]: r for r in pool.map(_table_pass, parsed, [False] * len(parsed))}
    layout_pass: dict[str, dict[str, Any]] = {}
    if not args.no_layout_pass:
        with _pool() as pool:  # fresh workers: a plain `import pymupdf` loads the layout model
            layout_pass = {r["file"]: r for r in pool.map(_table_pass, parsed, [True] * len(parsed))}

    results = _summarise(ours, no_tables, markitdown, line_pass, layout_pass, ours_wall, args.repeat)
    _print(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nwrote {args.json}")


def _group(name: str, rows: list[dict[str, Any]], markitdown: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ours_s = sum(r["seconds"] for r in rows)
    pages = sum(r["pages"] for r in rows)
    md_rows = [markitdown[r["file"]] for r in rows if r["file"] in markitdown]
    md_s = sum(r["seconds"] for r in md_rows)
    return {
        "group": name, "files": len(rows), "failed": sum(1 for r in rows if r["status"] == "failed"),
        "pages": pages, "ours_s": round(ours_s, 3), "ours_pages_per_s": round(pages / ours_s, 1) if ours_s else None,
        "markitdown_s": round(md_s, 3) if md_rows else None,
        "markitdown_failed": sum(1 for r in md_rows if r["error"]),
        "ratio": round(md_s / ours_s, 1) if md_rows and ours_s else None,
    }


def _summarise(ours: list[dict[str, Any]], no_tables: list[dict[str, Any]], markitdown: dict[str, dict[str, Any]],
               line_pass: dict[str, dict[str, Any]], layout_pass: dict[str, dict[str, Any]],
               ours_wall: float, repeat: int) -> dict[str, Any]:
    by_format: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in ours:
        by_format[row["format"]].append(row)
    parsed_pdfs = [r for r in by_format["pdf"] if r["status"] != "failed" and r["pages"]]
    with_tables = [r for r in parsed_pdfs if r["tables"]]
    text_only = [r for r in parsed_pdfs if not r["tables"]]
    groups = [_group(fmt, rows, markitdown) for fmt, rows in sorted(by_format.items())]
    text_pass = [r for r in no_tables if r["status"] != "failed" and r["pages"]]
    groups += [
        _group("pdf, tables on", parsed_pdfs, markitdown),
        _group("  table found", with_tables, markitdown),
        _group("  no table found", text_only, markitdown),
        _group("pdf, tables off", text_pass, markitdown),
    ]
    doj = next((r for r in ours if r["file"] == DOJ), None)
    ratio = {g["group"]: g["ratio"] for g in groups}
    worst_table_pdf = min((markitdown[r["file"]]["seconds"] / r["seconds"] for r in with_tables), default=None)
    tables = [
        {
            "file": r["file"], "ours": len(r["tables"]),
            "line_pass": len(line_pass[r["file"]]["pages"]),
            "same_pages_as_line_pass": Counter(r["tables"]) == Counter(line_pass[r["file"]]["pages"]),
            "line_pass_s": round(line_pass[r["file"]]["seconds"], 2),
            "layout_pass": len(layout_pass[r["file"]]["pages"]) if layout_pass else None,
            "same_pages_as_layout_pass": (
                Counter(r["tables"]) == Counter(layout_pass[r["file"]]["pages"]) if layout_pass else None
            ),
            "layout_pass_s": round(layout_pass[r["file"]]["seconds"], 2) if layout_pass else None,
            "ours_s": round(r["seconds"], 3),
        }
        for r in parsed_pdfs
    ]
    off = {r["file"]: r["seconds"] for r in no_tables}
    peaks: dict[int, float] = {}
    for row in ours + no_tables:
        peaks[row["pid"]] = max(peaks.get(row["pid"], 0.0), row["peak_rss_mb"])
    return {
        "workers": WORKERS, "repeat": repeat, "groups": groups, "tables": tables,
        "doj_docx": {"seconds": round(doj["seconds"], 3), "status": doj["status"], "error": doj["error"]} if doj else None,
        "ours_wall_s": round(ours_wall, 2),
        "peak_rss_mb": {"worker_max": round(max(peaks.values()), 1), "workers_sum": round(sum(peaks.values()), 1),
                        "main": round(_peak_rss_mb(), 1)},
        "targets": [
            {"target": "PDFs with tables, tables on: >= 3x markitdown", "value": ratio["  table found"],
             "met": (ratio["  table found"] or 0) >= 3},
            {"target": "  ... every such PDF on its own >= 3x", "value": round(worst_table_pdf, 1) if worst_table_pdf else None,
             "met": (worst_table_pdf or 0) >= 3},
            {"target": "  ... same pages as a find_tables line pass (see above)",
             "value": f"{sum(t['same_pages_as_line_pass'] for t in tables)}/{len(tables)} PDFs",
             "met": all(t["same_pages_as_line_pass"] for t in tables if t["ours"])},
            {"target": "text only (tables off), all text PDFs: >= 20x markitdown", "value": ratio["pdf, tables off"],
             "met": (ratio["pdf, tables off"] or 0) >= 20},
            {"target": "DOJ handbook DOCX < 2 s", "value": round(doj["seconds"], 2) if doj else None,
             "met": bool(doj and doj["seconds"] < 2)},
            {"target": "peak memory < 1 GB (both workers and the main process)",
             "value": round(sum(peaks.values()) + _peak_rss_mb(), 1), "met": sum(peaks.values()) + _peak_rss_mb() < 1024},
        ],
        "failures": {r["file"]: r["error"] for r in ours if r["error"]},
        "files": [
            {k: v for k, v in r.items() if k not in ("pid", "peak_rss_mb")}
            | {"markitdown_s": markitdown.get(r["file"], {}).get("seconds"), "tables_off_s": off.get(r["file"])}
            for r in ours
        ],
    }


def _table(header: list[str], widths: list[int], rows: list[list[Any]]) -> None:
    """Print rows under a header; the first column left-aligned, the others right-aligned."""
    for row in [header, *rows]:
        cells = [f"{row[0]!s:{widths[0]}.{widths[0]}}"] + [f"{'-' if v is None else v!s:>{w}}" for v, w in zip(row[1:], widths[1:])]
        print(" ".join(cells))


def _print(results: dict[str, Any]) -> None:
    rows = [
        [g["group"], g["files"], g["failed"], g["pages"], f"{g['ours_s']:.2f}", g["ours_pages_per_s"],
         None if g["markitdown_s"] is None else f"{g['markitdown_s']:.2f}", g["markitdown_failed"],
         None if g["ratio"] is None else f"{g['ratio']}x"]
        for g in results["groups"]
    ]
    header = ["group", "files", "fail", "pages", "ours s", "pages/s", "markitdown s", "md fail", "ratio"]
    _table(header, [18, 5, 4, 6, 8, 8, 12, 7, 6], rows)
    print("  (pages: PDF pages; sections for the other formats. ratio: markitdown time / our time)")
    print(f"  (best of {results['repeat']} paired rounds per file)")
    print(f"\nwall time of the whole corpus, pool of {results['workers']}: ours {results['ours_wall_s']} s")
    if results["doj_docx"]:
        d = results["doj_docx"]
        print(f"DOJ handbook DOCX: {d['seconds']:.2f} s ({d['status']}{': ' + d['error'] if d['error'] else ''})")
    print()
    rows = [
        [t["file"], t["ours"], t["line_pass"], t["same_pages_as_line_pass"], t["layout_pass"],
         t["same_pages_as_layout_pass"], f"{t['ours_s']:.2f}", f"{t['line_pass_s']:.2f}", t["layout_pass_s"]]
        for t in results["tables"]
    ]
    header = ["PDF tables", "ours", "line pass", "same", "layout pass", "same", "ours s", "line s", "layout s"]
    _table(header, [44, 4, 9, 5, 11, 5, 7, 7, 8], rows)
    print()
    rows = [[t["target"], t["value"], "met" if t["met"] else "NOT MET"] for t in results["targets"]]
    _table(["target (issue)", "value", "status"], [58, 12, 8], rows)
    peak = results["peak_rss_mb"]
    print(f"\npeak RSS: largest parse worker {peak['worker_max']} MB, both {peak['workers_sum']} MB, main {peak['main']} MB")
    if results["failures"]:
        print("\nfiles our parsers reported as failed (expected for edge-*/encrypted-*):")
        for error in results["failures"].values():
            print(f"  {error}")


if __name__ == "__main__":
    main()
