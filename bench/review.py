"""What one review decision costs with 10,000 pairs: the log line and the rebuild of qa_reviewed.json.

    python bench/review.py [--pairs N] [--decisions K] [--json OUT]

Pairs are Korean and English, ~80-character questions and ~300-character answers. For each share
of pairs already decided (10%, 50%, 100% approved), K more decisions are made and timed:
- `decision`: ReviewSession.approve as the review screen calls it: log line appended and fsynced,
  then qa_reviewed.json rebuilt from per-pair bytes kept since each verdict changed (the method used);
- `write_json rebuild`: the plain way: every kept pair dumped again and `Workspace.write_json`;
- `open`: a new session replaying the whole log (what reopening the review costs).
Times are the median over K (milliseconds); disk fsync dominates on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from slm_factory.curation.review_log import ReviewSession  # noqa: E402
from slm_factory.records import QAPair  # noqa: E402
from slm_factory.workspace import Workspace  # noqa: E402


def make_pairs(count: int) -> list[QAPair]:
    pairs = []
    for i in range(count):
        if i % 2:
            question = f"2024년 청년 주거 지원 사업 {i}번 항목의 신청 기한과 대상은 무엇입니까?"
            answer = f"{i}번 항목은 만 19세에서 34세 사이의 무주택 청년을 대상으로 하며, " * 4
        else:
            question = f"What is the application deadline of item {i} of the 2024 youth housing subsidy?"
            answer = f"Item {i} is open to people aged 19 to 34 who own no home; apply by 31 March. " * 4
        pairs.append(QAPair(instruction=question, output=answer, source_doc=f"doc{i % 40}.pdf",
                            doc_id=f"d{i % 40}", chunk_id=f"d{i % 40}:{i % 97}", category="factual",
                            score=float(1 + i % 5), score_reason="grounded in the source"))
    return pairs


def measure(pairs: list[QAPair], decided_share: float, decisions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        workspace = Workspace(Path(folder))
        session = ReviewSession(pairs, workspace)
        already = int(len(pairs) * decided_share) - decisions
        # The log as a long session leaves it, written at once (no rebuild per line).
        session.log.extend({"seq": seq, "pair_id": pair.id, "action": "approve", "time": ""}
                           for seq, pair in enumerate(pairs[:already], start=1))
        started = time.perf_counter()
        session = ReviewSession(pairs, workspace)
        open_s = time.perf_counter() - started
        decision_s, naive_s = [], []
        for pair in pairs[already:already + decisions]:
            started = time.perf_counter()
            session.approve(pair.id)
            decision_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            workspace.write_json("qa_reviewed", [p.model_dump() for p in session.reviewed()])
            naive_s.append(time.perf_counter() - started)
        size = workspace.path("qa_reviewed").stat().st_size
    return {"decided": decided_share, "open_ms": open_s * 1000, "decision_ms": statistics.median(decision_s) * 1000,
            "write_json_rebuild_ms": statistics.median(naive_s) * 1000, "qa_reviewed_mb": size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=20)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "review.json")
    args = parser.parse_args()
    pairs = make_pairs(args.pairs)
    rows = [measure(pairs, share, args.decisions) for share in (0.1, 0.5, 1.0)]
    print(f"{args.pairs} pairs, median of {args.decisions} decisions (ms)")
    print(f"{'decided':>8} {'open':>8} {'decision':>9} {'write_json rebuild':>19} {'qa_reviewed MB':>15}")
    for row in rows:
        print(f"{row['decided']:>8.0%} {row['open_ms']:>8.1f} {row['decision_ms']:>9.1f} "
              f"{row['write_json_rebuild_ms']:>19.1f} {row['qa_reviewed_mb']:>15.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"pairs": args.pairs, "decisions": args.decisions, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
