"""Hostile containers: entity bombs, zip bombs and external entities in DOCX and HWPX.

Every attack file is built here, goes through `registry.parse_file` like a user's file, and
must come back as one clear error line. Memory is measured in a fresh child process, because
`ru_maxrss` is a per-process high-water mark: a child that parses only the attack files shows
exactly how far they pushed memory above the imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from slm_factory.parsing.base import ParseError, ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.parsing.safety import SafeZip, parse_xml

SRC = Path(__file__).resolve().parents[2] / "src"
BOMB_MIB = 256
MEMORY_BOUND_MIB = 100

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
HP_NS = "http://www.hancom.co.kr/hwpml/2011/paragraph"
HS_NS = "http://www.hancom.co.kr/hwpml/2011/section"

CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    b"</Types>"
)
ROOT_RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Target="word/document.xml" Type="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships/officeDocument"/></Relationships>'
)


def _write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _docx(path: Path, document_xml: bytes) -> Path:
    return _write_zip(
        path,
        {
            "[Content_Types].xml": CONTENT_TYPES,
            "_rels/.rels": ROOT_RELS,
            "word/document.xml": document_xml,
        },
    )


def _hwpx(path: Path, section_xml: bytes) -> Path:
    return _write_zip(
        path, {"mimetype": b"application/hwp+zip", "Contents/section0.xml": section_xml}
    )


def _laughs_doctype(root: str, depth: int = 10) -> str:
    """The classic billion laughs: each entity is ten of the one before (10**depth copies)."""
    lines = ['<!ENTITY lol0 "lol">']
    for level in range(1, depth):
        lines.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return f"<!DOCTYPE {root} [\n" + "\n".join(lines) + "\n]>\n"


def _laughs_docx_xml(encoding: str = "UTF-8") -> bytes:
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        + _laughs_doctype("w:document")
        + f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>'
        "</w:body></w:document>"
    )
    return text.encode(encoding)


def _laughs_hwpx_xml() -> bytes:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + _laughs_doctype("hs:sec")
        + f'<hs:sec xmlns:hs="{HS_NS}" xmlns:hp="{HP_NS}"><hp:p><hp:run><hp:t>&lol9;</hp:t>'
        "</hp:run></hp:p></hs:sec>"
    )
    return text.encode()


def _zip_bomb(path: Path, entry: str) -> Path:
    """One entry of BOMB_MIB MiB of zeros, streamed so this test never holds it in memory."""
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        if entry.startswith("word/"):
            archive.writestr("[Content_Types].xml", CONTENT_TYPES)
            archive.writestr("_rels/.rels", ROOT_RELS)
        with archive.open(entry, "w") as stream:
            for _ in range(BOMB_MIB):
                stream.write(zeros)
    return path


def _understate_size(path: Path, entry: str, declared: int) -> None:
    """Rewrite the central directory so the entry claims a small inflated size (a lying bomb)."""
    data = bytearray(path.read_bytes())
    name = entry.encode()
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        name_length = int.from_bytes(data[start + 28 : start + 30], "little")
        if data[start + 46 : start + 46 + name_length] == name:
            data[start + 24 : start + 28] = declared.to_bytes(4, "little")
            break
        start += 4
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def attacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("attacks")
    files = {
        "laughs_docx": _docx(folder / "laughs.docx", _laughs_docx_xml()),
        "laughs_docx_utf16": _docx(folder / "laughs-utf16.docx", _laughs_docx_xml("UTF-16")),
        "laughs_hwpx": _hwpx(folder / "laughs.hwpx", _laughs_hwpx_xml()),
        "bomb_docx": _zip_bomb(folder / "bomb.docx", "word/document.xml"),
        "bomb_hwpx": _zip_bomb(folder / "bomb.hwpx", "Contents/section0.xml"),
    }
    lying = _zip_bomb(folder / "bomb-lying.hwpx", "Contents/section0.xml")
    _understate_size(lying, "Contents/section0.xml", 64 * 1024)
    files["bomb_hwpx_lying"] = lying
    return files


def test_zip_bombs_are_small_on_disk_and_huge_inflated(attacks: dict[str, Path]) -> None:
    """Check the attack files are what they claim to be before trusting the refusals."""
    for key in ("bomb_docx", "bomb_hwpx"):
        with zipfile.ZipFile(attacks[key]) as archive:
            info = max(archive.infolist(), key=lambda item: item.file_size)
        assert info.file_size == BOMB_MIB << 20
        assert attacks[key].stat().st_size < 1 << 20


EXPECTED_REASON = {
    "laughs_docx": "entit",
    "laughs_docx_utf16": "entit",
    "laughs_hwpx": "entit",
    "bomb_docx": "zip bomb",
    "bomb_hwpx": "zip bomb",
    "bomb_hwpx_lying": "damaged zip entry",
}


@pytest.mark.parametrize("key", sorted(EXPECTED_REASON))
def test_attack_is_refused_with_one_clear_line(attacks: dict[str, Path], key: str) -> None:
    outcome = parse_file(attacks[key], ParseOptions())
    assert outcome.document is None
    assert outcome.error is not None
    assert outcome.error.startswith(attacks[key].name + ": ")
    assert EXPECTED_REASON[key] in outcome.error
    assert "\n" not in outcome.error and "Traceback" not in outcome.error


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
import slm_factory.parsing.docx, slm_factory.parsing.hwpx  # imports are not the attack's cost

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

baseline = peak_kib()
for path in sys.argv[1:]:
    start = time.perf_counter()
    outcome = parse_file(Path(path), ParseOptions())
    print(json.dumps({"file": Path(path).name, "error": outcome.error,
                      "seconds": round(time.perf_counter() - start, 3),
                      "growth_mib": (peak_kib() - baseline) / 1024}))
"""


