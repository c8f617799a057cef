"""The review screen: one QA pair at a time beside its source chunk.

Keys approve, reject with a reason, edit the question and answer in place, undo, jump, filter
and move. Every decision goes through ReviewSession (slm_factory.curation.review_log), which
logs it and rebuilds qa_reviewed.json before the key press returns, so quitting or a crash at any
moment loses nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static, TextArea

from slm_factory.curation.review_log import QUICK_REASONS, STATUSES, ReviewSession, Verdict
from slm_factory.records import QAPair

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[^\W\d_]+|\d+")  # letters and digits apart: 31일 → 31, 일
# Words too common to say anything about where an answer comes from.
_COMMON = frozenset("that this with from have which their there would about were been they them "
                    "also into than then these those what when where your will shall must".split())


def answer_terms(answer: str) -> list[str]:
    """The answer's words worth finding in its source, longest first. A Korean word drops its
    last syllable (particles and endings attach to the stem: 지원금은 → 지원금); other words
    count from four letters, numbers from two digits."""
    terms: set[str] = set()
    for word in _WORD.findall(answer):
        if _HANGUL.search(word):
            if len(word) >= 2:
                terms.add(word[:-1] if len(word) >= 3 else word)
        elif (word.isdigit() and len(word) >= 2) or (len(word) >= 4 and word.lower() not in _COMMON):
            terms.add(word)
    return sorted(terms, key=lambda term: (-len(term), term))


def highlighted(chunk: str, answer: str, style: str = "bold black on yellow") -> Text:
    """The chunk with the answer's words marked, so the reviewer sees at once what is grounded."""
    text = Text(chunk)
    terms = answer_terms(answer)
    if terms:
        text.highlight_regex(re.compile("|".join(map(re.escape, terms)), re.IGNORECASE), style)
    return text


@dataclass(frozen=True)
class Filter:
    """Which pairs the screen walks through; None means any."""

    score_below: float | None = None
    category: str | None = None
    document: str | None = None
    status: str | None = None

    def matches(self, pair: QAPair, verdict: Verdict) -> bool:
        return ((self.score_below is None or (pair.score is not None and pair.score < self.score_below))
                and (self.category is None or pair.category == self.category)
                and (self.document is None or document_of(pair) == self.document)
                and (self.status is None or verdict.status == self.status))

    def describe(self) -> str:
        parts = [f"score < {self.score_below:g}" if self.score_below is not None else "",
                 f"category {self.category}" if self.category is not None else "",
                 f"document {self.document}" if self.document is not None else "",
                 self.status or ""]
        return ", ".join(part for part in parts if part)


def document_of(pair: QAPair) -> str:
    return pair.source_doc or pair.doc_id or "(unknown)"


def shown_text(pair: QAPair, verdict: Verdict) -> tuple[str, str]:
    """The question and answer as they stand: edited text where the reviewer edited it."""
    return (verdict.question if verdict.question is not None else pair.instruction,
            verdict.answer if verdict.answer is not None else pair.output)


# -- dialogs -------------------------------------------------------------------------------------


