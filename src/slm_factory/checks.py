"""`check`: is this project ready to run? Each check is one line, with what to do on failure."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass

from slm_factory.config import ProjectConfig
from slm_factory.parsing.registry import EXTENSIONS


@dataclass
class Check:
    ok: bool
    label: str
    advice: str = ""


def run_checks(config: ProjectConfig) -> list[Check]:
    return [
        Check(True, "project.yaml loads and validates"),
        check_documents(config),
        check_output(config),
        *check_teacher(config),
    ]


def check_documents(config: ProjectConfig) -> Check:
    folder = config.documents_dir
    if not folder.is_dir():
        return Check(False, f"documents folder {folder} missing", f"create it and add documents: mkdir -p {folder}")
    wanted = set(config.parsing.formats)
    counts = Counter(
        EXTENSIONS[p.suffix.lower()]
        for p in folder.rglob("*")
        if p.is_file() and EXTENSIONS.get(p.suffix.lower()) in wanted
    )
    if not counts:
        return Check(False, f"no documents in {folder}", f"add {', '.join(config.parsing.formats)} files to it")
    summary = ", ".join(f"{fmt} {n}" for fmt, n in sorted(counts.items()))
    return Check(True, f"documents: {sum(counts.values())} files in {folder} ({summary})")


def check_output(config: ProjectConfig) -> Check:
    folder = config.output_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        return Check(False, f"output folder {folder} is not writable ({error.strerror})", "fix its permissions or set paths.output")
    return Check(True, f"output folder {folder} is writable")


def check_teacher(config: ProjectConfig) -> list[Check]:
    """Each teacher backend's own health call: reachable, and has the model."""
    import asyncio

    from slm_factory.teacher import teacher_health

    return [Check(h.ok, h.label, h.advice) for h in asyncio.run(teacher_health(config.teacher))]
