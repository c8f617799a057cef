"""Pieces the HTML pages share (the analyze report, the eval and compare pages)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def text(name: str) -> str:
    """The asset file `name` of this package: base.css (page, fonts, header), sortable.js (click a
    header to sort a table.sortable)."""
    return resources.files("slm_factory.assets").joinpath(name).read_text("utf-8")
