"""report.html in a real headless Chromium (Debian's `chromium`), opened from disk: it renders,
the plots and tables are there, nothing reaches the console or the network, the sorting and
filtering script works, markup in the data stays text, and a screenshot is kept for a person
to look at. Driven over the DevTools protocol with aiohttp's websocket client; one test also
uses the plain `--dump-dom` command line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import struct
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slm_factory.pipeline import run_stage, stage_named
from slm_factory.records import Rejection
from tests.curation.test_analyze import chunks_by_document, korean_project, pair_for, write_pairs

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser: install Debian's chromium (apt-get install chromium) to check report.html"
)
SCREENSHOT = Path("/tmp/slm-factory-report.png")
# No D-Bus in containers: without this Chromium waits on it at start-up.
BROWSER_ENV = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"}


@dataclass
class Page:
    """What one page load showed: console calls, uncaught exceptions, log entries (CSP and
    network errors land there), requests, dialogs, and the values of the expressions asked."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    def problems(self, own_url: str) -> list[str]:
        foreign = [url for url in self.requests if url != own_url and not url.startswith("data:")]
        return ([f"console: {m}" for m in self.console] + [f"exception: {m}" for m in self.exceptions]
                + [f"log: {m}" for m in self.log] + [f"request: {u}" for u in foreign]
                + [f"dialog: {d}" for d in self.dialogs])


