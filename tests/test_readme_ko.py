"""README.ko.md, the Korean twin of README.md: the same commands, the same project.yaml keys, the
same code, headings that match one for one, and links that land on its own headings."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_readme import README, cli_invocations, code_blocks, config_keys_in, shell_lines

REPO = Path(__file__).resolve().parents[1]
README_KO = (REPO / "README.ko.md").read_text(encoding="utf-8")


def headings(text: str) -> list[str]:
    """The `#`-levels of the headings outside code blocks, in order (the outline)."""
    outline, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            outline.append(line.split(" ", 1)[0])
    return outline


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    fenced, found = False, set()
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.add(anchor(line.split(" ", 1)[1]))
    return found


def test_both_show_the_same_slm_factory_commands_in_the_same_order():
    english, korean = cli_invocations(shell_lines(README)), cli_invocations(shell_lines(README_KO))
    assert korean == english


def test_both_name_the_same_project_yaml_keys():
    english, korean = config_keys_in(README), config_keys_in(README_KO)
    assert sorted(english - korean) == [] and sorted(korean - english) == []


def test_both_carry_the_same_code_and_configuration_blocks():
    def shown(text: str) -> list[tuple[str, str]]:
        return [(language, body) for language, body in code_blocks(text) if language in ("bash", "yaml", "python")]

    assert shown(README_KO) == shown(README)


def test_the_outline_matches_and_the_korean_readme_is_korean():
    assert headings(README_KO) == headings(README)
    hangul = len(re.findall(r"[\uac00-\ud7a3]", README_KO))
    assert hangul > 5000, hangul
    assert "[English](README.md)" in README_KO and "README.ko.md" in README


def test_internal_links_land_on_headings_of_the_same_file():
    for text in (README, README_KO):
        missing = sorted({link for link in re.findall(r"\]\(#([^)]+)\)", text) if link not in anchors(text)})
        assert not missing, missing
