"""The review screen driven by Textual's Pilot, its decision log checked without the UI, and the
`review` command.

Every Pilot test looks at what is on disk after the keys it presses: the decision log and
qa_reviewed.json must say everything at once, because a crash may come at any moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import yaml

from slm_factory.curation.review_log import QUICK_REASONS, ReviewSession, read_log
from slm_factory.records import QAPair
from slm_factory.workspace import Checkpoint, Workspace
from tests.generation.test_resume import generate, sample_project

textual = pytest.importorskip("textual")

from textual.geometry import Region  # noqa: E402
from textual.widgets import Select, Static  # noqa: E402

from slm_factory.tui.review import Filter, ReviewApp, answer_terms, highlighted  # noqa: E402

CHUNKS = {
    "d1:0": "2024년 청년 주거 지원금의 신청 기한은 3월 31일이며, 만 19세부터 34세까지 신청할 수 있다.",
    "d2:0": "The 2024 youth housing subsidy accepts applications until 31 March from people aged 19 to 34.",
}


def sample_pairs() -> list[QAPair]:
    """Six pairs: Korean and English, two categories, two documents, scores 1-5 and one unscored."""
    rows = [
        ("2024년 청년 주거 지원금의 신청 기한은 언제입니까?", "신청 기한은 3월 31일입니다.", "d1", "factual", 1.0),
        ("청년 주거 지원금은 몇 세부터 신청할 수 있습니까?", "만 19세부터 34세까지 신청할 수 있습니다.", "d1", "procedural", 2.0),
        ("When does the 2024 youth housing subsidy close?", "Applications close on 31 March.", "d2", "factual", 3.0),
        ("Who may apply for the 2024 youth housing subsidy?", "People aged 19 to 34.", "d2", "procedural", 4.0),
        ("청년 주거 지원금은 누가 신청합니까?", "만 19세부터 34세 청년입니다.", "d1", "factual", 5.0),
        ("What does the 2024 youth housing subsidy [1] cover?", "Housing costs of young people.", "d2", "factual", None),
    ]
    return [QAPair(instruction=q, output=a, doc_id=doc, chunk_id=f"{doc}:0", source_doc=f"{doc}.txt",
                   category=category, score=score, score_reason="grounded" if score else "")
            for q, a, doc, category, score in rows]


def make_app(folder: Path, pairs: list[QAPair] | None = None) -> ReviewApp:
    session = ReviewSession(pairs if pairs is not None else sample_pairs(), Workspace(folder))
    return ReviewApp(session, lambda pair: CHUNKS.get(pair.chunk_id, ""), "qa_alpaca.json")


def drive(app: ReviewApp, script: Callable[[Any], Coroutine[Any, Any, None]], size: tuple[int, int] = (120, 32)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(main())


def shown(app: ReviewApp, selector: str) -> str:
    """What a widget puts on the screen, as text."""
    widget = app.query_one(selector, Static)
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, widget.size.width, widget.size.height)))


def reviewed(folder: Path) -> list[dict[str, Any]] | None:
    path = Workspace(folder).path("qa_reviewed")
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def reviewed_questions(folder: Path) -> list[str] | None:
    records = reviewed(folder)
    return None if records is None else [record["instruction"] for record in records]


def type_keys(text: str) -> list[str]:
    return ["space" if ch == " " else ch for ch in text]


# -- Pilot: decisions ---------------------------------------------------------------------------


def test_approve_reject_edit_undo_rewrite_qa_reviewed_at_each_key(tmp_path: Path):
    pairs = sample_pairs()
    app = make_app(tmp_path, pairs)

    async def script(pilot) -> None:
        assert reviewed(tmp_path) is None  # nothing decided, nothing written
        await pilot.press("a")
        assert reviewed_questions(tmp_path) == [pairs[0].instruction]
        await pilot.press("r", "2")  # quick pick: not in source
        assert reviewed_questions(tmp_path) == [pairs[0].instruction]
        assert app.session.verdict(pairs[1].id).reason == QUICK_REASONS[1]
        await pilot.press("r", "tab", *type_keys("too vague"), "enter")  # a typed reason
        assert app.session.verdict(pairs[2].id).reason == "too vague"
        assert "REJECTED: too vague" in (await _back_one(pilot, app))
        await pilot.press("e", "f7", *type_keys("Who can apply?"), "tab", "f7",
                          *type_keys("Anyone aged 19 to 34."), "ctrl+s")
        edited = reviewed(tmp_path)
        assert [r["instruction"] for r in edited] == [pairs[0].instruction, "Who can apply?"]
        assert edited[1]["output"] == "Anyone aged 19 to 34." and edited[1]["origin"] == "reviewed"
        assert edited[1]["id"] == pairs[3].id and edited[0]["origin"] == "generated"
        assert "Who can apply?" in shown(app, "#question") and "EDITED" in shown(app, "#verdict")
        await pilot.press("u")  # the edit
        assert reviewed_questions(tmp_path) == [pairs[0].instruction]
        await pilot.press("u", "u")  # both rejections
        assert app.session.counts()["rejected"] == 0
        await pilot.press("u")  # the approval: nothing decided, so no qa_reviewed.json
        assert reviewed(tmp_path) is None and app.current.id == pairs[0].id
        await pilot.press("u")
        assert app.session.counts()["undecided"] == len(pairs)

    drive(app, script)
    actions = [d.action for d in read_log(Checkpoint(Workspace(tmp_path).path("review_log")))]
    assert actions == ["approve", "reject", "reject", "edit", "undo", "undo", "undo", "undo"]


async def _back_one(pilot, app: ReviewApp) -> str:
    await pilot.press("left")
    text = shown(app, "#verdict")
    await pilot.press("right")
    return text


def test_keys_typed_while_editing_or_in_a_dialog_decide_nothing(tmp_path: Path):
    app = make_app(tmp_path)

    async def script(pilot) -> None:
        await pilot.press("e", "end", *type_keys(" a r u q"), "escape")  # cancelled edit
        assert app.session.decided() == 0 and not app.editing and app.is_running
        await pilot.press("r", "q", "a", "tab", *type_keys("aq"), "escape")  # cancelled rejection
        assert app.session.decided() == 0 and app.is_running and len(app.screen_stack) == 1
        await pilot.press("e", "ctrl+s")  # saved unchanged: no decision
        assert app.session.decided() == 0 and reviewed(tmp_path) is None
        await pilot.press("e", "f7", "backspace", "ctrl+s")  # an empty question is refused
        assert app.editing and app.session.decided() == 0

    drive(app, script)


# -- Pilot: a crash at any moment loses nothing --------------------------------------------------

# (keys, the 0-based pair the reopened screen starts at). After the last step the last decision
# in force is the approval of pair 0, so the review resumes at pair 1.
STEPS = [
    (["a"], 1),
    (["a"], 2),
    (["r", "3"], 3),
    (["left", "left", "r", "1"], 3),  # pair 1 rejected after its approval
    (["u"], 3),  # pair 1 approved again; the last decision in force is pair 2's rejection
    (["u"], 2),  # pair 2 undecided; the last one is pair 1's approval
    (["u"], 1),
]


def test_reopening_from_the_files_after_any_key_continues_where_the_reviewer_stopped(tmp_path: Path):
    live = tmp_path / "live"
    app = make_app(live)
    snapshots: list[dict[str, bytes]] = []

    async def script(pilot) -> None:
        for keys, _ in STEPS:
            await pilot.press(*keys)
            # What a kill -9 right now would leave: the files as they are, no shutdown code run.
            snapshots.append({p.name: p.read_bytes() for p in live.iterdir() if p.is_file()})

    drive(app, script)
    for step, (snapshot, (_, resume_at)) in enumerate(zip(snapshots, STEPS)):
        folder = tmp_path / f"after{step}"
        folder.mkdir()
        for name, data in snapshot.items():
            (folder / name).write_bytes(data)
        session = ReviewSession(sample_pairs(), Workspace(folder))
        assert session.resume_position() == resume_at, step
    final = make_app(tmp_path / f"after{len(STEPS) - 1}")

    async def reopened(pilot) -> None:
        assert app.session.counts() == final.session.counts()
        assert final.cursor == STEPS[-1][1] and "UNDECIDED" in shown(final, "#verdict")
        await pilot.press("g", "1", "enter")  # earlier decisions are shown
        assert "APPROVED" in shown(final, "#verdict")

    drive(final, reopened)


def test_killed_review_process_loses_no_decision(tmp_path: Path):
    """A real kill -9 of a process in the middle of a Pilot session."""
    pairs_file = tmp_path / "pairs.json"
    pairs_file.write_text(json.dumps([p.model_dump() for p in sample_pairs()], ensure_ascii=False), encoding="utf-8")
    script = tmp_path / "review_and_die.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, os, signal
        from pathlib import Path
        from slm_factory.curation.review_log import ReviewSession
        from slm_factory.records import QAPair
        from slm_factory.tui.review import ReviewApp
        from slm_factory.workspace import Workspace, read_records

        pairs = read_records(Path({str(pairs_file)!r}), QAPair)
        app = ReviewApp(ReviewSession(pairs, Workspace(Path({str(tmp_path / 'out')!r}))), lambda pair: "", "x")

        async def main():
            async with app.run_test() as pilot:
                await pilot.press("a", "a", "r", "4", "e", "f7", "Q", "ctrl+s", "right", "a", "u")
                os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    pairs = sample_pairs()
    session = ReviewSession(pairs, Workspace(tmp_path / "out"))
    statuses = [session.verdict(p.id).status for p in pairs]
    assert statuses == ["approved", "approved", "rejected", "edited", "undecided", "undecided"]
    assert session.verdict(pairs[2].id).reason == "duplicate"
    assert session.resume_position() == 4  # after pair 3, the last decision still in force
    assert [r["instruction"] for r in reviewed(tmp_path / "out")] == [pairs[0].instruction, pairs[1].instruction, "Q"]


# -- Pilot: moving and filtering -----------------------------------------------------------------


async def walk(pilot, app: ReviewApp) -> list[str]:
    """The ids of every pair the screen shows, from the first to the last."""
    await pilot.press("home")
    ids = [app.current.id] if app.current else []
    for _ in range(len(app.view) - 1):
        await pilot.press("right")
        ids.append(app.current.id)
    return ids


async def choose(pilot, **values: str) -> None:
    """Open the filter dialog, pick `values` in its lists, apply."""
    await pilot.press("f")
    for name, value in values.items():
        pilot.app.screen.query_one(f"#{name}", Select).value = value
    await pilot.click("#apply")


def matching(pairs: list[QAPair], keep: Callable[[QAPair], bool]) -> list[str]:
    return [p.id for p in pairs if keep(p)]


def test_filters_by_score_and_category_show_only_matching_pairs(tmp_path: Path):
    pairs = sample_pairs()
    app = make_app(tmp_path, pairs)

    async def script(pilot) -> None:
        await pilot.press("f", "3", "enter")  # score below 3
        assert await walk(pilot, app) == matching(pairs, lambda p: p.score is not None and p.score < 3)
        assert "score < 3" in shown(app, "#statusbar") and "2 shown" in shown(app, "#statusbar")
        await choose(pilot, category="factual")  # with the score filter still on
        assert await walk(pilot, app) == matching(pairs, lambda p: p.score is not None and p.score < 3 and p.category == "factual")
        await pilot.press("f")
        await pilot.click("#clear")
        assert await walk(pilot, app) == [p.id for p in pairs]
        app.apply_filter(Filter(score_below=0.5))
        await pilot.pause()
        assert app.current is None and "No pair matches" in shown(app, "#verdict")
        await pilot.press("a", "r", "e", "space")  # nothing to act on
        assert app.session.decided() == 0 and len(app.screen_stack) == 1

    drive(app, script)


def test_filters_by_document_and_decision_show_only_matching_pairs(tmp_path: Path):
    pairs = sample_pairs()
    app = make_app(tmp_path, pairs)
    in_d2 = matching(pairs, lambda p: p.source_doc == "d2.txt")

    async def script(pilot) -> None:
        await choose(pilot, document="d2.txt")
        assert await walk(pilot, app) == in_d2
        await pilot.press("home", "a")  # approve the first pair shown
        await choose(pilot, decision="undecided")
        assert await walk(pilot, app) == in_d2[1:]
        await pilot.press("a")  # the decided pair (the last shown) leaves an "undecided" view
        assert app.view == [app.session.position[in_d2[1]]] and app.current.id == in_d2[1]
        await pilot.press("u")  # its undo brings it back into view
        assert app.current.id == in_d2[2] and len(app.view) == 2

    drive(app, script)


def test_jump_and_next_undecided(tmp_path: Path):
    pairs = sample_pairs()
    app = make_app(tmp_path, pairs)

    async def script(pilot) -> None:
        await pilot.press("g", "4", "enter")
        assert app.current.id == pairs[3].id and "#4" in shown(app, "#verdict")
        await pilot.press("g", "9", "9", "enter")  # out of range: the dialog stays
        assert len(app.screen_stack) == 2
        await pilot.press("escape")
        assert app.current.id == pairs[3].id
        await pilot.press("a", "a", "g", "1", "enter", "a")  # pairs 4, 5, 1 decided
        await pilot.press("g", "4", "enter", "space")  # the next undecided after pair 4 wraps round
        assert app.current.id == pairs[5].id
        await pilot.press("space")
        assert app.current.id == pairs[1].id
        await pilot.press("left", "left")
        assert app.current.id == pairs[0].id
        app.apply_filter(Filter(category="procedural"))
        await pilot.press("g", "3", "enter")  # pair #3 is factual: the filter gives way
        assert app.current.id == pairs[2].id and app.filter == Filter()

    drive(app, script)


# -- Pilot: Korean text on screen ------------------------------------------------------------------


def test_korean_pair_and_source_are_rendered_with_the_answer_marked(tmp_path: Path):
    pairs = sample_pairs()
    app = make_app(tmp_path, pairs)

    async def script(pilot) -> None:
        assert pairs[0].instruction in shown(app, "#question")
        assert pairs[0].output in shown(app, "#answer")
        assert CHUNKS["d1:0"].split() == shown(app, "#chunk").split()  # wrapped, every word whole
        assert "category: factual" in shown(app, "#details") and "document: d1.txt" in shown(app, "#details")
        assert "score: 1 (grounded)" in shown(app, "#details")
        chunk = app.query_one("#chunk", Static)
        marked = {seg.text for strip in chunk.render_lines(Region(0, 0, chunk.size.width, chunk.size.height))
                  for seg in strip if seg.style is not None and seg.style.bold}  # the marked words
        assert marked == {"신청", "기한", "31"}
        await pilot.press("g", "6", "enter")  # brackets are text, not markup
        assert "[1]" in shown(app, "#question") and "score" not in shown(app, "#details")

    drive(app, script)


def test_answer_terms_find_korean_stems_and_skip_filler():
    assert set(answer_terms("신청 기한은 3월 31일입니다.")) == {"신청", "기한", "31", "일입니"}
    assert answer_terms("지원금은") == ["지원금"]
    assert answer_terms("that is the rule which they must keep") == ["keep", "rule"]
    assert "March" in answer_terms("close on 31 March") and "31" in answer_terms("close on 31 March")
    text = highlighted("Close: 31 MARCH.", "closes on 31 March")
    assert [text.plain[span.start:span.end] for span in text.spans] == ["31", "MARCH"]


# -- the log and qa_reviewed.json, without the UI ------------------------------------------------


def _model_reviewed(pairs: list[QAPair], stack: list[tuple[int, str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The plain meaning of a decision history: statuses and qa_reviewed records, from scratch."""
    statuses, records = [], []
    for index, pair in enumerate(pairs):
        verdict, text = None, None
        for target, action, payload in stack:
            if target != index:
                continue
            verdict = "reject" if action == "reject" else "approve"
            if action == "edit":
                text = payload
        if text == (pair.instruction, pair.output):
            text = None
        status = ("undecided" if verdict is None else "rejected" if verdict == "reject"
                  else "edited" if text else "approved")
        statuses.append(status)
        if status == "approved":
            records.append(pair.model_dump())
        elif status == "edited":
            records.append(pair.model_copy(update={"instruction": text[0], "output": text[1], "origin": "reviewed"}).model_dump())
    return statuses, records


