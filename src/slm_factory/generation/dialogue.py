"""The `generate-dialogue` stage: QA pairs of one document → multi-turn dialogues.

Pairs are grouped per document, in order, into even groups of dialogue.min_turns..max_turns; the
teacher rewrites each group as one conversation that keeps the given answers. Each finished
dialogue is appended to dialogues.partial.jsonl at once, so a rerun redoes only missing ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from slm_factory.generation import prompts
from slm_factory.pipeline import StageContext, StageResult
from slm_factory.records import Dialogue


def group_pairs(pairs: list[dict[str, Any]], min_turns: int, max_turns: int) -> list[list[dict[str, Any]]]:
    """Consecutive pairs of each document in groups of min..max turns, sized as evenly as possible."""
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for pair in pairs:
        by_doc.setdefault(pair.get("doc_id") or pair.get("source_doc", ""), []).append(pair)
    groups: list[list[dict[str, Any]]] = []
    for items in by_doc.values():
        groups.extend(_even_groups(items, min_turns, max_turns))
    return groups


def _even_groups(items: list[dict[str, Any]], min_turns: int, max_turns: int) -> list[list[dict[str, Any]]]:
    if len(items) < min_turns:
        return []
    count = -(-len(items) // max_turns)
    while count > 1 and len(items) // count < min_turns:
        count -= 1
    if count == 1:
        return [items[:max_turns]]
    base, extra = divmod(len(items), count)
    sizes = [base + 1] * extra + [base] * (count - extra)
    starts = [sum(sizes[:i]) for i in range(count)]
    return [items[start : start + size] for start, size in zip(starts, sizes)]


def dialogue_id(group: list[dict[str, Any]]) -> str:
    return hashlib.sha256("\x1f".join(p["id"] for p in group).encode()).hexdigest()[:16]


def _titles(ctx: StageContext) -> dict[str, str]:
    path = ctx.workspace.path("parsed_documents")
    if not path.exists():
        return {}
    return {d["id"]: d.get("title", "") for d in json.loads(path.read_text(encoding="utf-8"))}


def run(ctx: StageContext) -> StageResult:
    from slm_factory.teacher import TeacherError, open_teacher

    from slm_factory.records import QAPair
    from slm_factory.workspace import read_records

    data = ctx.options.get("data")
    source = Path(data or ctx.workspace.path("qa_alpaca"))
    if not source.exists():
        missing = f"--data {data}: no such file" if data else f"{source} is missing; run `slm-factory generate` first"
        return StageResult(failed=True, lines=[missing])
    pairs = [pair.model_dump() for pair in read_records(source, QAPair, f"--data {data}" if data else "qa_alpaca.json")]
    section = ctx.config.dialogue
    groups = group_pairs(pairs, section.min_turns, section.max_turns)
    titles = _titles(ctx)
    checkpoint = ctx.workspace.checkpoint("dialogues")
    done = {d["id"]: d for d in checkpoint.read()}
    language = ctx.config.project.language
    failures: list[str] = []

    async def build(teacher: Any, group: list[dict[str, Any]]) -> None:
        identifier = dialogue_id(group)
        if identifier in done:
            return
        first = group[0]
        title = titles.get(first.get("doc_id", ""), "") or first.get("source_doc", "")
        messages = prompts.dialogue_messages(title, [(p["instruction"], p["output"]) for p in group], language)
        try:
            reply = await teacher.chat(messages, schema=prompts.DIALOGUE_SCHEMA)
            turns = prompts.parse_dialogue(reply.parsed, len(group))
        except (TeacherError, prompts.ReplyShapeError) as error:
            failures.append(f"{first.get('source_doc', '')}: dialogue of {len(group)} pairs: {error}")
            return
        dialogue = Dialogue(id=identifier, turns=turns, source_doc=first.get("source_doc", ""),
                            doc_id=first.get("doc_id", ""), pair_ids=[p["id"] for p in group],
                            teacher=ctx.config.teacher.model).model_dump()
        checkpoint.append(dialogue)
        done[identifier] = dialogue

    async def main() -> dict[str, Any]:
        async with open_teacher(ctx.config, ctx.workspace, backend=ctx.teacher_backend) as teacher:
            ctx.progress.teacher_opened(teacher)
            with ctx.progress.task("Dialogues", len(groups)) as advance:
                async for _ in teacher.map_unordered(groups, lambda group: build(teacher, group)):
                    advance()
            return teacher.stats()

    stats = asyncio.run(main())
    dialogues = [done[dialogue_id(g)] for g in groups if dialogue_id(g) in done]
    for line in failures[:20]:
        ctx.log.warning(line)
    result = StageResult(items=len(dialogues), counts={"dialogues": len(dialogues), "failed": len(failures)},
                         extra={"teacher": stats})
    if not dialogues:
        result.failed = True
        result.lines.append("no dialogue was produced (too few pairs per document, or every request failed)")
        return result
    ctx.workspace.write_json("dialogues", dialogues)
    return result
