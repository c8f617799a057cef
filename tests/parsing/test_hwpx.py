"""HWPX parsing on the real corpus, plus small HWPX files built here for what the corpus lacks
(notes, outline styles, the 2016 namespace, under-spaced Korean).

Where a test needs to know what a file holds, it asks the file itself through zipfile and lxml
(Hangul's own preview text, the tables' rowCnt/colCnt) or uses values read in the file by hand.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from slm_factory.parsing.base import ParseOptions
from slm_factory.parsing.registry import parse_file
from slm_factory.records import Document

MOIS = "kr-mois-public-data-standard-transit-transfer-center-2023.hwpx"
MFDS = "kr-mfds-medical-device-admin-notice-2025-477.hwpx"
NO_MANIFEST = "edge-kr-ulsan-namgu-tax-ordinance-notice-no-manifest.hwpx"
BACKSLASH = "edge-kr-pps-goods-bid-notice-backslash-zip-paths.hwpx"

OFF = ParseOptions(hwpx_apply_spacing=False)
ON = ParseOptions(hwpx_apply_spacing=True)

HP_2011 = "http://www.hancom.co.kr/hwpml/2011/paragraph"
HP_2016 = "http://www.hancom.co.kr/hwpml/2016/paragraph"
HS = "http://www.hancom.co.kr/hwpml/2011/section"
HH = "http://www.hancom.co.kr/hwpml/2011/head"


def _parse(path: Path, options: ParseOptions = OFF) -> Document:
    outcome = parse_file(path, options)
    assert outcome.error is None, outcome.error
    assert outcome.document is not None
    return outcome.document


def _squash(text: str) -> str:
    """Compare text without whitespace: spacing is layout, not content."""
    return re.sub(r"\s+", "", text.replace("\\|", "|"))


def _entries(path: Path) -> dict[str, str]:
    """Normalised entry name → real entry name (the corpus has a backslash-named file)."""
    with zipfile.ZipFile(path) as archive:
        return {name.replace("\\", "/"): name for name in archive.namelist()}


def _preview_lines(path: Path) -> list[str]:
    """Hangul writes the start of the document to Preview/PrvText.txt; table cells come as <…>."""
    with zipfile.ZipFile(path) as archive:
        raw = archive.read(_entries(path)["Preview/PrvText.txt"])
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8")
    lines = [line for line in text.splitlines() if len(line.strip()) >= 8]
    plain = [line for line in lines if "<" not in line]
    cells = [cell for line in lines for cell in re.findall(r"<([^<>]{8,})>", line)]
    # a template placeholder means the preview predates the filled-in document
    return [line for line in plain + cells if "{{" not in line]


def _section_xml(path: Path, name: str) -> etree._Element:
    with zipfile.ZipFile(path) as archive:
        return etree.fromstring(archive.read(_entries(path)[name]))


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


# -- the corpus -------------------------------------------------------------------------------


def _corpus_hwpx() -> list[str]:
    from tests.conftest import CORPUS

    return sorted(path.name for path in CORPUS.glob("*.hwpx")) or ["<corpus absent>"]


@pytest.mark.parametrize("name", _corpus_hwpx())
def test_every_corpus_hwpx_holds_hangul_preview_text(corpus: Path, name: str) -> None:
    document = _parse(corpus / name)
    assert document.format == "hwpx" and document.language == "ko"
    assert sum("\uac00" <= char <= "\ud7a3" for char in document.text) >= 300
    preview = _preview_lines(corpus / name)
    assert preview, "the preview text is the oracle here; it must not be empty"
    text = _squash(document.text)
    missing = [line for line in preview if _squash(line) not in text]
    assert not missing


def test_korean_sentence_and_metadata(corpus: Path) -> None:
    document = _parse(corpus / MFDS)
    assert "일상 속 자주 사용하지 않는 한자어를 알기 쉬운 용어로 순화하고" in document.text
    assert document.metadata["author"] == "정재용 사무관"
    assert document.metadata["subject"] == "의료기기 허가ㆍ신고ㆍ심사 등에 관한 규정"
    assert document.metadata["modified"] == "2025-11-21T08:15:31Z"
    # the package title here is the template's ("법령안"); the first line of the page is better
    assert document.title == "생산·수입 중단 보고대상 의료기기 및"


def test_title_from_a_one_cell_title_box(corpus: Path) -> None:
    document = _parse(corpus / "kr-gangbuk-419-autumn-music-festival-event-rfp-2023.hwpx")
    assert "제2회 가을밤의 음악축제" in document.title and "제안요청서" in document.title


def _field_table(document: Document) -> list[list[str]]:
    matches = [t.rows for t in document.tables if t.rows and t.rows[0][:2] == ["NO", "항목명"]]
    assert len(matches) == 1
    return matches[0]


def test_transit_field_table_values_and_shape(corpus: Path) -> None:
    rows = _field_table(_parse(corpus / MOIS))
    declared = [
        t
        for t in _section_xml(corpus / MOIS, "Contents/section0.xml").iter("{*}tbl")
        if t.get("rowCnt") == "37"
    ]
    assert len(declared) == 1
    assert (len(rows), len(rows[0])) == (
        int(declared[0].get("rowCnt")),
        int(declared[0].get("colCnt")),
    )
    by_name = {row[1]: row for row in rows}
    assert by_name["환승센터명"][0] == "1"
    assert by_name["환승센터명"][2] == "필수"
    assert by_name["환승센터명"][6] == "서울역복합환승센터"
    assert by_name["위도"][6] == "37.5180081"
    assert by_name["데이터기준일자"][5] == "YYYY-MM-DD"
    assert [row[0] for row in rows[1:]] == [str(number) for number in range(1, 37)]


def test_nested_merged_table_is_flattened_into_its_cell_and_emitted_after(corpus: Path) -> None:
    document = _parse(corpus / MOIS)
    outer = _field_table(document)
    code_cell = {row[1]: row for row in outer}["시군구코드"][3]
    # the inner table reads as one line per row, each merged cell said once
    assert code_cell.endswith(
        "법정 땅이름\n구분 | 코드체계\n코드체계 | ➀➁➂➃➄\n코드설명 | ➀➁ | 숫자 | 시도\n➂➃➄ | 숫자 | 시군구"
    )
    # the inner table (cellSpan colSpan=3 and rowSpan=2 in the XML): merged text in its first slot
    position = next(index for index, table in enumerate(document.tables) if table.rows == outer)
    inner = document.tables[position + 1]  # outer first, then what was nested in it
    assert [[" ".join(cell.split()) for cell in row] for row in inner.rows] == [
        ["구분", "코드체계", "", ""],
        ["코드체계", "➀➁➂➃➄", "", ""],
        ["코드설명", "➀➁", "숫자", "시도"],
        ["", "➂➃➄", "숫자", "시군구"],
    ]
    assert sorted(inner.spans) == [(0, 1, 1, 3), (1, 1, 1, 3), (2, 0, 2, 1)]


def _columns_with_text(table: etree._Element) -> set[str]:
    return {
        address.get("colAddr", "")
        for cell in table.iter("{*}tc")
        if cell.getparent() is not None and cell.getparent().getparent() is table
        and any((t.text or "").strip() for t in cell.iter("{*}t"))
        for address in cell.iter("{*}cellAddr")
        if address.getparent() is cell
    }


@pytest.mark.parametrize("name", [MOIS, BACKSLASH, MFDS])
def test_every_table_with_text_is_read(corpus: Path, name: str) -> None:
    """Every hp:tbl's words are in the text; a box with text in one column only (a title box, a
    boxed note) is read as paragraphs, not as a table; the others are Document tables."""
    path = corpus / name
    document = _parse(path)
    text = _squash(document.text)
    tables = [
        table
        for entry in _entries(path)
        if re.match(r"Contents/section\d+\.xml$", entry)
        for table in _section_xml(path, entry).iter("{*}tbl")
        if any((t.text or "").strip() for t in table.iter("{*}t"))
    ]
    boxes = [table for table in tables if len(_columns_with_text(table)) == 1]
    assert len(document.tables) <= len(tables) - len(boxes)
    paragraphs = _squash(" ".join(block.text for block in document.blocks if block.kind != "table"))
    for table in tables:
        words = [_squash("".join(t.itertext())) for t in table.iter("{*}t")]
        assert all(word in text for word in words if word)
        if table in boxes and table.getparent().getparent().getparent().tag.endswith("sec"):
            assert all(word in paragraphs for word in words if word)  # a top-level box reads as paragraphs


def test_file_without_manifest_reads_both_sections_in_order(corpus: Path) -> None:
    assert "META-INF/manifest.xml" not in _entries(corpus / NO_MANIFEST)
    document = _parse(corpus / NO_MANIFEST)
    text = document.text
    assert "울산광역시 남구 공고 제2021-174호" in text
    assert text.index("이 조례는 공포한 날부터 시행한다.") < text.index("신ㆍ구조문대비표")
    assert document.tables[-1].rows[0] == ["현 행", "개 정 안"]
    assert document.tables[-1].rows[1] == ["제1절 재산분", "제1절 사업소분"]


def test_backslash_entry_names_are_read(corpus: Path) -> None:
    assert "Contents\\section0.xml" in _entries(corpus / BACKSLASH).values()
    document = _parse(corpus / BACKSLASH)
    assert "조달청 물품공고 제R26BK01360023-000호" in document.text
    assert document.title == "조달물자(물품) 구매입찰 공고"


def test_sections_follow_the_spine(corpus: Path) -> None:
    """Four sections in MFDS: a line from each appears in the order content.hpf lists them."""
    text = _parse(corpus / MFDS).text
    marks = [
        "보고 방법 일부개정고시(안)",
        "식품의약품안전처고시",
        "생산·수입중단 보고대상 의료기기 추천서",
        "신ㆍ구조문대비표",
    ]
    positions = [text.find(mark) for mark in marks]
    assert -1 not in positions and positions == sorted(positions)


def test_spacing_option_leaves_well_spaced_documents_alone(corpus: Path) -> None:
    """Kiwi's spacer splits compounds in good text ("의료기기" → "의료 기기"); it must not run here."""
    assert _parse(corpus / MFDS, ON).text == _parse(corpus / MFDS, OFF).text


