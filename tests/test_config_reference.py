"""docs/config.md, the project.yaml reference, is generated from the schema; it must match the code,
and every key of the schema must say what it does."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, SecretStr

from slm_factory.config import ProjectConfig

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "config_reference.py"


def reference():
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema_keys(model: type[BaseModel] = ProjectConfig, prefix: str = "") -> dict[str, object]:
    """Every leaf key of the schema with its default."""
    keys: dict[str, object] = {}
    for name, field in model.model_fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.update(schema_keys(field.annotation, dotted))
        else:
            keys[dotted] = field.get_default(call_default_factory=True)
    return keys


def reference_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip().replace("\\|", "|") for cell in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_config_reference_is_current():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_key_has_a_description():
    missing = reference().undescribed()
    assert not missing, f"keys without a description in config.py: {', '.join(missing)}"


def test_every_key_is_in_the_reference_with_its_default_and_description():
    module = reference()
    rows = reference_rows(module.render())
    keys = schema_keys()
    assert set(rows) == set(keys)
    for key, default in keys.items():
        _, kind, shown, description = rows[key]
        assert kind and description, key
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        expected = str(default) if isinstance(default, Path) else default
        assert yaml.safe_load(shown.strip("`")) == expected, f"{key}: {shown} is not the default {default!r}"


def test_keys_without_a_description_are_named_down_to_nested_sections():
    class Inner(BaseModel):
        described: int = Field(1, gt=0, description="Has one.")
        bare: str = "x"

    class Outer(BaseModel):
        inner: Inner = Field(default_factory=Inner)
        empty: str = Field("", description="   ")

    class Top(BaseModel):
        outer: Outer = Field(default_factory=Outer)
        top: bool = False

    module = reference()
    assert module.undescribed(Top) == ["top", "outer.empty", "outer.inner.bare"]
    text = module.render(Top)
    assert "### outer.inner" in text and "| `outer.inner.described` | integer (> 0) | `1` | Has one. |" in text
