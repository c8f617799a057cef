"""Table precision and recall of the PDF parser against tables labelled by hand.

    python bench/pdf_tables.py [--corpus DIR] [--json OUT]

Truth is `tests/data/pdf/table_truth.json`: for the corpus PDFs and the pages built by
`tests/data/pdf/make_pages.py` (unruled tables, and prose in columns, contents lists, figure
labels and glossaries that must not become tables), the tables on each page, each named by a text
it holds. A table the parser finds on a page is a hit when it holds the key of a labelled table of
that page not already hit; any other table it finds there is a false table. Precision = hits /
tables found, recall = hits / labelled tables, for the corpus and the built pages apart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file

DATA = REPO / "tests" / "data" / "pdf"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def score(path: Path, truth: dict[str, list[str]]) -> dict[str, Any]:
    """Hits, false tables and missed tables of one PDF."""
    outcome = parse_file(path, ParseOptions(hwpx_apply_spacing=False))
    document = outcome.document
    found: dict[int, list[str]] = defaultdict(list)
    for table in document.tables if document else []:
        found[table.page or 0].append(_squash(f"{table.caption} {table.markdown}"))
    hits = false = missed = 0
    wrong: list[str] = []
    for page in sorted(set(found) | {int(p) for p in truth}):
        keys = [_squash(key) for key in truth.get(str(page), [])]
        for markdown in found.get(page, []):
            key = next((k for k in keys if k in markdown), None)
            if key is None:
                false += 1
                wrong.append(f"false table on page {page}: {markdown[:60]}")
            else:
                hits += 1
                keys.remove(key)
        missed += len(keys)
        wrong += [f"missed on page {page}: {key}" for key in keys]
    return {"file": path.name, "labelled": sum(map(len, truth.values())), "found": hits + false,
            "hits": hits, "false": false, "missed": missed, "notes": wrong}


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    hits, found, labelled = (sum(r[k] for r in rows) for k in ("hits", "found", "labelled"))
    return {"labelled": labelled, "found": found, "hits": hits,
            "precision": round(hits / found, 3) if found else None,
            "recall": round(hits / labelled, 3) if labelled else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pdf_tables.json")
    args = parser.parse_args()
    truth = json.loads((DATA / "table_truth.json").read_text(encoding="utf-8"))
    results: dict[str, Any] = {}
    for group, folder in (("corpus", args.corpus), ("built", DATA)):
        rows = [score(folder / name, pages) for name, pages in truth[group].items() if (folder / name).is_file()]
        results[group] = {"files": rows, "total": _totals(rows)}
        print(f"{group}: {len(rows)} PDFs")
        print(f"  {'file':<60} {'labelled':>8} {'found':>5} {'hits':>4} {'false':>5} {'missed':>6}")
        for r in rows:
            print(f"  {r['file'][:60]:<60} {r['labelled']:>8} {r['found']:>5} {r['hits']:>4} {r['false']:>5} {r['missed']:>6}")
            for note in r["notes"]:
                print(f"      {note}")
        t = results[group]["total"]
        print(f"  precision {t['precision']}  recall {t['recall']}  ({t['hits']} hits, {t['found']} found, {t['labelled']} labelled)\n")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
