"""Guards for untrusted containers: zip archives (DOCX, HWPX) and the XML inside them.

XML is parsed with entity resolution, DTD loading and network access off, and a document
that declares entities is refused, so a billion-laughs file cannot expand and an external
entity cannot read local files. Zip entries are checked against their declared sizes before
anything is inflated and read with a cap on the inflated size and on the total, so a zip
bomb is refused before it fills memory.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import PurePosixPath
from typing import IO, Union

from lxml import etree

from slm_factory.parsing.base import ParseError

MAX_ENTRY_BYTES = 200 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
MAX_RATIO = 200  # compressed→inflated; real office XML stays below 40 (measured on the corpus)
MAX_ENTRIES = 20_000
_SMALL_ENTRY = 1 << 20  # entries this small may have any ratio: a tiny bomb is harmless
_CHUNK = 1 << 20
_PROLOG_SCAN = 64 * 1024

ZipSource = Union[str, "os.PathLike[str]", bytes, IO[bytes]]


def xml_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        recover=False,
    )


def _declares_entities(data: bytes) -> bool:
    """Cheap look at the prolog: a DOCTYPE with an internal subset or an ENTITY line."""
    head = data[:_PROLOG_SCAN]
    if b"<!ENTITY" in head:
        return True
    start = head.find(b"<!DOCTYPE")
    return start >= 0 and b"[" in head[start : start + 2048]


def _entity_refusal(name: str) -> ParseError:
    return ParseError(f"{name}: XML declares entities (possible entity-expansion attack); refused")


def parse_xml(data: bytes, name: str) -> etree._Element:
    """Parse untrusted XML; any DOCTYPE with entity declarations is refused outright.

    The byte check catches the usual attack before libxml2 sees it; the check after parsing
    catches what the byte check cannot see (a UTF-16 file, a long prolog before the DOCTYPE).
    """
    if _declares_entities(data):
        raise _entity_refusal(name)
    try:
        root = etree.fromstring(data, parser=xml_parser())
    except etree.XMLSyntaxError as error:
        message = error.msg or str(error)
        if "entity" in message.lower() or "amplification" in message.lower():
            raise _entity_refusal(name) from None
        raise ParseError(f"{name}: malformed XML ({message})") from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise _entity_refusal(name)
    return root


def _open_zip(source: ZipSource) -> zipfile.ZipFile:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return zipfile.ZipFile(io.BytesIO(bytes(source)))
    return zipfile.ZipFile(source)


class SafeZip:
    """A zip archive whose entries are looked up by normalised name and read with limits.

    Names are normalised so that archives written with Windows backslashes
    (`Contents\\section0.xml`) are read like any other. `path` may be a file path, the
    file's bytes, or a binary file object.
    """

    def __init__(self, path: ZipSource, label: str) -> None:
        self.label = label
        try:
            self._zip = _open_zip(path)
        except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
            raise ParseError(
                f"{label}: not a valid zip container (truncated or damaged file)"
            ) from None
        infos = self._zip.infolist()
        if len(infos) > MAX_ENTRIES:
            self._zip.close()
            raise ParseError(f"{label}: zip holds {len(infos)} entries; refused as a zip bomb")
        self._names = {_normalise(info.filename): info for info in infos}
        declared = sum(info.file_size for info in infos)
        if declared > MAX_TOTAL_BYTES:
            self._zip.close()
            raise ParseError(
                f"{label}: zip would inflate to {declared >> 20} MiB; refused as a zip bomb"
            )
        self._read_total = 0

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def names(self) -> list[str]:
        return list(self._names)

    def has(self, name: str) -> bool:
        return _normalise(name) in self._names

    def _limit(self, info: zipfile.ZipInfo, name: str) -> int:
        """Refuse on the declared sizes alone where they already show a bomb."""
        limit = min(MAX_ENTRY_BYTES, max(info.compress_size, 1) * MAX_RATIO + _SMALL_ENTRY)
        if info.file_size > limit:
            raise ParseError(
                f"{self.label}: {name} would inflate to {info.file_size >> 20} MiB "
                f"from {info.compress_size >> 10} KiB; refused as a zip bomb"
            )
        return limit

    def read(self, name: str) -> bytes:
        """Read one entry, stopping as soon as it inflates past the limits."""
        info = self._names.get(_normalise(name))
        if info is None:
            raise ParseError(f"{self.label}: missing {name}")
        limit = self._limit(info, name)
        parts: list[bytes] = []
        size = 0
        try:
            with self._zip.open(info) as stream:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    self._read_total += len(chunk)
                    if size > limit or self._read_total > MAX_TOTAL_BYTES:
                        raise ParseError(
                            f"{self.label}: {name} inflates past {limit >> 20} MiB; refused as a zip bomb"
                        )
                    parts.append(chunk)
        except RuntimeError:  # zipfile's word for an entry that needs a password
            raise ParseError(
                f"{self.label}: {name} is encrypted; remove the password and save again"
            ) from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
            raise ParseError(f"{self.label}: damaged zip entry {name} ({error})") from None
        return b"".join(parts)

    def read_xml(self, name: str) -> etree._Element:
        return parse_xml(self.read(name), f"{self.label}: {name}")


def _normalise(name: str) -> str:
    return str(PurePosixPath(name.replace("\\", "/"))).lstrip("/")
