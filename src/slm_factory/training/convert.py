"""The `convert` stage: training pairs (and dialogues) → training_data.jsonl.

It reads the training pairs only: qa_reviewed.json when a review exists, else the newest pairs
artifact of the curation chain (qa_augmented → qa_train → qa_scored → qa_validated → qa_alpaca).
The held-out probes (qa_test.json) are never read. Each example becomes the messages (system,
user, assistant; several turns for a dialogue) and the text the student's own chat template
renders from them. An example longer than student.max_seq_length tokens is dropped and
reported, never cut: a cut answer teaches the student to stop mid-sentence.

The validation slice is not taken here: `train` takes it (by group, seeded) so that changing
it never needs a new conversion.
"""

from __future__ import annotations

import json
from pathlib import Path

from slm_factory.pipeline import STAGES, StageContext, StageError, StageResult, pairs_input, stage_named
from slm_factory.records import Dialogue, QAPair
from slm_factory.training.formats import (
    Example, dialogue_example, pair_example, read_data, render, system_prompt, token_counts,
)
from slm_factory.training.models import load_tokenizer
from slm_factory.workspace import ARTIFACTS, read_records, write_atomic

SHOWN_IDS = 5  # ids of dropped examples named in the log


def run(ctx: StageContext) -> StageResult:
    tokenizer = load_tokenizer(ctx.config)
    system = system_prompt(ctx.config)
    examples, notes = gather_examples(ctx, system)
    texts = [_rendered(tokenizer, example) for example in examples]
    counts = token_counts(tokenizer, texts)
    limit = ctx.config.student.max_seq_length
    kept = [(e, t, n) for e, t, n in zip(examples, texts, counts) if n <= limit]
    too_long = [e.id for e, n in zip(examples, counts) if n > limit]
    if too_long:
        line = (f"{len(too_long)} of {len(examples)} examples are longer than student.max_seq_length {limit} tokens "
                f"and were dropped, not cut (first: {', '.join(too_long[:SHOWN_IDS])})")
        ctx.log.warning(line)
    if not kept:
        raise StageError(f"no training examples left ({len(examples)} read, {len(too_long)} longer than "
                         f"student.max_seq_length {limit})" if examples else "no training examples to convert")
    target = ctx.workspace.path("training_data")
    write_atomic(target, b"".join(_record_line(e, t, n) for e, t, n in kept))
    kinds: dict[str, int] = {}
    for example, _, _ in kept:
        kinds[example.kind] = kinds.get(example.kind, 0) + 1
    return StageResult(
        items=len(kept), counts={**kinds, "dropped_too_long": len(too_long)}, lines=notes,
        extra={"tokens": sum(n for _, _, n in kept), "max_tokens": max(n for _, _, n in kept)},
        summary=f"Convert complete: {len(kept)} examples ({len(too_long)} dropped as longer than "
                f"student.max_seq_length {limit}) → {target.name}",
    )


def _rendered(tokenizer: object, example: Example) -> str:
    from jinja2 import TemplateError

    try:
        return render(tokenizer, example.messages)
    except TemplateError as error:
        raise StageError(f"example {example.id}: the chat template of student.model refuses it ({error}); "
                         "set student.chat_template to one that takes these roles") from None


def _record_line(example: Example, text: str, tokens: int) -> bytes:
    record = {"id": example.id, "group": example.group, "kind": example.kind, "messages": example.messages,
              "text": text, "tokens": tokens}
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


# -- what to convert ---------------------------------------------------------------------------