def test_log_replay_matches_the_plain_meaning_of_any_decision_history(tmp_path: Path):
    texts = ["짧은 질문?", "Who may apply?", "  공백이 있는 답  ", "만 19세부터 34세까지."]
    for seed in range(40):
        rng = random.Random(seed)
        pairs = [QAPair(instruction=f"질문 {seed}-{i}?", output=f"answer {i}", category=rng.choice("ab"),
                        parent_id=rng.choice(["", "p1"])) for i in range(rng.randint(2, 6))]
        folder = tmp_path / str(seed)
        session = ReviewSession(pairs, Workspace(folder))
        stack: list[tuple[int, str, Any]] = []
        for _ in range(rng.randint(1, 30)):
            action, target = rng.choice(["approve", "reject", "edit", "undo", "undo"]), rng.randrange(len(pairs))
            pair = pairs[target]
            if action == "undo":
                undone = session.undo()
                assert undone == (pairs[stack.pop()[0]].id if stack else None)
                continue
            if action == "approve":
                session.approve(pair.id)
                stack.append((target, "approve", None))
            elif action == "reject":
                session.reject(pair.id, rng.choice(QUICK_REASONS))
                stack.append((target, "reject", None))
            else:
                question, answer = (pair.instruction, pair.output) if rng.random() < 0.2 else (rng.choice(texts), rng.choice(texts))
                session.edit(pair.id, question, answer)
                stack.append((target, "edit", (question.strip(), answer.strip())))
            statuses, records = _model_reviewed(pairs, stack)
            assert [session.verdict(p.id).status for p in pairs] == statuses, seed
            on_disk = reviewed(folder)
            assert (on_disk is None) == (not stack) and (on_disk or []) == records, seed
            again = ReviewSession(pairs, Workspace(folder))
            assert [again.verdict(p.id) for p in pairs] == [session.verdict(p.id) for p in pairs]
            assert again.counts() == session.counts() and again.reviewed() == session.reviewed()


