"""The curation prompts: package data files, one per task and language (prompts/en, prompts/ko).

    prompts.render("score", "ko", question=..., answer=..., source=...)

A language without its own files (any other than en and ko) uses the English ones. Placeholders
are `string.Template` names ($question); a missing value raises KeyError, a bug, not user input.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

LANGUAGES = ("en", "ko")


def prompt_language(language: str) -> str:
    """The prompt folder for a document language: ko for Korean, en for everything else."""
    code = (language or "").strip().lower()
    return code if code in LANGUAGES else "en"


@cache
def prompt_text(name: str, language: str, package: str = "slm_factory.curation") -> str:
    folder = resources.files(package).joinpath(f"prompts/{prompt_language(language)}")
    return folder.joinpath(f"{name}.txt").read_text(encoding="utf-8")


def render(name: str, language: str, package: str = "slm_factory.curation", **values: object) -> str:
    """The prompt `name` in `language` with its placeholders filled; `package` holds the prompts/
    folder (evaluation keeps its judge prompts in its own)."""
    return Template(prompt_text(name, language, package)).substitute({k: str(v) for k, v in values.items()})