# -- files built here -------------------------------------------------------------------------


def _section(body: str, hp: str = HP_2011) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><hs:sec xmlns:hs="{HS}" xmlns:hp="{hp}">{body}</hs:sec>'


def _p(inner: str, style: str = "0", shape: str = "0") -> str:
    return f'<hp:p paraPrIDRef="{shape}" styleIDRef="{style}"><hp:run>{inner}</hp:run></hp:p>'


def _t(text: str) -> str:
    return f"<hp:t>{text}</hp:t>"


def _cell(row: int, col: int, inner: str, row_span: int = 1, col_span: int = 1) -> str:
    return (
        f'<hp:tc><hp:subList>{inner}</hp:subList><hp:cellAddr colAddr="{col}" rowAddr="{row}"/>'
        f'<hp:cellSpan colSpan="{col_span}" rowSpan="{row_span}"/></hp:tc>'
    )


def _table(rows: list[list[str]], cols: int) -> str:
    body = "".join("<hp:tr>" + "".join(cells) + "</hp:tr>" for cells in rows)
    return f'<hp:tbl rowCnt="{len(rows)}" colCnt="{cols}">{body}</hp:tbl>'


HEADER = f"""<?xml version="1.0" encoding="UTF-8"?>
<hh:head xmlns:hh="{HH}"><hh:refList>
<hh:paraProperties>
  <hh:paraPr id="5"><hh:heading type="OUTLINE" idRef="0" level="1"/></hh:paraPr>
  <hh:paraPr id="6"><hh:heading type="BULLET" idRef="1" level="0"/></hh:paraPr>
</hh:paraProperties>
<hh:styles>
  <hh:style id="0" type="PARA" name="바탕글" engName="Normal" paraPrIDRef="0"/>
  <hh:style id="2" type="PARA" name="개요 1" engName="Outline 1" paraPrIDRef="0"/>
</hh:styles></hh:refList></hh:head>"""


