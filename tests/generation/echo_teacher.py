"""A deterministic OpenAI-compatible teacher for crash tests, run as its own process.

Its replies are a pure function of the prompt, so an interrupted run and an uninterrupted one
must end with the same pairs; every request it serves is logged, so a test can prove that no
finished item was asked for twice. It stands in for a model only where the test is about our
crash safety, not about answer quality (the real llama.cpp server covers that).

    python echo_teacher.py PORT LOGFILE [LATENCY_SECONDS]
"""

from __future__ import annotations

import asyncio
import json
import re
import sys

from aiohttp import web


def questions_reply(prompt: str) -> dict:
    count = int(re.search(r"Write (\d+) questions", prompt).group(1))
    title = re.search(r'document "([^"]*)"', prompt).group(1)
    excerpt = prompt.split("<excerpt>", 1)[1].split("</excerpt>", 1)[0]
    words = re.findall(r"\w+", excerpt)
    return {"questions": [f"What does {title} say about {' '.join(words[i * 3:i * 3 + 3]) or i}?" for i in range(count)]}


def answer_reply(prompt: str) -> dict:
    question = re.search(r"^Question: (.*)$", prompt, re.M).group(1)
    return {"answerable": True, "question": question, "answer": f"According to the source, the answer to '{question}' is given there in full."}


def make_app(log_path: str, latency: float) -> web.Application:
    log = open(log_path, "a", buffering=1, encoding="utf-8")

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        kind = "questions" if '{"questions"' in prompt else "answer"
        reply = questions_reply(prompt) if kind == "questions" else answer_reply(prompt)
        await asyncio.sleep(latency)
        key = re.search(r"^Question: (.*)$", prompt, re.M).group(1) if kind == "answer" else prompt.split("<excerpt>")[1][:80]
        log.write(json.dumps({"kind": kind, "key": key}) + "\n")
        content = json.dumps(reply)
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": body.get("model", "echo"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4},
        })

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "echo", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


if __name__ == "__main__":
    port, log_path = int(sys.argv[1]), sys.argv[2]
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    web.run_app(make_app(log_path, latency), host="127.0.0.1", port=port, print=None)
