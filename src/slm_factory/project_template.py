"""The project.yaml that `init` writes: every key with its default, documented in a comment.

Generated from the pydantic models' field descriptions so the template cannot drift from the
schema (a test loads it back and compares it with the defaults).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from slm_factory.config import ProjectConfig

HEADER = """\
# slm-factory project. Run the pipeline with:  slm-factory run --config {config}
# Every key is shown with its default; delete what you do not change.
# A section left empty (or null) takes its defaults. Secrets may be written as ${{ENV_VAR}}.
"""


def render_template(name: str, language: str = "en") -> str:
    config = ProjectConfig()
    config.project.name = name
    config.project.language = language
    config.export.ollama.model_name = f"{name}-model"
    lines = [HEADER.format(config="project.yaml")]
    _render_model(config, lines, indent=0)
    return "\n".join(lines) + "\n"


def _render_model(model: BaseModel, lines: list[str], indent: int) -> None:
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            if indent == 0:
                lines.append("")
            if field.description:
                lines.append(f"{pad}# {field.description}")
            lines.append(f"{pad}{name}:")
            _render_model(value, lines, indent + 1)
            continue
        if field.description:
            lines.append(f"{pad}# {field.description}")
        text = _scalar(value, indent)
        lines.append(f"{pad}{name}:" + (text if text.startswith("\n") else " " + text))


def _scalar(value: Any, indent: int) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Path):
        value = str(value)
    if value is None:
        return "null"
    if isinstance(value, (dict, list)) and value:
        text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=False, sort_keys=False)
        pad = "  " * (indent + 1)
        return "\n" + "\n".join(pad + line for line in text.rstrip().splitlines())
    return yaml.safe_dump(value, allow_unicode=True, default_flow_style=True).strip().removesuffix("\n...").strip()
