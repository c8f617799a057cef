"""What a person decided about each QA pair, and qa_reviewed.json built from it.

Every decision (approve, reject with a reason, edit, undo) is appended to an append-only log
(`qa_reviewed.decisions.jsonl`, each line flushed and fsynced) the moment it is made, and
qa_reviewed.json is rebuilt atomically from the log and the input pairs after each one. So a
crash or a quit loses nothing, and the log alone says what the reviewer did and when.

No UI here: the review screen (slm_factory.tui.review) only calls ReviewSession.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from slm_factory.records import QAPair
from slm_factory.workspace import ARTIFACTS, ArtifactError, Checkpoint, Workspace, read_records, write_atomic

if TYPE_CHECKING:
    from slm_factory.pipeline import StageContext

Action = Literal["approve", "reject", "edit", "undo"]
Status = Literal["undecided", "approved", "rejected", "edited"]
STATUSES: tuple[Status, ...] = ("undecided", "approved", "rejected", "edited")
ACTIONS: tuple[Action, ...] = ("approve", "reject", "edit", "undo")
QUICK_REASONS = ("wrong", "not in source", "unclear question", "duplicate")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Decision:
    """One line of the log. `seq` numbers lines in the order they were made; an undo names the
    `seq` it takes back, so replaying the log never depends on guessing what was undone."""

    seq: int
    pair_id: str
    action: Action
    time: str
    reason: str = ""
    question: str | None = None
    answer: str | None = None
    undoes: int | None = None

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"seq": self.seq, "pair_id": self.pair_id, "action": self.action, "time": self.time}
        if self.action == "reject":
            line["reason"] = self.reason
        if self.action == "edit":
            line["question"], line["answer"] = self.question, self.answer
        if self.action == "undo":
            line["undoes"] = self.undoes
        return line

    @classmethod
    def from_json(cls, line: dict[str, Any]) -> Decision | None:
        """None for a line that is not a decision (hand-edited, or from another tool)."""
        action, seq, pair_id = line.get("action"), line.get("seq"), line.get("pair_id")
        if action not in ACTIONS or not isinstance(seq, int) or not isinstance(pair_id, str):
            return None
        if action == "edit" and not (isinstance(line.get("question"), str) and isinstance(line.get("answer"), str)):
            return None
        if action == "undo" and not isinstance(line.get("undoes"), int):
            return None
        return cls(seq, pair_id, action, str(line.get("time", "")), str(line.get("reason", "")),
                   line.get("question"), line.get("answer"), line.get("undoes"))


@dataclass(frozen=True)
class Verdict:
    """Where a pair stands: its status, the reject reason, and the edited text if any."""

    status: Status = "undecided"
    reason: str = ""
    question: str | None = None
    answer: str | None = None


UNDECIDED = Verdict()


def in_force(decisions: Iterable[Decision]) -> dict[int, Decision]:
    """The decisions that still count, by seq in the order made: an undo takes back the one it
    names (an undo of something already undone, or unknown, changes nothing)."""
    active: dict[int, Decision] = {}
    for decision in decisions:
        if decision.action == "undo":
            active.pop(decision.undoes, None)  # type: ignore[arg-type]
        else:
            active[decision.seq] = decision
    return active


def verdict_of(pair: QAPair, decisions: Iterable[Decision]) -> Verdict:
    """A pair's verdict from its decisions in force, oldest first. The last approve or reject
    counts; an edit approves the edited text; the latest edited text stays with the pair through
    later approvals and rejections (what the reviewer sees is what is approved). Text edited back
    to the original is no edit."""
    verdict: str | None = None
    reason, question, answer = "", None, None
    for decision in decisions:
        if decision.action == "reject":
            verdict, reason = "reject", decision.reason
        elif decision.action in ("approve", "edit"):
            verdict, reason = "approve", ""
        if decision.action == "edit":
            question, answer = decision.question, decision.answer
    if (question, answer) == (pair.instruction, pair.output):
        question = answer = None
    if verdict is None:
        return UNDECIDED
    if verdict == "reject":
        return Verdict("rejected", reason, question, answer)
    return Verdict("edited" if question is not None else "approved", "", question, answer)


def reviewed_pair(pair: QAPair, verdict: Verdict) -> QAPair | None:
    """The pair as it goes into qa_reviewed.json, or None when it stays out. An edited pair keeps
    its id and parent_id (so lineage and later reviews still find it) and becomes origin
    "reviewed"."""
    if verdict.status == "approved":
        return pair
    if verdict.status == "edited":
        return pair.model_copy(update={"instruction": verdict.question, "output": verdict.answer, "origin": "reviewed"})
    return None


def read_log(checkpoint: Checkpoint) -> list[Decision]:
    """The log's decisions in the order made; a torn last line (killed mid-write) and lines that
    are not decisions are skipped."""
    decisions = (Decision.from_json(line) for line in checkpoint.read(key="seq"))
    return [decision for decision in decisions if decision is not None]


class ReviewSession:
    """The pairs under review and every decision about them, kept on disk as they are made.

    Probes (origin "probe", or an id in qa_test.json) are never reviewed into training: they are
    left out of `pairs`. Decisions in the log for ids not in the input (the pairs changed since)
    are ignored and counted in `vanished`.
    """

    def __init__(self, pairs: list[QAPair], workspace: Workspace, probe_ids: Iterable[str] = (),
                 clock: Callable[[], str] = _now) -> None:
        self.workspace = workspace
        self.clock = clock
        probes = set(probe_ids)
        unique: dict[str, QAPair] = {}
        for pair in pairs:
            if pair.origin != "probe" and pair.id not in probes:
                unique.setdefault(pair.id, pair)
        self.pairs = list(unique.values())
        self.left_out = len(pairs) - len(self.pairs)  # probes and repeated ids
        self.position = {pair.id: index for index, pair in enumerate(self.pairs)}
        self.log = Checkpoint(workspace.path("review_log"))
        self._active: dict[int, Decision] = {}
        self._by_pair: dict[str, list[int]] = {}
        self._verdicts: dict[str, Verdict] = {}
        self._status_counts: Counter[str] = Counter(undecided=len(self.pairs))
        self._fragments: dict[str, bytes] = {}  # serialized qa_reviewed records, by pair id
        self._next_seq = 1
        self._load()

    # -- reading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        decisions = read_log(self.log)
        self._next_seq = max((d.seq for d in decisions), default=0) + 1
        self._active = in_force(decisions)
        for seq, decision in self._active.items():
            self._by_pair.setdefault(decision.pair_id, []).append(seq)
        for pair_id in self._by_pair:
            if pair_id in self.position:
                self._refresh(pair_id)

    @property
    def vanished(self) -> int:
        """Pairs with decisions in force that are not in the input any more."""
        return sum(1 for pair_id in self._by_pair if pair_id not in self.position)

    def verdict(self, pair_id: str) -> Verdict:
        return self._verdicts.get(pair_id, UNDECIDED)

    def counts(self) -> dict[str, int]:
        return {status: self._status_counts[status] for status in STATUSES}

    def decided(self) -> int:
        return len(self.pairs) - self._status_counts["undecided"]

    def resume_position(self) -> int:
        """Where the reviewer stopped: the first undecided pair after the pair of the last
        decision in force (from the start when none is after it); that pair when all are decided."""
        last = next((self.position[d.pair_id] for d in reversed(self._active.values())
                     if d.pair_id in self.position), -1)
        order = [*range(last + 1, len(self.pairs)), *range(0, last + 1)]
        return next((i for i in order if self.verdict(self.pairs[i].id).status == "undecided"), max(last, 0))

    def reviewed(self) -> list[QAPair]:
        """What qa_reviewed.json holds: approved and edited pairs, in input order."""
        kept = (reviewed_pair(pair, self.verdict(pair.id)) for pair in self.pairs)
        return [pair for pair in kept if pair is not None]

    # -- deciding --------------------------------------------------------------------------------
    def approve(self, pair_id: str) -> Verdict:
        return self._decide(pair_id, "approve")

    def reject(self, pair_id: str, reason: str) -> Verdict:
        return self._decide(pair_id, "reject", reason=" ".join(reason.split()))

    def edit(self, pair_id: str, question: str, answer: str) -> Verdict:
        question, answer = question.strip(), answer.strip()
        if not question or not answer:
            raise ValueError("the question and the answer must not be empty")
        return self._decide(pair_id, "edit", question=question, answer=answer)

    def undo(self) -> str | None:
        """Take back the latest decision in force about a pair under review; return that pair's
        id (None when there is nothing to undo). Repeated undos walk back through the history."""
        target = next((d for d in reversed(self._active.values()) if d.pair_id in self.position), None)
        if target is None:
            return None
        self._append(Decision(self._next_seq, target.pair_id, "undo", self.clock(), undoes=target.seq))
        del self._active[target.seq]
        self._by_pair[target.pair_id].remove(target.seq)
        if not self._by_pair[target.pair_id]:
            del self._by_pair[target.pair_id]
        self._refresh(target.pair_id)
        self.save()
        return target.pair_id

    def _decide(self, pair_id: str, action: Action, **fields: Any) -> Verdict:
        if pair_id not in self.position:
            raise KeyError(f"no pair {pair_id!r} under review")
        decision = Decision(self._next_seq, pair_id, action, self.clock(), **fields)
        self._append(decision)
        self._active[decision.seq] = decision
        self._by_pair.setdefault(pair_id, []).append(decision.seq)
        self._refresh(pair_id)
        self.save()
        return self.verdict(pair_id)

    def _append(self, decision: Decision) -> None:
        self.log.append(decision.to_json())  # on disk (fsynced) before anything else changes
        self._next_seq = decision.seq + 1

    def _refresh(self, pair_id: str) -> None:
        pair = self.pairs[self.position[pair_id]]
        old = self.verdict(pair_id)
        new = verdict_of(pair, (self._active[seq] for seq in self._by_pair.get(pair_id, [])))
        self._status_counts[old.status] -= 1
        self._status_counts[new.status] += 1
        if new == UNDECIDED:
            self._verdicts.pop(pair_id, None)
        else:
            self._verdicts[pair_id] = new
        kept = reviewed_pair(pair, new)
        if kept is None:
            self._fragments.pop(pair_id, None)
        else:
            self._fragments[pair_id] = _fragment(kept)

    # -- writing ---------------------------------------------------------------------------------
    def save(self) -> None:
        """Rebuild qa_reviewed.json from the decisions in force (atomic). With no decision in
        force about any pair under review it is removed, so later stages fall back to the pairs
        themselves instead of training on an empty set."""
        target = self.workspace.path("qa_reviewed")
        if not any(pair_id in self.position for pair_id in self._by_pair):
            target.unlink(missing_ok=True)
            return
        records = [self._fragments[pair.id] for pair in self.pairs if pair.id in self._fragments]
        # Each record is serialized once, when its verdict changes: a rebuild only joins bytes.
        write_atomic(target, b"[\n" + b",\n".join(records) + b"\n]\n" if records else b"[]\n")


def _fragment(pair: QAPair) -> bytes:
    text = json.dumps(pair.model_dump(), ensure_ascii=False, indent=2)
    return ("  " + text.replace("\n", "\n  ")).encode("utf-8")


# -- opening a review ----------------------------------------------------------------------------


def open_review(ctx: StageContext) -> tuple[str, ReviewSession]:
    """The session for `slm-factory review`: the --data file's pairs, else the newest pairs
    artifact (the output of the last enabled stage that makes pairs), with the project's log.
    Any problem a user can fix raises StageError with one line naming the file."""
    from slm_factory.pipeline import StageError

    label, pairs = _review_input(ctx)
    reviewed, log = ctx.workspace.path("qa_reviewed"), ctx.workspace.path("review_log")
    if reviewed.exists() and not log.exists():
        raise StageError(f"{reviewed} exists without its decision log {log.name} (from another tool or version?); "
                         "move it away to start a review")
    try:
        probes = {p.id for p in read_records(ctx.workspace.path("qa_test"), QAPair, ARTIFACTS["qa_test"])} \
            if ctx.workspace.path("qa_test").exists() else set()
    except ArtifactError as error:
        raise StageError(str(error)) from None
    session = ReviewSession(pairs, ctx.workspace, probes)
    if not session.pairs:
        raise StageError(f"{label}: all {len(pairs)} pairs are held-out probes, which are never reviewed into training"
                         if pairs else f"{label} holds no pairs to review")
    if session.decided():  # the input may have changed since: qa_reviewed.json follows it now
        session.save()
    return label, session


def _review_input(ctx: StageContext) -> tuple[str, list[QAPair]]:
    from slm_factory.pipeline import STAGES, StageError, stage_named

    data = ctx.options.get("data")
    if data:
        path, label = Path(data), str(data)
        if not path.is_file():
            raise StageError(f"--data {data}: no such file")
    else:
        stage = next((s for s in reversed(STAGES) if s.makes_pairs and s.enabled(ctx.config)), stage_named("generate"))
        path, label = ctx.workspace.path(stage.output), ARTIFACTS[stage.output]
        if not path.exists():
            raise StageError(f"{label} is missing; run `slm-factory {stage.name}` first (or pass --data FILE)")
    try:
        return label, read_records(path, QAPair, label)
    except ArtifactError as error:
        raise StageError(str(error)) from None


def reviewed_summary(workspace: Workspace) -> dict[str, Any] | None:
    """What `status` says about the review: qa_reviewed.json's pairs and time, and the decisions
    logged; None when nothing was reviewed."""
    path = workspace.path("qa_reviewed")
    if not path.is_file():
        return None
    try:
        items = len(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        items = None
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
    return {"artifact": ARTIFACTS["qa_reviewed"], "items": items, "modified": modified,
            "decisions": len(read_log(Checkpoint(workspace.path("review_log"))))}
