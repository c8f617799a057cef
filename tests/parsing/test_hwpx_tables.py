"""HWPX tables: a merged cell's text once (cellAddr/cellSpan), and a table used for layout read as
its content with the body's rules (outline titles, lists, notes), in HWPX files written here.

The 27-column form and the random forms are the same ones the DOCX tests build, written here in
HWPX's own terms: a merged cell is one hp:tc with a cellSpan, and the slots it covers have no hp:tc.
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
from tests.parsing.test_docx_tables import FORM, _check_said_once, _random_form, _squash, _without_table_marks
from tests.parsing.test_hwpx import _cell, _p, _package, _section, _t, _table, _write_hwpx

OFF = ParseOptions(hwpx_apply_spacing=False)
MCST = "kr-mcst-press-release-no-images.hwpx"  # the corpus press release without its six pictures


def _parse(path: Path) -> Document:
    outcome = parse_file(path, OFF)
    assert outcome.error is None, outcome.error
    assert outcome.document is not None
    return outcome.document


def _hwpx(path: Path, body: str) -> Path:
    return _write_hwpx(path, {"section0.xml": _section(body)}, package=_package(["section0.xml"]))


def _blocks(document: Document) -> list[tuple[str, int, str]]:
    return [(block.kind, block.level, block.text) for block in document.blocks]


def _paragraphs(*texts: str, shape: str = "0", style: str = "0") -> str:
    return "".join(_p(_t(text), shape=shape, style=style) for text in texts)


def _form_table(form: list[list[tuple[str, int, str | None]]]) -> str:
    """A form given as DOCX-style rows (vMerge restart/continue) as HWPX cells with rowSpan."""
    starts = [[sum(span for _, span, _ in row[:index]) for index in range(len(row))] for row in form]
    rows = []
    for r, row in enumerate(form):
        cells = []
        for index, (text, span, merge) in enumerate(row):
            if merge == "continue":
                continue  # HWPX has no cell where a merge goes on; the cell above spans down
            row_span = 1
            if merge == "restart":
                for below, below_starts in zip(form[r + 1 :], starts[r + 1 :]):
                    cont = [m for (_, _, m), start in zip(below, below_starts) if start == starts[r][index]]
                    if cont != ["continue"]:
                        break
                    row_span += 1
            cells.append(_cell(r, starts[r][index], _p(_t(text)) if text else _p(""), row_span, span))
        rows.append(cells)
    return _table(rows, 27)


# -- merged cells -----------------------------------------------------------------------------


def test_header_spanning_three_columns_and_a_three_row_merge(tmp_path: Path) -> None:
    table = _table(
        [
            [_cell(0, 0, _p(_t("분기별 매출")), col_span=3)],
            [_cell(1, 0, _p(_t("서울")), row_span=3), _cell(1, 1, _p(_t("1분기"))), _cell(1, 2, _p(_t("120")))],
            [_cell(2, 1, _p(_t("2분기"))), _cell(2, 2, _p(_t("135")))],
            [_cell(3, 1, _p(_t("3분기"))), _cell(3, 2, _p(_t("150")))],
        ],
        3,
    )
    document = _parse(_hwpx(tmp_path / "merged.hwpx", _p(table)))
    (table_record,) = document.tables
    assert table_record.rows == [
        ["분기별 매출", "", ""],
        ["서울", "1분기", "120"],
        ["", "2분기", "135"],
        ["", "3분기", "150"],
    ]
    assert sorted(table_record.spans) == [(0, 0, 1, 3), (1, 0, 3, 1)]
    assert document.text.count("분기별 매출") == 1 and document.text.count("서울") == 1
    _check_said_once(table_record)


def test_korean_form_on_a_27_column_grid_reads_as_labels_and_values(tmp_path: Path) -> None:
    document = _parse(_hwpx(tmp_path / "form.hwpx", _p(_t("아래 서식을 작성합니다.")) + _p(_form_table(FORM))))
    (table,) = document.tables
    words = [text for row in FORM for text, _, _ in row if text]
    for word in words:
        assert document.text.count(word) == 1, word
    assert len(table.rows[0]) == 11  # the column lines some cell starts or ends on, not 27
    assert len(_without_table_marks(document.text)) == len(_squash("아래 서식을 작성합니다." + "".join(words)))
    assert (2, 0, 3, 1) in table.spans  # 청구인 over its three rows
    _check_said_once(table)


@pytest.mark.parametrize("seed", range(40))
def test_random_forms_say_each_cell_once(tmp_path: Path, seed: int) -> None:
    form = _random_form(seed)
    document = _parse(_hwpx(tmp_path / f"form{seed}.hwpx", _p(_form_table(form))))
    words = [text for row in form for text, _, _ in row if text]
    (table,) = document.tables
    assert sorted(cell for row in table.rows for cell in row if cell) == sorted(words)
    assert len(_without_table_marks(document.text)) == len(_squash("".join(words)))
    _check_said_once(table)


# -- layout tables ----------------------------------------------------------------------------

PROSE = [
    "본 사업은 지역 주민이 공공데이터를 쉽게 활용할 수 있도록 개방 시스템을 구축하고, 데이터 품질을 "
    "관리하며, 첫해의 유지관리 비용을 지원하는 것을 목적으로 한다.",
    "신청서는 세 명의 심사위원이 필요성, 실현 가능성, 다른 공공기관에 대한 데이터의 가치를 기준으로 "
    "평가하며, 결과는 신청 마감 후 한 달 안에 통보한다.",
    "선정된 사업은 열두 달 안에 데이터를 공공누리 유형으로 개방하고, 둘째 해 말에 활용 실적을 보고하여야 한다.",
]


def test_one_cell_box_is_read_as_its_blocks(tmp_path: Path) -> None:
    """A page boxed in one cell: an outline-styled heading, paragraphs with a note, a bulleted
    list; the note is read once (the table is judged before anything in it is read)."""
    note = '<hp:ctrl><hp:footNote number="1"><hp:subList>' + _p(_t("인구 5만 명 이하 시군")) + "</hp:subList></hp:footNote></hp:ctrl>"
    cell = (
        _paragraphs("사업 개요", style="2")
        + _p(_t(PROSE[0]) + note)
        + _paragraphs(PROSE[1], PROSE[2])
        + _paragraphs("온라인 신청", "예산서 첨부", "서약서 서명", shape="6")
    )
    document = _parse(_hwpx(tmp_path / "box.hwpx", _p(_table([[_cell(0, 0, cell)]], 1))))
    assert document.tables == []
    assert _blocks(document) == [
        ("heading", 1, "사업 개요"),
        ("paragraph", 0, PROSE[0] + "[^1]"),
        ("paragraph", 0, PROSE[1]),
        ("paragraph", 0, PROSE[2]),
        ("list_item", 0, "온라인 신청"),
        ("list_item", 0, "예산서 첨부"),
        ("list_item", 0, "서약서 서명"),
        ("footnote", 0, "[^1] 인구 5만 명 이하 시군"),
    ]


def test_one_column_of_sections_and_a_two_column_prose_layout(tmp_path: Path) -> None:
    column = _table([[_cell(r, 0, _paragraphs(f"{r + 1}. 추진 단계", f"{r + 1}단계의 세부 내용입니다."))] for r in range(3)], 1)
    # two prose cells side by side (Korean says in 200 characters what takes English 500: three paragraphs)
    prose = _table([[_cell(0, 0, _paragraphs(*PROSE)), _cell(0, 1, _paragraphs("문의처", PROSE[2], PROSE[0]))]], 2)
    document = _parse(_hwpx(tmp_path / "layout.hwpx", _p(column) + _p(prose)))
    assert document.tables == []
    steps = [block for r in range(3) for block in [("heading", 2, f"{r + 1}. 추진 단계"), ("paragraph", 0, f"{r + 1}단계의 세부 내용입니다.")]]
    assert _blocks(document) == steps + [("paragraph", 0, text) for text in (*PROSE, "문의처", PROSE[2], PROSE[0])]


def test_short_celled_data_tables_stay_tables(tmp_path: Path) -> None:
    contacts = _table(
        [
            [_cell(0, 0, _p(_t("담당 부서"))), _cell(0, 1, _p(_t("체육국"))), _cell(0, 2, _p(_t("책임자"))), _cell(0, 3, _p(_t("정태경")))],
            [_cell(1, 0, _p(_t("(진천선수촌)"))), _cell(1, 1, _p(_t("체육정책과"))), _cell(1, 2, _p(_t("담당자"))), _cell(1, 3, _p(_t("최준규")))],
        ],
        4,
    )
    # several short lines in a cell ("기 / 술 / 능 / 력") are not prose
    scores = _table(
        [
            [_cell(0, 0, _paragraphs("구 분")), _cell(0, 1, _paragraphs("평가 사항"))],
            [_cell(1, 0, _paragraphs("기", "술", "평", "가")), _cell(1, 1, _paragraphs("(1) 근무인력 보유상태 (6점)", "(2) 수행실적 (8점)"))],
        ],
        2,
    )
    document = _parse(_hwpx(tmp_path / "data.hwpx", _p(contacts) + _p(scores)))
    assert [table.rows for table in document.tables] == [
        [["담당 부서", "체육국", "책임자", "정태경"], ["(진천선수촌)", "체육정책과", "담당자", "최준규"]],
        [["구 분", "평가 사항"], ["기\n술\n평\n가", "(1) 근무인력 보유상태 (6점)\n(2) 수행실적 (8점)"]],
    ]


def test_boxed_chapter_title_is_a_heading_and_a_boxed_numbered_list_is_not(tmp_path: Path) -> None:
    title = _table([[_cell(0, 0, _p(_t("Ⅰ. 과업안내")))]], 1)
    numbered = _table([[_cell(0, 0, _paragraphs("[관련 규정]", "1. 입찰공고서", "2. 입찰유의서", "3. 계약일반조건"))]], 1)
    body = _p(title) + _paragraphs("1. 행사개요", "가. 행 사 명: 가을밤의 음악축제") + _p(numbered) + _paragraphs("2. 과업범위", "행사 운영 전반")
    blocks = _blocks(_parse(_hwpx(tmp_path / "outline.hwpx", body)))
    assert blocks == [
        ("heading", 1, "Ⅰ. 과업안내"),
        ("heading", 2, "1. 행사개요"),
        ("paragraph", 0, "가. 행 사 명: 가을밤의 음악축제"),
        ("paragraph", 0, "[관련 규정]"),
        ("paragraph", 0, "1. 입찰공고서"),
        ("paragraph", 0, "2. 입찰유의서"),
        ("paragraph", 0, "3. 계약일반조건"),
        ("heading", 2, "2. 과업범위"),  # the list in the box does not run on past its border
        ("paragraph", 0, "행사 운영 전반"),
    ]


def test_title_from_a_boxed_title_of_several_lines(tmp_path: Path) -> None:
    box = _table([[_cell(0, 0, _paragraphs("- 4·19민주묘지에 울려퍼지는 -", "『제2회 가을밤의 음악축제』", "행사대행 용역 제안요청서"))]], 1)
    document = _parse(_hwpx(tmp_path / "title.hwpx", _p(box) + _paragraphs("본문 문장입니다.")))
    assert document.title == "- 4·19민주묘지에 울려퍼지는 - 『제2회 가을밤의 음악축제』 행사대행 용역 제안요청서"
    assert [kind for kind, _, _ in _blocks(document)] == ["paragraph"] * 4


def test_nested_tables_are_data_or_layout_by_the_same_rule(tmp_path: Path) -> None:
    inner_data = _table([[_cell(0, 0, _p(_t("항목"))), _cell(0, 1, _p(_t("금액")))], [_cell(1, 0, _p(_t("임차료"))), _cell(1, 1, _p(_t("1,200")))]], 2)
    box = _table([[_cell(0, 0, _p(_t("예산")) + _p(inner_data))]], 1)
    inner_box = _table([[_cell(0, 0, _p(_t("붙임 참조")))]], 1)
    data = _table([[_cell(0, 0, _p(_t("구분"))), _cell(0, 1, _p(_t("비고")))], [_cell(1, 0, _p(_t("임차료"))), _cell(1, 1, _p(_t("연간") + inner_box))]], 2)
    document = _parse(_hwpx(tmp_path / "nested.hwpx", _p(box) + _p(data)))
    assert [block.kind for block in document.blocks] == ["paragraph", "table", "table"]
    assert document.tables[0].rows == [["항목", "금액"], ["임차료", "1,200"]]
    assert document.tables[1].rows == [["구분", "비고"], ["임차료", "연간\n붙임 참조"]]
    assert document.text.count("붙임 참조") == 1


def test_deeply_nested_boxes(tmp_path: Path) -> None:
    body = _p(_t("가장 안쪽 문장"))
    for _ in range(30):
        body = _p(_table([[_cell(0, 0, body)]], 1))
    assert _blocks(_parse(_hwpx(tmp_path / "deep.hwpx", body))) == [("paragraph", 0, "가장 안쪽 문장")]
    for _ in range(50):  # past libxml2's depth limit: one clear line, not a crash
        body = _p(_table([[_cell(0, 0, body)]], 1))
    outcome = parse_file(_hwpx(tmp_path / "deeper.hwpx", body), OFF)
    assert outcome.document is None and outcome.error is not None and "\n" not in outcome.error
    assert outcome.error.startswith("deeper.hwpx: ")


# -- real documents ---------------------------------------------------------------------------


def test_press_release_title_box_reads_as_paragraphs(data_dir: Path) -> None:
    """The MCST press release has four tables: the banner and the release times (one-row records),
    the headline box (one column), the contacts (a data table)."""
    document = _parse(data_dir / "hwpx" / MCST)
    assert [table.rows[0][:2] for table in document.tables] == [
        ["문화체육관광부", "보도자료"],
        ["보도시점", "2024. 1. 2.(화) 08:00"],
        ["담당 부서", "체육국"],
    ]
    blocks = _blocks(document)
    headline = blocks.index(("paragraph", 0, "2024 파리 올림픽·패럴림픽 준비하는 우리 선수단 격려한다"))
    assert blocks[headline - 1][0] == "table" and blocks[headline + 1] == (
        "paragraph", 0, "- 1. 2. 장미란 제2차관, 진천 국가대표 선수촌, 이천 장애인 국가대표 선수촌 방문"
    )
    assert document.tables[2].rows[1] == ["(진천선수촌)", "체육정책과", "담당자", "사무관", "최준규", "(044-203-3129)"]


def _corpus_hwpx() -> list[str]:
    from tests.conftest import CORPUS

    return sorted(path.name for path in CORPUS.glob("*.hwpx")) or ["<corpus absent>"]


@pytest.mark.parametrize("name", _corpus_hwpx())
def test_corpus_tables_say_each_cell_once(corpus: Path, name: str) -> None:
    """No more filled slots than the file declares cells with text (a repeated merge would add
    some), and each table's Markdown is its cells plus separators."""
    document = _parse(corpus / name)
    with zipfile.ZipFile(corpus / name) as archive:
        sections = [n for n in archive.namelist() if re.search(r"Contents[/\\]section\d+\.xml$", n)]
        roots = [etree.fromstring(archive.read(n)) for n in sections]
    declared = sum(
        1
        for root in roots
        for cell in root.iter("{*}tc")
        if any((t.text or "").strip() or any((m.tail or "").strip() for m in t) for t in cell.iter("{*}t"))
    )
    filled = sum(1 for table in document.tables for row in table.rows for cell in row if cell)
    assert filled <= declared
    for table in document.tables:
        _check_said_once(table)