def _package(sections: list[str], title: str = "") -> str:
    items = "".join(
        f'<opf:item id="s{i}" href="Contents/{name}" media-type="application/xml"/>'
        for i, name in enumerate(sections)
    )
    spine = "".join(f'<opf:itemref idref="s{i}"/>' for i in range(len(sections)))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><opf:package xmlns:opf="http://www.idpf.org/2007/opf/">'
        f'<opf:metadata><opf:title>{title}</opf:title><opf:meta name="creator" content="text">홍길동</opf:meta>'
        f"</opf:metadata><opf:manifest>{items}</opf:manifest><opf:spine>{spine}</opf:spine></opf:package>"
    )


def _write_hwpx(
    path: Path, sections: dict[str, str], header: str | None = HEADER, package: str | None = None
) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/hwp+zip")
        if package is not None:
            archive.writestr("Contents/content.hpf", package)
        if header is not None:
            archive.writestr("Contents/header.xml", header)
        for name, xml in sections.items():
            archive.writestr(f"Contents/{name}", xml)
    return path


RICH_BODY = "".join(
    [
        _p(_t("추진 배경"), style="2"),
        _p(_t("세부 내용"), shape="5"),
        _p(_t("첫째 항목입니다"), shape="6"),
        _p(
            _t("본문에 각주가 있습니다")
            + '<hp:ctrl><hp:footNote number="1"><hp:subList>'
            + _p(_t("각주 내용입니다"))
            + "</hp:subList></hp:footNote></hp:ctrl>"
            + _t(" 계속되는 문장.")
        ),
        _p(
            _table(
                [
                    [
                        _cell(0, 0, _p(_t("항목"))),
                        _cell(
                            0,
                            1,
                            _p(
                                _table(
                                    [
                                        [
                                            _cell(0, 0, _p(_t("안쪽 가"))),
                                            _cell(0, 1, _p(_t("안쪽 나"))),
                                        ]
                                    ],
                                    2,
                                )
                            ),
                        ),
                    ],
                    [_cell(1, 0, _p(_t("합계 100")), col_span=2)],
                ],
                2,
            )
        ),
        _p(
            "<hp:rect><hp:drawText><hp:subList>"
            + _p(_t("글상자 안의 문장"))
            + "</hp:subList></hp:drawText>"
            "<hp:shapeComment>사각형입니다.</hp:shapeComment></hp:rect>"
        ),
        _p("<hp:t>첫 줄<hp:lineBreak/>둘째 줄<hp:tab/>탭 뒤</hp:t>"),
        _p(
            _t("미주가 붙은 문장")
            + '<hp:ctrl><hp:endNote number="1"><hp:subList>'
            + _p(_t("미주 내용"))
            + "</hp:subList></hp:endNote></hp:ctrl>"
        ),
    ]
)