def test_a_torn_last_line_is_skipped_and_the_log_goes_on(tmp_path: Path):
    pairs = sample_pairs()
    workspace = Workspace(tmp_path)
    session = ReviewSession(pairs, workspace)
    session.approve(pairs[0].id)
    session.reject(pairs[1].id, "wrong")
    log = workspace.path("review_log")
    with log.open("ab") as handle:  # killed in the middle of writing a third line
        handle.write(b'{"seq": 3, "pair_id": "' + pairs[2].id.encode() + b'", "act')
    reopened = ReviewSession(pairs, workspace)
    assert reopened.counts()["approved"] == 1 and reopened.counts()["rejected"] == 1
    reopened.approve(pairs[2].id)
    assert ReviewSession(pairs, workspace).counts()["approved"] == 2
    assert [d.seq for d in read_log(Checkpoint(log))] == [1, 2, 3]


def test_decisions_for_pairs_gone_from_the_input_are_ignored_and_counted(tmp_path: Path):
    pairs = sample_pairs()
    workspace = Workspace(tmp_path)
    session = ReviewSession(pairs, workspace)
    for pair in pairs[:4]:
        session.approve(pair.id)
    smaller = ReviewSession(pairs[2:], workspace)  # pairs 0 and 1 were dropped upstream since
    assert smaller.vanished == 2 and smaller.counts()["approved"] == 2
    assert smaller.resume_position() == 2  # pair 4 of the old list
    assert smaller.undo() == pairs[3].id and smaller.undo() == pairs[2].id
    assert smaller.undo() is None  # never undoes a decision about a pair it does not show
    assert reviewed(tmp_path) is None
    back = ReviewSession(pairs, workspace)  # the old input again: its decisions were kept
    assert [back.verdict(p.id).status for p in pairs[:4]] == ["approved", "approved", "undecided", "undecided"]


