"""Parsed documents kept between runs of `parse`, so a file is read again only when something
that decides its document changed: adding one document to a thousand parses one.

One JSON file per document under output/.parse_cache/, named by the sha256 of
- the file's bytes (sha256) and its format (from the extension: a .txt renamed .md reads
  differently);
- the parser version: a digest of the parsing package's source, records.py, the Python version
  and the versions of the libraries those sources import (with their own dependencies). It is
  computed, not a constant to bump, so it cannot be forgotten; it costs ~15 ms a run (~1 s
  more on a new output folder and after packages were installed or removed, see _libraries);
- every ParseOptions field, except the two that do not shape a stored document (_NOT_SHAPING).

What is stored is the document after its Hangul wraps are settled (the parse stage settles them
in its main process), so a rerun loads no Kiwi at all. Settling decides each wrap from its own
window of text only, so a document settles the same alone or beside a thousand others.

Not cached: failures and OCR warnings (they may be transient, such as a worker killed for
memory or an unreadable file, and a user who fixes one expects it read again), and a PDF that
carries /Encrypt (whether it opens depends on parsing.pdf.password, and keying on the password
would put a digest of a secret on disk).

The file's name decides only the document's path (set when an entry is loaded) and the title of
a document without one of its own (the file's stem). An entry whose title is the stem is bound
to that stem; any other entry also serves a renamed or moved copy of the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slm_factory.parsing.base import ParseOptions, clean_inline
from slm_factory.parsing.registry import format_of
from slm_factory.records import Document
from slm_factory.workspace import write_atomic

log = logging.getLogger("slm_factory")

# The password only decides whether an encrypted PDF opens (those are never cached); the stage
# always defers Hangul wraps and settles them before storing.
_NOT_SHAPING = frozenset({"pdf_password", "defer_hangul_wraps"})
_IMPORTED = re.compile(rb"^[ \t]*(?:from|import)[ \t]+([A-Za-z_]\w*)", re.MULTILINE)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_STALE_TEMP_SECONDS = 3600  # a temp file this old was left by a killed run, not one writing now
LIBRARIES_MEMO = "libraries.memo"  # what _libraries worked out, and for which installed packages
_PACKAGE = Path(__file__).resolve().parent.parent  # slm_factory/


def parser_version(folder: Path) -> str:
    """A digest of everything besides the file and the options that decides a parsed document."""
    sources, imported = _sources()
    libraries = _libraries(imported, folder / LIBRARIES_MEMO)
    return hashlib.sha256(f"{platform.python_version()}\n{sources}\n{libraries}".encode()).hexdigest()[:16]


def _sources(package: Path = _PACKAGE) -> tuple[str, frozenset[str]]:
    """A digest of the parsing package's source and records.py (~3 ms, read every run so a
    long-lived process sees an upgrade), and the libraries they import."""
    digest = hashlib.sha256()
    imported: set[str] = set()
    for path in sorted(package.joinpath("parsing").rglob("*.py")) + [package / "records.py"]:
        source = path.read_bytes()
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + source + b"\0")
        imported.update(name.decode() for name in _IMPORTED.findall(source))
    return digest.hexdigest(), frozenset(imported - set(sys.stdlib_module_names) - {package.name})


def _libraries(imported: frozenset[str], memo: Path) -> str:
    """A digest of the versions of the libraries the parsers import and of all they require.

    Finding them reads every installed package's metadata (~0.8 s here), so the answer is kept
    in `memo`, good while the installed packages stay the same: the names of the dist-info
    folders on sys.path, which carry each version, list in ~10 ms.
    """
    installed = _installed()
    modules = sorted(imported)
    try:
        kept = json.loads(memo.read_bytes())
        if kept["installed"] == installed and kept["modules"] == modules:
            return str(kept["libraries"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or damaged: work it out again
    versions = _library_versions(imported)
    libraries = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()
    entry = {"installed": installed, "modules": modules, "libraries": libraries, "versions": versions}
    write_atomic(memo, json.dumps(entry, indent=1, sort_keys=True).encode())
    return libraries


def _installed() -> str:
    names = []
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                names += [item.name for item in listing if item.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue  # a zip file or a folder that is gone
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def _library_versions(modules: Iterable[str]) -> dict[str, str]:
    """Installed versions of the distributions providing `modules`, and of all they require."""
    from importlib import metadata

    providers = metadata.packages_distributions()
    pending = [dist for module in modules for dist in providers.get(module, ())]
    versions: dict[str, str] = {}
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in versions:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency that is not installed
        versions[name] = distribution.version
        for requirement in distribution.requires or ():
            match = _REQUIREMENT.match(requirement)
            if match and "extra ==" not in requirement:
                pending.append(match.group(1))
    return versions


def cache_key(content_sha256: str, fmt: str, options: ParseOptions, version: str) -> str:
    shaping = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name not in _NOT_SHAPING}
    material = {"content": content_sha256, "format": fmt, "parser": version, "options": shaping}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Probe:
    """What the cache knows of one file: its key (None: never cached) and its document, if kept."""

    key: str | None
    document: Document | None = None
    stem: str = ""


class ParseCache:
    def __init__(self, folder: Path, options: ParseOptions) -> None:
        self.folder = Path(folder)
        self.options = options
        self.version = parser_version(self.folder)

    def probe(self, path: Path) -> Probe:
        try:
            data = path.read_bytes()
        except OSError:
            return Probe(None)  # the parser reports why it cannot be read
        fmt = format_of(path) or "txt"
        if fmt == "pdf" and b"/Encrypt" in data:  # the trailer's key, never compressed; ~1 ms for 10 MB
            return Probe(None)
        digest = hashlib.sha256(data).hexdigest()
        probe = Probe(cache_key(digest, fmt, self.options, self.version), stem=path.stem)
        for name in self._names(probe):
            probe.document = self._load(self.folder / name, path, digest)
            if probe.document is not None:
                break
        return probe

    def store(self, probe: Probe, path: Path, document: Document) -> None:
        assert probe.key is not None
        bound = document.title in (path.stem, clean_inline(path.stem))
        name = self._names(probe)[1 if bound else 0]
        write_atomic(self.folder / name, document.model_dump_json().encode("utf-8"))

    def prune(self, used: list[Probe]) -> int:
        """Delete the entries no file of this run used; returns how many went."""
        if not self.folder.is_dir():
            return 0
        keep = {name for probe in used if probe.key for name in self._names(probe)}
        stale = [p for p in self.folder.glob("*.json") if p.name not in keep]
        stale += [p for p in self.folder.glob(".*.tmp") if _older_than(p, _STALE_TEMP_SECONDS)]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    @staticmethod
    def _names(probe: Probe) -> tuple[str, str]:
        """The entry for any name of the file, and the entry bound to this file's stem (for a
        document whose title is the stem: a fresh parse under another name titles it otherwise)."""
        stem = hashlib.sha256(probe.stem.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return f"{probe.key}.json", f"{probe.key}.{stem}.json"

    @staticmethod
    def _load(entry_path: Path, path: Path, digest: str) -> Document | None:
        try:
            document = Document.model_validate_json(entry_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            log.debug(f"{path.name}: parse cache entry {entry_path.name} is unusable ({error}); parsing again")
            return None
        if not (document.id and digest.startswith(document.id)):
            log.debug(f"{path.name}: parse cache entry {entry_path.name} is for another file; parsing again")
            return None
        document.path = str(path)
        return document


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False