@pytest.mark.parametrize("hp", [HP_2011, HP_2016], ids=["2011", "2016"])
def test_structure_of_a_built_hwpx(tmp_path: Path, hp: str) -> None:
    path = _write_hwpx(
        tmp_path / "rich.hwpx",
        {"section0.xml": _section(RICH_BODY, hp)},
        package=_package(["section0.xml"]),
    )
    document = _parse(path)
    blocks = [(block.kind, block.level, block.text) for block in document.blocks]
    assert blocks[0] == ("heading", 1, "추진 배경")
    assert blocks[1] == ("heading", 2, "세부 내용")
    assert blocks[2] == ("list_item", 0, "첫째 항목입니다")
    assert blocks[3] == ("paragraph", 0, "본문에 각주가 있습니다[^1] 계속되는 문장.")
    assert document.tables[0].rows == [["항목", "안쪽 가 | 안쪽 나"], ["합계 100", ""]]
    assert document.tables[0].spans == [(1, 0, 1, 2)]
    assert document.tables[1].rows == [["안쪽 가", "안쪽 나"]]
    texts = [text for _, _, text in blocks]
    assert "글상자 안의 문장" in texts and "사각형입니다." not in document.text
    assert "첫 줄\n둘째 줄 탭 뒤" in texts
    # notes close the section, after everything else, with their markers
    assert texts[-2:] == ["[^1] 각주 내용입니다", "[^e1] 미주 내용"]
    assert [kind for kind, _, _ in blocks[-2:]] == ["footnote", "footnote"]
    assert document.title == "추진 배경"
    assert document.metadata["author"] == "홍길동"


def test_without_package_sections_go_in_numeric_order(tmp_path: Path) -> None:
    sections = {
        f"section{n}.xml": _section(_p(_t(f"구역 번호 {n} 의 문장"))) for n in (0, 1, 10, 2)
    }
    outcome = parse_file(_write_hwpx(tmp_path / "nopkg.hwpx", sections, header=None), OFF)
    assert outcome.document is not None
    text = outcome.document.text
    order = [text.index(f"구역 번호 {n} 의 문장") for n in (0, 1, 2, 10)]
    assert order == sorted(order)
    assert any("content.hpf" in warning for warning in outcome.warnings)


def test_spine_order_wins_over_file_names(tmp_path: Path) -> None:
    sections = {
        name: _section(_p(_t(f"{name} 의 내용입니다"))) for name in ("section0.xml", "section1.xml")
    }
    path = _write_hwpx(
        tmp_path / "spine.hwpx", sections, package=_package(["section1.xml", "section0.xml"])
    )
    text = _parse(path).text
    assert text.index("section1.xml 의 내용입니다") < text.index("section0.xml 의 내용입니다")


def test_zip_without_sections_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "other.hwpx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<a/>")
    outcome = parse_file(path, OFF)
    assert outcome.error == "other.hwpx: no Contents/section*.xml inside; not an HWPX document"