class RejectScreen(ModalScreen[str | None]):
    """Why the pair is rejected: a quick pick (1-4) or a typed reason."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel"),
                *(Binding(str(i + 1), f"pick({i})", reason, show=False) for i, reason in enumerate(QUICK_REASONS))]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Reject: why? (1-4, or type a reason and press Enter)")
            yield OptionList(*(f"{i + 1}  {reason}" for i, reason in enumerate(QUICK_REASONS)), id="reasons")
            yield Input(placeholder="another reason", id="reason")

    def action_pick(self, index: int) -> None:
        self.dismiss(QUICK_REASONS[index])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(QUICK_REASONS[event.option_index])

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())


class JumpScreen(ModalScreen[int | None]):
    """Go to a pair by its number (the #N shown above it)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size_of_view = size

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Go to pair number (1-{self.size_of_view}), Enter")
            yield Input(type="integer", id="number")

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _go(self, event: Input.Submitted) -> None:
        try:
            number = int(event.value)
        except ValueError:
            return
        if 1 <= number <= self.size_of_view:
            self.dismiss(number)
        else:
            self.notify(f"no pair {number}: give 1-{self.size_of_view}", severity="error")


class FilterScreen(ModalScreen[Filter | None]):
    """Filter by score (below a value), category, document and decision."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, current: Filter, categories: list[str], documents: list[str]) -> None:
        super().__init__()
        self.current, self.categories, self.documents = current, categories, documents

    def compose(self) -> ComposeResult:
        current = self.current
        with Vertical(classes="dialog"):
            yield Label("Filter pairs (Enter applies)")
            yield Input(value="" if current.score_below is None else f"{current.score_below:g}",
                        placeholder="score below (e.g. 3)", type="number", id="score")
            yield Select([(c or "(none)", c) for c in self.categories], prompt="any category", id="category",
                         value=current.category if current.category is not None else Select.NULL)
            yield Select([(d, d) for d in self.documents], prompt="any document", id="document",
                         value=current.document if current.document is not None else Select.NULL)
            yield Select([(s, s) for s in STATUSES], prompt="any decision", id="decision",
                         value=current.status if current.status is not None else Select.NULL)
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Clear", id="clear")

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        raw = self.query_one("#score", Input).value.strip()
        try:
            score = float(raw) if raw else None
        except ValueError:
            self.notify(f"score {raw!r} is not a number", severity="error")
            return

        def chosen(name: str) -> str | None:
            value = self.query_one(f"#{name}", Select).value
            return None if value is Select.NULL else str(value)

        self.dismiss(Filter(score, chosen("category"), chosen("document"), chosen("decision")))

    @on(Button.Pressed, "#clear")
    def _clear(self) -> None:
        self.dismiss(Filter())


# -- the review screen ---------------------------------------------------------------------------

_STATUS_STYLE = {"undecided": "dim", "approved": "bold green", "rejected": "bold red", "edited": "bold cyan"}
# Actions that change or move the review: off while editing or while a dialog is open.
# (q too: typed in a dialog it is text; ctrl+q always quits.)
_REVIEW_ACTIONS = frozenset({"approve", "reject", "edit", "undo", "next", "previous", "first", "last",
                             "next_undecided", "jump", "filter", "leave"})


class ReviewApp(App[None]):
    """Review `session`'s pairs; `source_text` gives a pair's source chunk. `warm`, when given,
    is run once in a thread before sources are shown (rebuilding chunks can take seconds)."""

    TITLE = "slm-factory review"
    CSS = """
    #panes { height: 1fr; }
    #pair, #source { width: 1fr; border: round $primary; padding: 0 1; }
    #source { border: round $secondary; }
    .label { color: $text-muted; text-style: bold; margin-top: 1; }
    #pair TextArea { height: auto; max-height: 14; display: none; }
    #pair.editing TextArea { display: block; }
    #pair.editing #question, #pair.editing #answer { display: none; }
    #statusbar { height: 1; background: $boost; padding: 0 1; }
    ModalScreen { align: center middle; }
    .dialog { width: 64; height: auto; border: thick $primary; background: $surface; padding: 1 2; }
    .dialog OptionList { height: auto; }
    .buttons { height: auto; margin-top: 1; }
    """
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("e", "edit", "Edit"),
        Binding("u,ctrl+z", "undo", "Undo"),
        Binding("right,n", "next", "Next"),
        Binding("left,p", "previous", "Prev"),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("space", "next_undecided", "Undecided"),
        Binding("g", "jump", "Go to"),
        Binding("f", "filter", "Filter"),
        Binding("ctrl+s", "save_edit", "Save edit"),
        Binding("escape", "cancel_edit", "Cancel edit"),
        Binding("q", "leave", "Quit"),
    ]

    def __init__(self, session: ReviewSession, source_text: Callable[[QAPair], str], label: str = "",
                 warm: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.session = session
        self.source_text = source_text
        self.label = label
        self.warm = warm
        self.sources_ready = warm is None
        self.source_problem = ""
        self.filter = Filter()
        self.view: list[int] = list(range(len(session.pairs)))
        self.cursor = 0
        self.editing = False

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="panes"):
            with VerticalScroll(id="pair"):
                yield Static(id="verdict")
                yield Label("Question", classes="label")
                yield Static(id="question")
                yield TextArea(id="question-edit", soft_wrap=True)
                yield Label("Answer", classes="label")
                yield Static(id="answer")
                yield TextArea(id="answer-edit", soft_wrap=True)
                yield Static(id="details", classes="label")
            with VerticalScroll(id="source"):
                yield Static(id="chunk")
        yield Static(id="statusbar")
        yield Footer()

    def on_mount(self) -> None:
        self.cursor = self.session.resume_position() if self.session.pairs else 0
        if self.session.vanished:
            self.notify(f"{self.session.vanished} earlier decisions are for pairs no longer in the input; ignored",
                        severity="warning")
        if self.warm is not None:
            self.run_worker(self._warm_sources, thread=True)
        self.show()

    def _warm_sources(self) -> None:
        try:
            self.warm()  # type: ignore[misc]
        except Exception as error:  # the review goes on without sources; say why they are missing
            self.source_problem = str(error) or type(error).__name__
        self.call_from_thread(self._sources_loaded)

    def _sources_loaded(self) -> None:
        self.sources_ready = True
        self.show()

    # -- what is shown -----------------------------------------------------------------------------
    @property
    def current(self) -> QAPair | None:
        return self.session.pairs[self.view[self.cursor]] if self.view else None

    def show(self) -> None:
        pair = self.current
        if pair is None:
            for name in ("verdict", "question", "answer", "details", "chunk"):
                self.query_one(f"#{name}", Static).update("")
            self.query_one("#verdict", Static).update(Text("No pair matches the filter (f to change it).", "bold"))
        else:
            self._show_pair(pair, self.session.verdict(pair.id))
        self.query_one("#statusbar", Static).update(self.status_line())

    def _show_pair(self, pair: QAPair, verdict: Verdict) -> None:
        number = self.view[self.cursor] + 1
        heading = Text(f"#{number}  ")
        heading.append(verdict.status.upper() + (f": {verdict.reason}" if verdict.reason else ""),
                       _STATUS_STYLE[verdict.status])
        self.query_one("#verdict", Static).update(heading)
        question, answer = shown_text(pair, verdict)
        self.query_one("#question", Static).update(Text(question))
        self.query_one("#answer", Static).update(Text(answer))
        details = [f"category: {pair.category or '-'}", f"document: {document_of(pair)}"]
        if pair.score is not None:
            details.append(f"score: {pair.score:g}" + (f" ({pair.score_reason})" if pair.score_reason else ""))
        if pair.origin != "generated":
            details.append(f"origin: {pair.origin}")
        self.query_one("#details", Static).update(Text("\n".join(details)))
        self.query_one("#chunk", Static).update(self._source(pair, answer))
        self.query_one("#source", VerticalScroll).border_title = f"source {pair.chunk_id}" if pair.chunk_id else "source"

    def _source(self, pair: QAPair, answer: str) -> Text:
        if not self.sources_ready:
            return Text("loading source chunks…", "dim")
        try:
            chunk = self.source_text(pair)
        except Exception as error:  # a damaged parsed_documents.json must not end the review
            self.source_problem = str(error) or type(error).__name__
            chunk = ""
        if not chunk:
            why = self.source_problem or "no chunk with this id in parsed_documents.json (pairs from elsewhere, or documents parsed since)"
            return Text(f"source not found: {why}", "dim")
        return highlighted(chunk, answer)

    def status_line(self) -> Text:
        counts = self.session.counts()
        total = len(self.session.pairs)
        where = f"{self.cursor + 1 if self.view else 0} of {len(self.view)}"
        if self.filter != Filter():
            where += f" shown ({self.filter.describe()}; {total} in all)"
        parts = [self.label, where] if self.label else [where]
        parts.append("  ".join(f"{status} {counts[status]}" for status in ("approved", "rejected", "edited", "undecided")))
        if self.session.vanished:
            parts.append(f"{self.session.vanished} gone from input")
        return Text(" · ".join(parts))

    # -- bindings ----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("save_edit", "cancel_edit"):
            return self.editing
        if action in _REVIEW_ACTIONS:
            return not self.editing and len(self.screen_stack) == 1
        return True

    def action_leave(self) -> None:
        self.exit()  # nothing to save: every decision is on disk already

    def action_approve(self) -> None:
        if (pair := self.current) is not None:
            self.session.approve(pair.id)
            self._advance()

    def action_reject(self) -> None:
        if (pair := self.current) is not None:
            self.push_screen(RejectScreen(), lambda reason: self._rejected(pair, reason))

    def _rejected(self, pair: QAPair, reason: str | None) -> None:
        if reason:
            self.session.reject(pair.id, reason)
            self._advance()

    def action_edit(self) -> None:
        pair = self.current
        if pair is None:
            return
        question, answer = shown_text(pair, self.session.verdict(pair.id))
        self.query_one("#question-edit", TextArea).text = question
        self.query_one("#answer-edit", TextArea).text = answer
        self._editing(True)
        self.query_one("#question-edit", TextArea).focus()

    def action_save_edit(self) -> None:
        pair = self.current
        if pair is None:
            return
        question = self.query_one("#question-edit", TextArea).text
        answer = self.query_one("#answer-edit", TextArea).text
        if (question.strip(), answer.strip()) == shown_text(pair, self.session.verdict(pair.id)):
            self.notify("nothing changed")
        else:
            try:
                self.session.edit(pair.id, question, answer)
            except ValueError as error:
                self.notify(str(error), severity="error")
                return
        self._editing(False)
        self.show()

    def action_cancel_edit(self) -> None:
        self._editing(False)

    def _editing(self, on: bool) -> None:
        self.editing = on
        self.query_one("#pair").set_class(on, "editing")
        if not on:
            self.set_focus(None)
        self.refresh_bindings()

    def action_undo(self) -> None:
        pair_id = self.session.undo()
        if pair_id is None:
            self.notify("nothing to undo")
            return
        index = self.session.position[pair_id]
        if not self.filter.matches(self.session.pairs[index], self.session.verdict(pair_id)):
            self.filter = Filter()
            self.notify("filter cleared to show the undone pair")
        self._refilter(keep=index)

    def action_next(self) -> None:
        self._move(min(self.cursor + 1, max(len(self.view) - 1, 0)))

    def action_previous(self) -> None:
        self._move(max(self.cursor - 1, 0))

    def action_first(self) -> None:
        self._move(0)

    def action_last(self) -> None:
        self._move(max(len(self.view) - 1, 0))

    def action_next_undecided(self) -> None:
        if not self.view:
            return
        order = [*range(self.cursor + 1, len(self.view)), *range(0, self.cursor + 1)]
        found = next((i for i in order if self.session.verdict(self.session.pairs[self.view[i]].id).status == "undecided"), None)
        if found is None:
            self.notify("every pair shown is decided")
        else:
            self._move(found)

    def action_jump(self) -> None:
        if self.session.pairs:
            self.push_screen(JumpScreen(len(self.session.pairs)), lambda number: number and self._go_to(number - 1))

    def _go_to(self, index: int) -> None:
        if index not in self.view:
            self.filter = Filter()
            self.notify(f"filter cleared to show pair #{index + 1}")
            self._refilter(keep=index)
        else:
            self._move(self.view.index(index))

    def action_filter(self) -> None:
        pairs = self.session.pairs
        screen = FilterScreen(self.filter, sorted({p.category for p in pairs}), sorted({document_of(p) for p in pairs}))
        self.push_screen(screen, self._filtered)

    def _filtered(self, chosen: Filter | None) -> None:
        if chosen is not None:
            self.filter = chosen
            self._refilter(keep=self.view[self.cursor] if self.view else None)

    def apply_filter(self, chosen: Filter) -> None:
        """Set a filter directly (the dialog calls the same)."""
        self._filtered(chosen)

    # -- moving ------------------------------------------------------------------------------------
    def _refilter(self, keep: int | None) -> None:
        session = self.session
        self.view = [i for i, pair in enumerate(session.pairs) if self.filter.matches(pair, session.verdict(pair.id))]
        self.cursor = self.view.index(keep) if keep in self.view else 0
        self.show()

    def _advance(self) -> None:
        """After a decision: the next pair shown. Under a decision filter the decided pair may
        leave the view; the next one is then the first matching pair after it."""
        current = self.view[self.cursor]
        if self.filter.status is not None:
            self.view = [i for i, pair in enumerate(self.session.pairs)
                         if self.filter.matches(pair, self.session.verdict(pair.id))]
        later = [position for position, index in enumerate(self.view) if index > current]
        if later:
            self.cursor = later[0]
        else:
            self.cursor = self.view.index(current) if current in self.view else max(len(self.view) - 1, 0)
        self.show()

    def _move(self, cursor: int) -> None:
        self.cursor = cursor
        self.show()
        self.query_one("#pair", VerticalScroll).scroll_home(animate=False)
        self.query_one("#source", VerticalScroll).scroll_home(animate=False)