def test_attacks_stay_in_bounded_memory(attacks: dict[str, Path]) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    paths = [str(attacks[key]) for key in sorted(attacks)]
    command = [sys.executable, "-c", _CHILD, *paths]
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(reports) == len(paths)
    for report in reports:
        print(report)  # shown with -s: seconds and memory per attack
        assert report["error"], report
        # growth is measured from one baseline, so the last figure bounds them all
        assert report["growth_mib"] < MEMORY_BOUND_MIB, report


# -- external entities ------------------------------------------------------------------------


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-TOKEN-7f3a9c")
    return path


def _xxe_document(secret: Path, prolog: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + prolog
        + f'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>Visible text &xxe; end</w:t>'
        "</w:r></w:p></w:body></w:document>"
    ).encode()


def test_docx_external_entity_never_reads_the_file(tmp_path: Path, secret: Path) -> None:
    outcome = parse_file(_docx(tmp_path / "xxe.docx", _xxe_document(secret)), ParseOptions())
    shown = (outcome.error or "") + (outcome.document.text if outcome.document else "")
    assert "TOP-SECRET-TOKEN" not in shown
    assert outcome.error is not None and "entit" in outcome.error


def test_entity_declaration_after_a_long_prolog_is_still_refused(secret: Path) -> None:
    """The byte pre-check looks at the first 64 KiB only; the check after parsing sees the rest."""
    padded = _xxe_document(secret, prolog="<!--" + "x" * 100_000 + "-->\n")
    with pytest.raises(ParseError, match="entit"):
        parse_xml(padded, "padded.xml")


def test_utf16_entity_declaration_is_refused_after_parsing(secret: Path) -> None:
    """UTF-16 hides `<!ENTITY` from a byte search; the parsed DTD still shows it."""
    text = _xxe_document(secret).decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    with pytest.raises(ParseError, match="entit"):
        parse_xml(text.encode("utf-16"), "utf16.xml")


# -- SafeZip ----------------------------------------------------------------------------------


def test_safezip_reads_backslash_names_from_bytes(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "win.zip", {"Contents\\section0.xml": b"<a>text</a>"})
    with SafeZip(path.read_bytes(), "win.zip") as archive:
        assert archive.has("Contents/section0.xml")
        assert archive.read_xml("Contents/section0.xml").text == "text"


def test_safezip_missing_entry_and_damaged_container(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "a.zip", {"x.xml": b"<a/>"})
    with SafeZip(str(path), "a.zip") as archive, pytest.raises(ParseError, match="a.zip: missing"):
        archive.read("word/document.xml")
    with pytest.raises(ParseError, match="not a valid zip container"):
        SafeZip(path.read_bytes()[: len(path.read_bytes()) // 2], "half.zip")


def test_malformed_xml_is_one_line(tmp_path: Path) -> None:
    outcome = parse_file(_docx(tmp_path / "broken.docx", b"<w:document><w:body>"), ParseOptions())
    assert outcome.error is not None
    assert outcome.error.startswith("broken.docx: word/document.xml: malformed XML")