UNDER_SPACED = "이고시는고시한날부터시행한다다만제조의개정규정은공포후육개월이경과한날부터시행한다"


def test_spacing_fixes_under_spaced_paragraphs_but_not_tables(tmp_path: Path) -> None:
    body = (
        _p(_t(UNDER_SPACED))
        + _p(_t("이 문장은 띄어쓰기가 이미 바르게 되어 있습니다"))
        + _p(_table([[_cell(0, 0, _p(_t(UNDER_SPACED))), _cell(0, 1, _p(_t("1234567")))]], 2))
    )
    path = _write_hwpx(tmp_path / "spacing.hwpx", {"section0.xml": _section(body)})
    off, on = _parse(path, OFF), _parse(path, ON)
    assert off.blocks[0].text == UNDER_SPACED
    spaced = on.blocks[0].text
    assert spaced.replace(" ", "") == UNDER_SPACED  # only spaces were added
    assert spaced.count(" ") >= 8
    assert "고시한 날부터" in spaced
    assert on.blocks[1].text == "이 문장은 띄어쓰기가 이미 바르게 되어 있습니다"
    assert on.tables[0].rows == [[UNDER_SPACED, "1234567"]]


def test_deferred_spacing_in_the_main_process_equals_spacing_in_the_parser(tmp_path: Path) -> None:
    """The parse stage marks under-spaced lines in its workers and respaces them all with one Kiwi
    in its main process (a worker never loads its own); the result is the same document."""
    from slm_factory.parsing import korean

    heading = "1. 개정이유및주요내용을다음과같이정리합니다"
    body = _p(_t(heading)) + _p(_t(UNDER_SPACED)) + _p(_t("이 문장은 띄어쓰기가 이미 바르게 되어 있습니다"))
    body += _p(_table([[_cell(0, 0, _p(_t(UNDER_SPACED)) + _p(_t(UNDER_SPACED + "입니다")))]], 1))
    path = _write_hwpx(tmp_path / "spacing.hwpx", {"section0.xml": _section(body)})
    direct = _parse(path, ON)
    deferred = parse_file(path, ParseOptions(hwpx_apply_spacing=True, defer_hangul_wraps=True), path.name).document
    assert deferred is not None
    assert korean.RESPACE in deferred.text  # left for the main process
    korean.settle_documents([deferred])
    assert korean.RESPACE not in deferred.text
    assert deferred.model_dump() == direct.model_dump()
    assert direct.text != _parse(path, OFF).text  # there was spacing to repair


def test_tracked_deletions_are_left_out(tmp_path: Path) -> None:
    """변경 내용 추적: markers are empty elements inside hp:t, and a deletion can span paragraphs
    and whole tables; insertions are kept. A deletion that never closes is ignored."""
    body = "".join(
        [
            _p(
                '<hp:t>유지<hp:deleteBegin Id="1" TcId="1"/>삭제됨<hp:deleteEnd Id="1" TcId="1" paraend="0"/>'
                ' 남음<hp:insertBegin Id="2" TcId="2"/>추가<hp:insertEnd Id="2" TcId="2" paraend="0"/></hp:t>'
            ),
            _p('<hp:t>앞 문장<hp:deleteBegin Id="3" TcId="3"/>지울 문장</hp:t>'),
            _p(_table([[_cell(0, 0, _p(_t("삭제된 표"))), _cell(0, 1, _p(_t("삭제된 칸")))]], 2)),
            _p('<hp:t>지운 끝<hp:deleteEnd Id="3" TcId="3" paraend="1"/>뒤 문장</hp:t>'),
            _p('<hp:t>닫히지 않은<hp:deleteBegin Id="9" TcId="9"/> 표시는 무시</hp:t>'),
            _p(_table([[_cell(0, 0, _p(_t("남은 표"))), _cell(0, 1, _p(_t("남은 칸")))]], 2)),
        ]
    )
    path = _write_hwpx(tmp_path / "tracked.hwpx", {"section0.xml": _section(body)}, package=_package(["section0.xml"]))
    document = _parse(path)
    texts = [block.text for block in document.blocks if block.kind == "paragraph"]
    assert texts == ["유지 남음추가", "앞 문장", "뒤 문장", "닫히지 않은 표시는 무시"]
    assert [table.rows for table in document.tables] == [[["남은 표", "남은 칸"]]]
    assert "삭제" not in document.text and "지울" not in document.text


