"""Write docs/config.md, the project.yaml reference, from the schema's own field descriptions.

    python scripts/config_reference.py          # rewrite docs/config.md
    python scripts/config_reference.py --check  # exit 1 if docs/config.md is out of date (the tests do this)

Either way it exits 1 naming every key of src/slm_factory/config.py without a description.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from slm_factory.config import ProjectConfig

TARGET = Path(__file__).resolve().parents[1] / "docs" / "config.md"
COMMAND = "python scripts/config_reference.py"

HEADER = f"""\
# project.yaml reference

Generated from the schema in `src/slm_factory/config.py` by `{COMMAND}`; do not edit by hand.

Every key is optional: a key left out, or a section left empty, takes its default. `slm-factory init`
writes a project.yaml with every key and its default; `slm-factory check` says what is wrong with one.
Paths are relative to the folder of project.yaml. Secrets (`teacher.api_key`, `parsing.pdf.password`)
may be written as `${{ENV_VAR}}`.
"""

_NAMES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path",
                          SecretStr: "secret string", type(None): "null", Any: "any"}


def sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo | None, type[BaseModel]]]:
    """Every section, nested ones right after their parent: (dotted name, its field, its model)."""
    found = []
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            dotted = f"{prefix}.{name}" if prefix else name
            found.append((dotted, field, field.annotation))
            found.extend(sections(field.annotation, dotted))
    return found


def leaves(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    return [(name, field) for name, field in model.model_fields.items() if not _is_section(field.annotation)]


def undescribed(model: type[BaseModel] = ProjectConfig) -> list[str]:
    """The dotted keys that have no description (every key must say what it does)."""
    return [f"{dotted}.{name}" if dotted else name
            for dotted, _, section in [("", None, model), *sections(model)]
            for name, field in leaves(section) if not (field.description or "").strip()]


def render(model: type[BaseModel] = ProjectConfig) -> str:
    tops = [dotted for dotted, _, _ in sections(model) if "." not in dotted]
    parts = [HEADER, "Sections: " + ", ".join(f"[{name}](#{name})" for name in tops) + ".", ""]
    for dotted, field, section in sections(model):
        parts += [f"{'##' if '.' not in dotted else '###'} {dotted}", ""]
        about = (field.description if field else None) or (section.__doc__ or "").strip().split("\n")[0]
        if about:
            parts += [_cell(about), ""]
        rows = leaves(section)
        if not rows:
            continue
        parts += ["| key | type | default | description |", "|---|---|---|---|"]
        parts += [f"| `{dotted}.{name}` | {_cell(type_name(field))} | {_cell(default_text(field))} | "
                  f"{_cell(field.description or '')} |" for name, field in rows]
        parts.append("")
    return "\n".join(parts)


def type_name(field: FieldInfo) -> str:
    """The YAML-side type with its limits, e.g. `integer (> 0)` or `"probes" | "documents"`."""
    limits = [text for item in field.metadata if (text := _limit(item))]
    name = _type(field.annotation)
    return f"{name} ({', '.join(limits)})" if limits else name


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " | ".join(f'"{arg}"' if isinstance(arg, str) else str(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(arg) for arg in args)
    if origin is list:
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}" if args else "map"
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _limit(item: Any) -> str:
    for kind, sign, attribute in ((annotated_types.Gt, ">", "gt"), (annotated_types.Ge, "≥", "ge"),
                                  (annotated_types.Lt, "<", "lt"), (annotated_types.Le, "≤", "le")):
        if isinstance(item, kind):
            return f"{sign} {getattr(item, attribute)}"
    if isinstance(item, annotated_types.MinLen):
        return "not empty" if item.min_length == 1 else f"at least {item.min_length} long"
    return ""


def default_text(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, sort_keys=False, width=10_000)
    return f"`{text.strip().removesuffix('...').strip()}`"


def _cell(text: str) -> str:
    """Text a Markdown table cell can hold: one line, pipes escaped (GitHub honours `\\|` in code too)."""
    return " ".join(text.split()).replace("|", "\\|")


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def main() -> int:
    from generated_doc import write_or_check

    missing = undescribed()
    if missing:
        print(f"keys without a description in src/slm_factory/config.py (add Field(description=...)): {', '.join(missing)}",
              file=sys.stderr)
        return 1
    return write_or_check(TARGET, render(), COMMAND)


if __name__ == "__main__":
    sys.exit(main())