def gather_examples(ctx: StageContext, system: str) -> tuple[list[Example], list[str]]:
    """The examples of the --data file, else of the training pairs (and dialogues when on),
    with notes for the user about what was left out and why."""
    data = ctx.options.get("data")
    if data:
        found = read_data(Path(data), system)
        notes = [f"{found.replaced_system} examples in --data {data} had their own system prompt; it was replaced by "
                 "the project's (export.ollama.system_prompt), which the Modelfile carries"] if found.replaced_system else []
        pairs, probes = _without_probes(found.pairs)
        return [*(pair_example(p, system) for p in pairs), *found.examples], [*notes, *probes]
    pairs, notes = training_pairs(ctx)
    pairs, probes = _without_probes(pairs)
    notes.extend(probes)
    if not ctx.config.dialogue.enabled:
        return [pair_example(p, system) for p in pairs], notes
    dialogues, dialogue_notes = training_dialogues(ctx, {p.id for p in pairs})
    covered = {pair_id for d in dialogues for pair_id in d.pair_ids}
    # include_single_qa off avoids training a fact twice; a pair no dialogue holds stays.
    singles = pairs if ctx.config.dialogue.include_single_qa else [p for p in pairs if p.id not in covered]
    examples = [*(pair_example(p, system) for p in singles), *(dialogue_example(d, system) for d in dialogues)]
    return examples, [*notes, *dialogue_notes]


def _without_probes(pairs: list[QAPair]) -> tuple[list[QAPair], list[str]]:
    """Held-out probes never reach training, whatever file they arrive in."""
    kept = [p for p in pairs if p.origin != "probe"]
    dropped = len(pairs) - len(kept)
    return kept, [f"{dropped} held-out probes (origin \"probe\") left out: they are never trained on"] if dropped else []


def training_pairs(ctx: StageContext) -> tuple[list[QAPair], list[str]]:
    """qa_reviewed.json when a review exists (only its pairs still among the training pairs),
    else the newest pairs artifact of the curation chain."""
    chain = pairs_input(stage_named("convert"), ctx.config)
    chain_path, reviewed_path = ctx.workspace.path(chain), ctx.workspace.path("qa_reviewed")
    if not reviewed_path.exists():
        if not chain_path.exists():
            writer = next((s.name for s in STAGES if s.output == chain), "generate")
            raise StageError(f"{ARTIFACTS[chain]} is missing; run `slm-factory {writer}` first (or pass --data FILE)")
        return read_records(chain_path, QAPair, ARTIFACTS[chain]), []
    reviewed = read_records(reviewed_path, QAPair, ARTIFACTS["qa_reviewed"])
    if not chain_path.exists():
        return reviewed, []
    notes = []
    if reviewed_path.stat().st_mtime_ns < chain_path.stat().st_mtime_ns:
        notes.append(f"{ARTIFACTS['qa_reviewed']} is older than {ARTIFACTS[chain]}; run `slm-factory review` to bring "
                     "the review up to date")
    # A review made before a split (or of an older chain) may hold pairs that are held out now.
    training_ids = {p.id for p in read_records(chain_path, QAPair, ARTIFACTS[chain])}
    kept = [p for p in reviewed if p.id in training_ids]
    if len(kept) < len(reviewed):
        notes.append(f"{len(reviewed) - len(kept)} reviewed pairs are no longer among the training pairs of "
                     f"{ARTIFACTS[chain]} (held out or removed since the review) and were left out")
    return kept, notes


def training_dialogues(ctx: StageContext, training_ids: set[str]) -> tuple[list[Dialogue], list[str]]:
    """dialogues.json, less any dialogue built from a pair that is not a training pair (held out,
    rejected by curation or review): dialogues are written from qa_alpaca, before all of those."""
    path = ctx.workspace.path("dialogues")
    if not path.exists():
        raise StageError(f"{ARTIFACTS['dialogues']} is missing; run `slm-factory generate-dialogue` first "
                         "(or set dialogue.enabled: false)")
    dialogues = read_records(path, Dialogue, ARTIFACTS["dialogues"])
    kept = [d for d in dialogues if d.pair_ids and set(d.pair_ids) <= training_ids]
    notes = [f"{len(dialogues) - len(kept)} dialogues left out: built from pairs that are not training pairs "
             "(held out, or rejected by curation or review)"] if len(kept) < len(dialogues) else []
    return kept, notes
