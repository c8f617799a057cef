"""The `generate` stage: parsed_documents.json → qa_alpaca.json, resumable at any point."""

from __future__ import annotations

import asyncio

from slm_factory.generation import prompts
from slm_factory.generation.qa import (
    Generator,
    Ledger,
    TeacherUnusable,
    generate,
    generation_key,
    ordered_pairs,
    plan_jobs,
    question_mode,
    unwritable_documents,
)
from slm_factory.pipeline import StageContext, StageResult
from slm_factory.records import Document


def system_prompt(ctx: StageContext) -> str:
    return ctx.config.questions.system_prompt or prompts.default_system_prompt(ctx.config.project.language)


def load_documents(ctx: StageContext) -> list[Document]:
    from slm_factory.workspace import read_records

    return read_records(ctx.workspace.path("parsed_documents"), Document, "parsed_documents.json")


def announce_mode(ctx: StageContext) -> None:
    if ctx.config.questions.mode == "auto" and question_mode(ctx.config) == "answer_first":
        ctx.log.info("questions.mode auto: answer_first for the embedded SmolLM2 teacher (answers are picked "
                     "from the documents, the teacher writes one question for each); set questions.mode: open "
                     "to let it write questions freely")


def skipped_line(skipped: list[Document]) -> str:
    names = ", ".join(doc.path.rsplit("/", 1)[-1] for doc in skipped[:5]) + (" …" if len(skipped) > 5 else "")
    languages = ", ".join(sorted({doc.language for doc in skipped}))
    return (f"{len(skipped)} document{'s' if len(skipped) != 1 else ''} in {languages} skipped ({names}): the "
            "embedded teacher (SmolLM2-135M) writes English only; documents in other languages need a "
            "multilingual teacher, such as a Qwen2.5 model through Ollama or vLLM (see the README)")


def run(ctx: StageContext) -> StageResult:
    from slm_factory.teacher import TeacherError, open_teacher

    if not ctx.workspace.path("parsed_documents").exists():
        return StageResult(failed=True, lines=["parsed_documents.json is missing; run `slm-factory parse` first"])
    prompt = system_prompt(ctx)
    announce_mode(ctx)
    documents = load_documents(ctx)
    skipped = unwritable_documents(ctx.config, documents)
    skipped_ids = {document.id for document in skipped}
    jobs = plan_jobs(ctx.config, [document for document in documents if document.id not in skipped_ids])
    ledger = Ledger(ctx.workspace.checkpoint("qa_alpaca"), generation_key(ctx.config, prompt))

    async def main() -> tuple[Generator, dict]:
        async with open_teacher(ctx.config, ctx.workspace, backend=ctx.teacher_backend) as teacher:
            ctx.progress.teacher_opened(teacher)
            with ctx.progress.task("Generating", len(jobs)) as advance:
                generator = Generator(ctx.config, teacher, ledger, prompt,
                                      (TeacherError, prompts.ReplyShapeError), on_done=advance)
                await generate(generator, jobs)
            return generator, teacher.stats()

    try:
        generator, teacher_stats = asyncio.run(main())
    except TeacherUnusable as error:
        done = len(ordered_pairs(ledger.pairs(), jobs))
        return StageResult(failed=True, lines=[str(error), f"{done} pairs are saved; run again when the teacher works"])
    pairs = ordered_pairs(ledger.pairs(), jobs)
    scope = ctx.options.get("documents_only")
    if scope:  # update with incremental.merge_strategy: replace keeps the new and changed documents' pairs
        kept = set(scope)
        pairs = [pair for pair in pairs if pair["doc_id"] in kept]
    stats = generator.stats
    result = StageResult(
        items=len(pairs),
        counts={"pairs": len(pairs), "new": stats.accepted, "rejected": stats.rejected,
                "failed": stats.failed, "reused": stats.skipped},
        extra={"teacher": teacher_stats, "rejections": stats.reasons,
               **({"skipped_documents": {doc.path.rsplit("/", 1)[-1]: doc.language for doc in skipped}}
                  if skipped else {})},
    )
    if skipped:
        result.lines.append(skipped_line(skipped))
    for line in generator.failures[:20]:
        ctx.log.warning(line)
    if stats.failed:
        result.lines.append(f"{stats.failed} teacher requests failed; run `slm-factory generate` again to retry only those")
    if not pairs:
        result.failed = True
        result.lines.append("no QA pair was produced; qa_alpaca.json was not written")
        return result
    ctx.workspace.write_json("qa_alpaca", pairs)
    return result