def test_probes_are_never_reviewed(tmp_path: Path):
    pairs = sample_pairs()
    probe = pairs[0].model_copy(update={"id": "probe1", "origin": "probe", "parent_id": pairs[0].id})
    session = ReviewSession([*pairs, probe, pairs[1]], Workspace(tmp_path), probe_ids={pairs[2].id})
    assert [p.id for p in session.pairs] == [p.id for i, p in enumerate(pairs) if i != 2]
    assert session.left_out == 3  # the probe, the id in qa_test.json, the repeated pair
    with pytest.raises(KeyError):
        session.approve("probe1")


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose parsed documents and pairs are in output/, as generate leaves them."""
    from slm_factory.config import load_config
    from slm_factory.curation.common import Sources
    from slm_factory.pipeline import StageContext
    from slm_factory.records import Block, Document, Section

    root = tmp_path / "proj"
    (root / "documents").mkdir(parents=True)
    config = root / "project.yaml"
    config.write_text(yaml.safe_dump({"project": {"name": "proj", "language": "ko"}}), encoding="utf-8")
    workspace = Workspace(root / "output")
    document = Document(id="d1", path="documents/policy.txt", format="txt", language="ko",
                        sections=[Section(title="지원 대상", level=1, blocks=[Block(kind="paragraph", text=CHUNKS["d1:0"])])])
    workspace.write_json("parsed_documents", [document.model_dump()])
    chunk = next(iter(Sources(StageContext(load_config(config), workspace)).chunks.values()))
    pairs = [p.model_copy(update={"doc_id": "d1", "chunk_id": chunk.id}) for p in sample_pairs()]
    workspace.write_json("qa_train", [p.model_dump() for p in pairs])  # split is on by default
    return config


def invoke(*args: str):
    from typer.testing import CliRunner

    from slm_factory.cli import app

    return CliRunner().invoke(app, list(args))


def test_review_command_opens_newest_pairs_beside_their_source_and_status_shows_the_result(project: Path, monkeypatch):
    seen: dict[str, str] = {}
    real_run = ReviewApp.run

    async def pilot_script(pilot) -> None:
        app = pilot.app
        await app.workers.wait_for_complete()  # the chunks are rebuilt in a thread
        await pilot.pause()
        seen["chunk"], seen["status"] = shown(app, "#chunk"), shown(app, "#statusbar")
        await pilot.press("a", "a", "r", "1", "q")

    monkeypatch.setattr("slm_factory.cli.review._has_terminal", lambda: True)
    monkeypatch.setattr(ReviewApp, "run", lambda self, **kw: real_run(self, headless=True, size=(120, 32), auto_pilot=pilot_script))
    result = invoke("review", "-c", str(project))
    assert result.exit_code == 0, result.output
    assert "신청 기한은 3월 31일이며" in seen["chunk"] and "qa_train.json" in seen["status"]
    assert "Review: 2 approved, 1 rejected, 0 edited, 3 undecided (of 6); qa_reviewed.json holds 2 pairs" in result.output
    status = invoke("status", "-c", str(project))
    assert "review: qa_reviewed.json holds 2 approved or edited pairs (3 decisions logged)" in status.output
    as_json = json.loads(invoke("status", "-c", str(project), "--json").output)
    assert as_json["reviewed"]["items"] == 2 and as_json["reviewed"]["decisions"] == 3


def test_review_reads_the_output_of_the_last_enabled_pairs_stage(project: Path):
    raw = yaml.safe_load(project.read_text())
    raw["augment"] = {"enabled": True}
    project.write_text(yaml.safe_dump(raw))
    result = invoke("review", "-c", str(project))
    assert result.exit_code == 1 and "qa_augmented.json is missing; run `slm-factory augment` first" in result.output
    raw["augment"]["enabled"] = False
    raw["eval"] = {"enabled": False}
    project.write_text(yaml.safe_dump(raw))
    result = invoke("review", "-c", str(project))
    assert result.exit_code == 1 and "qa_validated.json is missing; run `slm-factory validate` first" in result.output


@pytest.mark.parametrize("content, message", [
    ("{not json", "is damaged (not valid JSON at line 1"),
    ('[{"instruction": "q"}]', "record 1 is not a QAPair (output: Field required)"),
    ("[]", "holds no pairs to review"),
])
def test_a_bad_data_file_is_one_line(project: Path, content: str, message: str):
    bad = project.parent / "bad.json"
    bad.write_text(content, encoding="utf-8")
    result = invoke("review", "-c", str(project), "--data", str(bad))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_held_out_probes_cannot_be_reviewed(project: Path):
    workspace = Workspace(project.parent / "output")
    probes = [p.model_copy(update={"id": f"probe{i}", "origin": "probe"}) for i, p in enumerate(sample_pairs())]
    workspace.write_json("qa_test", [p.model_dump() for p in probes])
    result = invoke("review", "-c", str(project), "--data", str(workspace.path("qa_test")))
    assert result.exit_code == 1 and "are held-out probes, which are never reviewed into training" in result.output


def test_a_reviewed_file_without_its_log_is_not_overwritten(project: Path):
    workspace = Workspace(project.parent / "output")
    shutil.copy(workspace.path("qa_train"), workspace.path("qa_reviewed"))
    result = invoke("review", "-c", str(project))
    assert result.exit_code == 1 and "without its decision log" in result.output
    assert workspace.path("qa_reviewed").read_bytes() == workspace.path("qa_train").read_bytes()


def test_review_off_in_the_config_says_which_key_turns_it_on(project: Path):
    raw = yaml.safe_load(project.read_text())
    raw["review"] = {"enabled": False}
    project.write_text(yaml.safe_dump(raw))
    result = invoke("review", "-c", str(project))
    assert result.exit_code == 0 and "set review.enabled: true" in result.output


def test_without_textual_the_command_says_what_to_install(project: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "textual", None)  # as if the tui extra were not installed
    result = invoke("review", "-c", str(project))
    assert result.exit_code == 1 and 'pip install "slm-factory[tui]"' in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_help_stays_free_of_textual():
    code = "import sys; from slm_factory.cli import app; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}).stdout
    assert out.strip() == "False"


# -- on pairs that generate made from real documents ---------------------------------------------


def real_teacher_project(root: Path, server: str) -> Path:
    """The Korean bill and the English guide, parsed, with SmolLM2 behind a real llama.cpp server as
    the teacher (answer_first: its answers are passages of the chunks, word for word). The guide is
    cut to its first half (the review walks every pair; half the guide still gives well over 10)."""
    config = sample_project(root, {"backend": "openai", "model": "smollm2", "api_base": f"{server}/v1",
                                   "max_concurrency": 1, "temperature": 0.2},
                            {"mode": "answer_first", "questions_per_chunk": 2})
    guide = root / "documents" / "us-18f-content-guide-urls-and-filenames.md"
    guide.write_text(guide.read_text(encoding="utf-8")[:8000], encoding="utf-8")
    subprocess.run([sys.executable, "-m", "slm_factory", "parse", "-q", "-c", str(config)], check=True)
    return config


@pytest.mark.slow
def test_review_of_generated_pairs_shows_each_one_beside_its_own_chunk(tmp_path: Path, llama_server: str, monkeypatch):
    """parse and generate (SmolLM2 through a real llama.cpp server) on a Korean bill and an English
    guide; every pair's source chunk is found and shown, decisions land in qa_reviewed.json."""
    config = real_teacher_project(tmp_path / "proj", llama_server)
    assert generate(config).wait(timeout=900) == 0
    pairs_file = config.parent / "output" / "qa_alpaca.json"
    pairs = [QAPair.model_validate(item) for item in json.loads(pairs_file.read_text(encoding="utf-8"))]
    assert len(pairs) > 10 and {p.source_doc.endswith(".txt") for p in pairs} == {True, False}
    missing: list[str] = []
    real_run = ReviewApp.run

    async def pilot_script(pilot) -> None:
        app = pilot.app
        await app.workers.wait_for_complete()
        await pilot.pause()
        for number in range(len(pairs)):
            pair, chunk = app.current, " ".join(re.findall(r"\w+", shown(app, "#chunk")))
            source = " ".join(re.findall(r"\w+", app.source_text(pair)))
            # Each answer is a passage of the excerpt it was written from: every line of it is in the
            # source chunk. (A URL longer than a line is folded on screen: compare without spaces.)
            answer_lines = [" ".join(re.findall(r"\w+", line)) for line in pair.output.splitlines()]
            if any(f" {line} " not in f" {source} " for line in answer_lines if line) \
                    or chunk.replace(" ", "") != source.replace(" ", ""):
                missing.append(pair.id)
            await pilot.press("a" if number % 3 else "r", *([] if number % 3 else ["2"]))
        await pilot.press("q")

    monkeypatch.setattr("slm_factory.cli.review._has_terminal", lambda: True)
    monkeypatch.setattr(ReviewApp, "run", lambda self, **kw: real_run(self, headless=True, size=(160, 48), auto_pilot=pilot_script))
    result = invoke("review", "-c", str(config), "--data", str(pairs_file))
    assert result.exit_code == 0, result.output
    assert missing == []
    kept = reviewed(config.parent / "output")
    assert [r["id"] for r in kept] == [p.id for i, p in enumerate(pairs) if i % 3]


def test_review_without_a_terminal_says_so_in_one_line(project: Path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "slm_factory", "review", "-c", str(project)],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "terminal" in result.stderr
