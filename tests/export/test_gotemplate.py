"""The Go text/template subset: Go's documented semantics, and Ollama's own templates rendering
what Ollama's own tests expect."""

from __future__ import annotations

import pytest

from slm_factory.export.gotemplate import GoStruct, GoTemplateError, render, truth
from tests.conftest import DATA

TEMPLATES = DATA / "templates"


def message(role: str, content: str) -> GoStruct:
    return GoStruct("api.Message", {"Role": role, "Content": content})


def run(source: str, **data) -> str:
    return render(source, data)


@pytest.mark.parametrize("name", ["chatml", "llama3-instruct", "gemma-instruct"])
def test_ollama_templates_render_as_ollamas_own_tests_expect(name: str) -> None:
    # Ollama's template_test.go conversation: system, user, assistant, user.
    messages = [message("system", "You are a helpful assistant."), message("user", "Hello, how are you?"),
                message("assistant", "I'm doing great. How can I help you today?"),
                message("user", "I'd like to show off how chat templating works!")]
    source = (TEMPLATES / f"ollama-{name}.gotmpl").read_text(encoding="utf-8")
    expected = (TEMPLATES / f"ollama-{name}.expected").read_text(encoding="utf-8")
    assert run(source, System="You are a helpful assistant.", Messages=messages, Tools=[], Response="") == expected


TRIMS = [
    ("a  \n\t {{- 1 }}", "a1"),                       # {{- eats all white space before, newlines too
    ("{{ 1 -}} \n\n  b", "1b"),                       # -}} eats all after
    ("a \n{{- /* note */ -}}\n b", "ab"),             # a trimmed comment
    ("a {{/* note */}} b", "a  b"),                   # an untrimmed comment keeps the spaces
    ("{{ 1 }} \n {{ 2 }}", "1 \n 2"),
    ("x{{-3}}", "x-3"),                               # "{{-3" is the number -3, not a trim marker
]


@pytest.mark.parametrize("source, expected", TRIMS)
def test_trim_markers_and_comments(source: str, expected: str) -> None:
    assert run(source) == expected


BUILTINS = [
    ('{{ and 1 "x" 0 "y" }}', "0"),      # and: the first false argument
    ('{{ and 1 "x" }}', "x"),            # ... else the last
    ('{{ or 0 "" "z" 5 }}', "z"),        # or: the first true argument
    ('{{ or 0 "" }}', ""),               # ... else the last
    ('{{ not "" }} {{ not "a" }}', "true false"),
    ('{{ eq 1 2 3 1 }}', "true"),        # eq a b c: a equals any of the others
    ('{{ ne "a" "b" }}', "true"),
    ('{{ len "한국" }}', "6"),            # len of a string counts bytes
    ('{{ slice "abcdef" 1 3 }}', "bc"),
    ('{{ index .L 1 }}', "b"),
    ('{{ print "a" 1 2 "b" }}', "a1 2b"),   # Sprint: spaces only between non-strings
    ('{{ printf "%s-%d" "a" 3 }}', "a-3"),
    ('{{ "tab\\there\\n\\"q\\" \\u00e9 \\x41" }}', 'tab\there\n"q" é A'),
    ('{{ `raw\\n` }}', "raw\\n"),
    ('{{ .S | printf "%s!" }}', "s!"),   # a pipe passes the value as the last argument
    ('{{ (len .L) }}', "3"),
]
DATA_SL = {"S": "s", "L": ["a", "b", "c"]}


@pytest.mark.parametrize("source, expected", BUILTINS)
def test_builtins_follow_go(source: str, expected: str) -> None:
    assert render(source, DATA_SL) == expected


def test_and_or_stop_evaluating_at_the_deciding_argument() -> None:
    # index out of range would fail if evaluated; Go 1.18+ and/or short-circuit.
    assert run("{{ and 0 (index .L 9) }}", L=[]) == "0"
    assert run('{{ or "x" (index .L 9) }}', L=[]) == "x"
    with pytest.raises(GoTemplateError):
        run("{{ and 1 (index .L 9) }}", L=[])


def test_variables_scope_and_assignment() -> None:
    source = ('{{ $x := "outer" }}{{ if true }}{{ $x := "inner" }}{{ $x }}{{ end }}-{{ $x }}'
              '{{ if true }}{{ $x = "set" }}{{ end }}-{{ $x }}')
    assert run(source) == "inner-outer-set"
    with pytest.raises(GoTemplateError, match="undefined variable"):
        run("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}")