def test_inline_pictures_and_equations_keep_their_sentence_whole(tmp_path: Path) -> None:
    picture = '<hp:pic><hp:shapeComment>그림입니다.</hp:shapeComment></hp:pic>'
    equation = "<hp:equation><hp:script>rm {A} over {B} `times` 100</hp:script></hp:equation>"
    body = "".join(
        [
            _p(_t("아래 그림") + picture + _t("과 같이 배치한다.")),
            _p(_t("비율은 ") + equation + _t(" 으로 구한다.")),
            _p(_t("글상자 앞") + "<hp:rect><hp:drawText><hp:subList>" + _p(_t("글상자 문장"))
               + "</hp:subList></hp:drawText></hp:rect>" + _t("글상자 뒤")),
        ]
    )
    path = _write_hwpx(tmp_path / "inline.hwpx", {"section0.xml": _section(body)}, package=_package(["section0.xml"]))
    texts = [block.text for block in _parse(path).blocks]
    assert texts == ["아래 그림과 같이 배치한다.", "비율은 {A}/{B} × 100 으로 구한다.", "글상자 앞", "글상자 문장", "글상자 뒤"]


def test_hand_numbered_outline_titles_become_headings(corpus: Path) -> None:
    """Korean documents type their outline numbers (Ⅰ. > 1. > 가.); a short title under one is a
    heading, a numbered sentence or a labelled value ("가. 행 사 명: …") stays a paragraph."""
    spec = _parse(corpus / "kr-navy-hydraulic-jack-30t-purchase-spec-2025.hwpx")
    headings = [(block.level, block.text) for block in spec.blocks if block.kind == "heading"]
    assert [text.split(".")[0] for _, text in headings] == [str(n) for n in range(1, 9)]
    assert headings[0] == (2, "1. 적용범위 및 용도") and {level for level, _ in headings} == {2}
    rfp = _parse(corpus / "kr-gangbuk-419-autumn-music-festival-event-rfp-2023.hwpx")
    blocks = [(block.kind, block.level, block.text) for block in rfp.blocks]
    start = blocks.index(("heading", 1, "I. 과업안내"))  # a one-cell box around the chapter title
    assert blocks[start + 1] == ("heading", 2, "1. 행사개요")
    assert blocks[start + 2] == ("paragraph", 0, "가. 행 사 명: 제2회 가을밤의 음악축제")
    assert ("heading", 1, "Ⅱ. 과업 세부내용") in blocks and ("heading", 3, "가. 행사운영 분야") in blocks
    assert "제안요청서" in rfp.title  # the title box is still the title


@pytest.mark.parametrize(
    ("line", "level"),
    [("Ⅱ. 과업 세부내용", 1), ("1. 행사개요", 2), ("가. 과업범위", 3), ("1. 관리 책임", 2),
     ("1. 행사개요 ··· 3", None), ("Ⅰ. 제안경위 … 1", None), ("가. 명칭을 상위법에 맞게 정비함", None),
     ("1. 본 사업은 구청이 추진한다.", None), ("나. 행사일시: 2023. 10. 21.", None), ("1) 문화행사", None),
     ("2023. 7. 5.", None)],
)
def test_outline_title_rule(line: str, level: int | None) -> None:
    from slm_factory.parsing.hwpx import _outline_level

    assert _outline_level(line) == level


def test_a_run_of_numbered_titles_is_a_list_not_headings(tmp_path: Path) -> None:
    """A title heads a section only if it is not in a numbered list: "1. 입찰공고서", "2. 입찰유의서"
    one after the other are items; a title after labelled values of its own kind still heads."""
    lines = [
        "1. 행사개요", "가. 행 사 명: 가을밤의 음악축제", "나. 일    시: 2023. 10. 21.", "다. 주요 프로그램",
        "공연 3팀과 체험 부스를 운영한다.", "2. 관련 규정", "1. 입찰공고서", "2. 입찰유의서", "3. 계약일반조건",
        "위 규정을 따른다.", "3. 기타사항",
    ]
    path = _write_hwpx(tmp_path / "outline.hwpx", {"section0.xml": _section("".join(_p(_t(line)) for line in lines))})
    blocks = [(block.kind, block.level) for block in _parse(path).blocks]
    assert blocks == [
        ("heading", 2), ("paragraph", 0), ("paragraph", 0), ("heading", 3), ("paragraph", 0), ("heading", 2),
        ("paragraph", 0), ("paragraph", 0), ("paragraph", 0), ("paragraph", 0), ("heading", 2),
    ]