class Browser:
    """A headless Chromium with its DevTools endpoint on a free local port."""

    def __init__(self, profile: Path) -> None:
        self.log_path = profile.parent / "chromium.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
                 "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
                stdout=log, stderr=subprocess.STDOUT, env=BROWSER_ENV,
            )
        self.port = self._port(profile / "DevToolsActivePort")

    def _port(self, active: Path) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"chromium exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            if active.is_file() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        pytest.fail("chromium did not open its DevTools port within 60 s")

    def open(self, path: Path, expressions: dict[str, str] | None = None, screenshot: Path | None = None) -> Page:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list") as reply:
            target = next(t for t in json.load(reply) if t["type"] == "page")
        return asyncio.run(_load(target["webSocketDebuggerUrl"], path.resolve().as_uri(), expressions or {}, screenshot))

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def _load(ws_url: str, url: str, expressions: dict[str, str], screenshot: Path | None) -> Page:
    import aiohttp

    page = Page()
    loaded = asyncio.Event()
    pending: dict[int, asyncio.Future] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        counter = iter(range(1, 1_000_000))

        async def call(method: str, **params: Any) -> dict[str, Any]:
            ident = next(counter)
            future = pending[ident] = asyncio.get_running_loop().create_future()
            await ws.send_json({"id": ident, "method": method, "params": params})
            try:
                reply = await asyncio.wait_for(future, 60)
            finally:
                pending.pop(ident, None)
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]

        async def listen() -> None:
            async for message in ws:
                data = json.loads(message.data)
                if "id" in data and data["id"] in pending:
                    pending[data["id"]].set_result(data)
                    continue
                method, params = data.get("method"), data.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    page.console.append(f"{params['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
                elif method == "Runtime.exceptionThrown":
                    details = params["exceptionDetails"]
                    page.exceptions.append(details.get("exception", {}).get("description") or details["text"])
                elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                    page.log.append(f"{params['entry']['level']}: {params['entry']['text']}")
                elif method == "Network.requestWillBeSent":
                    page.requests.append(params["request"]["url"])
                elif method == "Page.javascriptDialogOpening":
                    page.dialogs.append(f"{params['type']}: {params['message']}")
                    asyncio.ensure_future(call("Page.handleJavaScriptDialog", accept=True))
                elif method == "Page.loadEventFired":
                    loaded.set()

        listener = asyncio.ensure_future(listen())
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            await asyncio.wait_for(loaded.wait(), 60)
            for name, expression in expressions.items():
                result = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
                if "exceptionDetails" in result:
                    raise AssertionError(f"{name}: {result['exceptionDetails']}")
                page.values[name] = result["result"].get("value")
            if screenshot is not None:
                size = (await call("Page.getLayoutMetrics"))["cssContentSize"]
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                  clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
                screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            listener.cancel()
    return page


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium = Browser(tmp_path_factory.mktemp("chromium") / "profile")
    yield chromium
    chromium.close()


def full_report(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A report with every section filled: Korean and English documents, one without pairs,
    probes, rejections of two stages, scores, a cut answer, and markup in the data."""
    ctx, pairs = korean_project(tmp_path)
    housing = chunks_by_document(ctx)["housing.txt"][0]
    pairs.append(pair_for(housing, "<script>alert(1)</script>", "<img src=x onerror=alert(2)> & the rest of it.",
                          category="facts", score=4))
    pairs.append(pair_for(housing, "Which documents must an applicant for the 2024 youth housing subsidy submit?",
                          "An applicant submits an ID card, a lease contract and proof of household income, and the", category="facts", score=3))
    write_pairs(ctx, pairs)
    ctx.workspace.write_json("qa_test", [p.model_copy(update={"id": f"p{i}", "origin": "probe"}).model_dump()
                                         for i, p in enumerate(pairs[:4])])
    ctx.workspace.write_json("rejected_validate", [Rejection(id=f"v{i}", stage="validate", rule=r).model_dump()
                                                   for i, r in enumerate(["too_short"] * 3 + ["near_duplicate", "wrong_language"])])
    ctx.workspace.write_json("rejected_score", [Rejection(id=f"s{i}", stage="score", rule="low_score",
                                                          pair={**pairs[0].model_dump(), "score": s}).model_dump()
                                                for i, s in enumerate([1, 2, 2])])
    run = run_stage(stage_named("analyze"), ctx)
    assert run.status == "ran", run.result.lines
    analysis = json.loads(ctx.workspace.path("data_analysis").read_text(encoding="utf-8"))
    return ctx.workspace.path("report"), analysis


DOM_FIGURES = {
    "charset": "document.characterSet",
    "charts": "document.querySelectorAll('svg.chart').length",
    "bars": "document.querySelectorAll('svg.chart rect.bar').length",
    "drawn_bars": "Array.from(document.querySelectorAll('svg.chart rect.bar')).filter(r => r.getBBox().height > 0 && r.getBBox().width > 0).length",
    "charts_on_screen": "Array.from(document.querySelectorAll('svg.chart')).every(s => s.getBoundingClientRect().width > 200 && s.getBoundingClientRect().height > 20)",
    "question_bars": "document.querySelectorAll('#lengths svg.chart')[0].querySelectorAll('rect.bar').length",
    "warnings": "Array.from(document.querySelectorAll('li.warning')).map(li => li.dataset.code)",
    "document_names": "Array.from(document.querySelectorAll('#documents-table tbody tr')).map(tr => tr.cells[0].textContent)",
    "tables": "Array.from(document.querySelectorAll('table')).map(t => t.tBodies[0].rows.length)",
    "scripts": "document.scripts.length",
    "images": "document.images.length",
    "cells": "Array.from(document.querySelectorAll('td')).map(td => td.textContent)",
    "width": "document.documentElement.scrollWidth",
}


def test_report_renders_with_plots_tables_and_warnings(browser: Browser, tmp_path: Path) -> None:
    report, analysis = full_report(tmp_path)
    page = browser.open(report, DOM_FIGURES, screenshot=SCREENSHOT)
    assert page.problems(report.resolve().as_uri()) == []
    values = page.values
    assert values["charset"] == "UTF-8"
    # composition 2, lengths 2, documents 1, rejections 2, scores 1
    assert values["charts"] == 8
    assert values["bars"] > 20 and values["drawn_bars"] > 20 and values["charts_on_screen"]
    assert values["question_bars"] == len(analysis["lengths"]["question_chars"]["histogram"]["counts"])
    assert values["warnings"] == [w["code"] for w in analysis["warnings"]]
    assert {"few_pairs", "documents_without_pairs", "cut_answers"} <= set(values["warnings"])
    assert values["document_names"] == [row["name"] for row in analysis["by_document"]]
    assert "청년월세지원.txt" in values["document_names"]
    assert values["tables"][0] == len(analysis["by_document"]) and len(values["tables"]) >= 5
    assert values["width"] <= 1280  # nothing wider than the window
    assert values["scripts"] == 1 and values["images"] == 0
    assert "<script>alert(1)</script>" in values["cells"]
    assert "<img src=x onerror=alert(2)> & the rest of it." in values["cells"]
    png = SCREENSHOT.read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 1200 <= width <= 1280 and height > 1500 and len(png) > 50_000
    print(f"screenshot: {SCREENSHOT} ({width}x{height})")


def test_sorting_and_filtering_work_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    report, analysis = full_report(tmp_path)
    pairs_column = "Array.from(document.querySelectorAll('#documents-table tbody tr')).map(tr => Number(tr.cells[2].dataset.v))"
    header = "document.querySelectorAll('#documents-table th')[2]"
    visible = ("Array.from(document.querySelectorAll('#documents-table tbody tr')).filter(tr => !tr.hidden)"
               ".map(tr => tr.cells[0].textContent)")
    page = browser.open(report, {
        "ascending": f"{header}.click(), {pairs_column}",
        "descending": f"{header}.click(), {pairs_column}",
        "filtered": "(() => { const box = document.querySelector('input.filter'); box.value = '청년';"
                    f" box.dispatchEvent(new Event('input')); return {visible}; }})()",
        "cleared": "(() => { const box = document.querySelector('input.filter'); box.value = '';"
                   f" box.dispatchEvent(new Event('input')); return {visible}; }})()",
    })
    assert page.problems(report.resolve().as_uri()) == []
    counts = [row["pairs"] for row in analysis["by_document"]]
    assert page.values["ascending"] == sorted(counts) and page.values["descending"] == sorted(counts, reverse=True)
    assert page.values["filtered"] == ["청년월세지원.txt"]
    assert sorted(page.values["cleared"]) == sorted(row["name"] for row in analysis["by_document"])


def test_the_checks_catch_a_page_that_misbehaves(browser: Browser, tmp_path: Path) -> None:
    """The browser checks above can fail: a page that logs, throws, fetches and alerts is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><meta charset="utf-8"><img src="http://127.0.0.1:9/x.png">'
                   "<script>console.error('boom'); alert(1); undefinedFunction();</script>", encoding="utf-8")
    page = browser.open(bad)
    problems = page.problems(bad.resolve().as_uri())
    assert any("boom" in p for p in page.console)
    assert any("undefinedFunction" in p for p in page.exceptions)
    assert any("127.0.0.1:9" in p for p in problems if p.startswith("request"))
    assert page.dialogs == ["alert: 1"]


def test_dump_dom_from_the_command_line(tmp_path: Path) -> None:
    """The plain command a user would try: the DOM after scripts ran holds the plots and tables,
    and Chromium's own log shows no console line from the page."""
    from lxml import html as lxml_html

    report, analysis = full_report(tmp_path)
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=1", "--dump-dom", report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, env=BROWSER_ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    tree = lxml_html.fromstring(done.stdout.encode("utf-8"))
    assert len(tree.xpath("//svg[contains(@class,'chart')]")) == 8
    assert len(tree.xpath("//svg//rect[contains(@class,'bar')]")) > 20
    assert len(tree.xpath("//table[@id='documents-table']/tbody/tr")) == len(analysis["by_document"])
    assert len(tree.xpath("//li[@class='warning']")) == len(analysis["warnings"])
    assert "<script>alert(1)</script>" in [td.text_content() for td in tree.xpath("//td")]