def test_range_forms_else_break_continue() -> None:
    data = {"L": ["a", "b", "c", "d"]}
    assert render("{{ range $i, $x := .L }}{{ $i }}{{ $x }}{{ end }}", data) == "0a1b2c3d"
    assert render("{{ range $x := .L }}{{ $x }}{{ end }}", data) == "abcd"       # one variable: the element
    assert render("{{ range .L }}{{ . }}{{ $.L | len }}{{ end }}", data) == "a4b4c4d4"
    assert render('{{ range .L }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ if eq . "d" }}{{ break }}{{ end }}{{ . }}{{ end }}',
                  data) == "ac"
    assert render("{{ range .E }}x{{ else }}empty{{ end }}", {"E": []}) == "empty"
    last = "{{ range $i, $_ := .L }}{{ if eq (len (slice $.L $i)) 1 }}last={{ . }}{{ end }}{{ end }}"
    assert render(last, data) == "last=d"


def test_if_else_chain_and_with() -> None:
    source = '{{ if eq .R "a" }}A{{ else if eq .R "b" }}B{{ else }}C{{ end }}'
    assert [render(source, {"R": r}) for r in "abz"] == ["A", "B", "C"]
    assert run("{{ with .S }}[{{ . }}]{{ else }}none{{ end }}", S="x") == "[x]"
    assert run("{{ with .S }}[{{ . }}]{{ else }}none{{ end }}", S="") == "none"


def test_truth_is_gos() -> None:
    assert [truth(v) for v in (0, "", [], {}, None, False)] == [False] * 6
    assert [truth(v) for v in (1, "0", [0], True)] == [True] * 4


def test_field_access_on_structs_and_parenthesised_results() -> None:
    messages = [message("user", "hi"), message("assistant", "yo")]
    assert run("{{ (index .Messages 1).Content }}", Messages=messages) == "yo"
    assert run("{{ $m := index .Messages 0 }}{{ $m.Role }}", Messages=messages) == "user"


ERRORS = [
    ("{{ .Messages.Nope }}", "can't evaluate field Nope"),
    ("{{ .Missing }}", "no entry for key"),
    ("{{ upper .S }}", 'function "upper" not defined'),
    ('{{ template "x" }}', "not supported"),
    ("{{ if .S }}open", "no {{end}}"),
    ("{{ end }}", "unexpected"),
    ('{{ eq "1" 1 }}', "incompatible types"),
    ("{{ 1.5 }}", "floating-point"),
    ("text {{ .S ", "unclosed action"),
    ("{{ }}", "missing value"),
    ("{{ break }}", "outside range"),
]


@pytest.mark.parametrize("source, complaint", ERRORS)
def test_unknown_or_invalid_syntax_raises_clearly(source: str, complaint: str) -> None:
    with pytest.raises(GoTemplateError, match=complaint.replace("{", r"\{").replace("(", r"\(")):
        run(source, S="s", Messages=message("user", "x"))


MORE = [  # (source, data, expected) of the tests above, for the cross-check with Go
    ('{{ $x := "outer" }}{{ if true }}{{ $x := "inner" }}{{ $x }}{{ end }}-{{ $x }}'
     '{{ if true }}{{ $x = "set" }}{{ end }}-{{ $x }}', {}, "inner-outer-set"),
    ("{{ range $i, $x := .L }}{{ $i }}{{ $x }}{{ end }}", {"L": ["a", "b"]}, "0a1b"),
    ("{{ range $x := .L }}{{ $x }}{{ end }}", {"L": ["a", "b"]}, "ab"),
    ('{{ range .L }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ if eq . "d" }}{{ break }}{{ end }}{{ . }}{{ end }}',
     {"L": ["a", "b", "c", "d"]}, "ac"),
    ("{{ range .E }}x{{ else }}empty{{ end }}", {"E": []}, "empty"),
    ("{{ with .S }}[{{ . }}]{{ else }}none{{ end }}", {"S": ""}, "none"),
    ('{{ if eq .R "a" }}A{{ else if eq .R "b" }}B{{ else }}C{{ end }}', {"R": "b"}, "B"),
]


def test_go_itself_agrees(go_render) -> None:
    """Every expectation above, and the errors, also hold for Go's own text/template."""
    cases = [(source, DATA_SL, expected) for source, expected in TRIMS + BUILTINS] + MORE
    results = go_render([{"template": source, "data": data} for source, data, _ in cases])
    assert [(source, result["err"] or result["out"]) for (source, _, _), result in zip(cases, results)] == \
        [(source, expected) for source, _, expected in cases]
    # Go errors too, where the template is wrong for Go (not merely for this stricter interpreter,
    # which also refuses missing map keys that Go prints as "<no value>").
    stricter = ("{{ .Messages.Nope }}", "{{ .Missing }}", "{{ 1.5 }}")  # floats: not needed, so refused
    wrong = [source for source, _ in ERRORS if source not in stricter]
    errors = go_render([{"template": source, "data": DATA_SL} for source in wrong])
    assert [bool(result["err"]) for result in errors] == [True] * len(wrong), list(zip(wrong, errors))
