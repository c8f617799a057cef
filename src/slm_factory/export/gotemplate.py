"""The subset of Go's text/template that Ollama chat templates use, to render a Modelfile TEMPLATE
here exactly as Ollama would and compare it with the Hugging Face chat template.

Covered (semantics from the Go text/template package documentation): text and {{ actions }} with
trim markers (`{{- ` and ` -}}` remove all adjacent spaces, tabs, carriage returns and newlines),
comments `{{/* */}}`, fields `.A.B`, `$.A`, `$x.A`, variables (`:=` declares in the current block,
`=` assigns the nearest declared one), `if`/`else if`/`else`/`end`, `range` (with `$x :=` or
`$i, $x :=`, and `else`), `with`, `break`, `continue`, pipelines `a | f b`, parenthesised
pipelines, string (Go escapes and raw `back-quoted`), integer and bool literals, and the builtins
`eq ne lt le gt ge and or not len slice index print printf println`, plus Ollama's own `json`.
`and`/`or` return one of their arguments (the first false / first true, else the last) and stop
evaluating there, as Go 1.18+ does. `len` and `slice` count bytes of a string, as Go does.

Anything else (define/template/block, unknown functions, fields a value does not have, methods)
raises GoTemplateError: a template this module cannot run is reported, never rendered wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_SPACE = " \t\r\n"


class GoTemplateError(ValueError):
    """A template this interpreter cannot parse or run (or that Go would reject)."""


# -- lexing ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<variable>\$[A-Za-z_0-9]*)
  | (?P<field>\.[A-Za-z_][A-Za-z_0-9]*)
  | (?P<dot>\.)
  | (?P<word>[A-Za-z_][A-Za-z_0-9]*)
""", re.VERBOSE)


@dataclass
class _Token:
    kind: str
    text: str
    glued: bool  # no space before it (a field after `)` or `$x` belongs to it)


def _tokens(source: str) -> list[_Token]:
    tokens, position, glued = [], 0, True
    while position < len(source):
        match = _TOKEN.match(source, position)
        if not match:
            raise GoTemplateError(f"unexpected {source[position:position + 10]!r} in action {{{{{source}}}}}")
        kind = match.lastgroup or ""
        if kind == "space":
            glued = False
        else:
            tokens.append(_Token(kind, match.group(), glued))
            glued = True
        position = match.end()
    return tokens


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"',
            "'": "'"}


def _go_string(literal: str) -> str:
    """A Go interpreted string literal's value (\\n, \\t, \\", \\\\, \\xhh, \\uhhhh, \\Uhhhhhhhh, octal)."""
    body, out, index = literal[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        code = body[index + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            index += 2
        elif code in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[code]
            out.append(chr(int(body[index + 2:index + 2 + width], 16)))
            index += 2 + width
        elif code in "01234567":
            out.append(chr(int(body[index + 1:index + 4], 8)))
            index += 4
        else:
            raise GoTemplateError(f"unknown escape \\{code} in {literal}")
    return "".join(out)


# -- parsing -----------------------------------------------------------------------------------


@dataclass
class _Pipeline:
    commands: list[list[Any]]  # each command: operands (a word first is a function call)
    declare: list[str] = field(default_factory=list)
    assign: bool = False  # `=` rather than `:=`


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipeline: _Pipeline


@dataclass
class _Branch:
    kind: str  # if, range, with
    pipeline: _Pipeline
    body: list[Any]
    otherwise: list[Any] | None


@dataclass
class _Loop:
    kind: str  # break, continue


@dataclass
class _Operand:
    kind: str  # field, variable, dot, string, number, bool, nil, word, pipeline
    value: Any
    fields: list[str] = field(default_factory=list)


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def _pieces(source: str) -> list[tuple[str, str]]:
    """Text and action pieces with Go's trim markers applied to the neighbouring text."""
    pieces: list[tuple[str, str]] = []
    position = 0
    trim_next = False
    for match in _ACTION.finditer(source):
        text = source[position:match.start()]
        if trim_next:
            text = text.lstrip(_SPACE)
        if match.group(1):
            text = text.rstrip(_SPACE)
        if text:
            pieces.append(("text", text))
        inner = match.group(2).strip(_SPACE)
        if not (inner.startswith("/*") and inner.endswith("*/")):
            if "/*" in inner:
                raise GoTemplateError(f"a comment must fill its action: {{{{{inner}}}}}")
            pieces.append(("action", inner))
        trim_next = bool(match.group(3))
        position = match.end()
    text = source[position:]
    if trim_next:
        text = text.lstrip(_SPACE)
    if "{{" in text:
        raise GoTemplateError(f"unclosed action: {text[text.index('{{'):][:30]!r}")
    if text:
        pieces.append(("text", text))
    return pieces


class _Parser:
    def __init__(self, source: str):
        self.pieces = _pieces(source)
        self.index = 0

    def parse(self) -> list[Any]:
        nodes, stop = self._list()
        if stop is not None:
            raise GoTemplateError(f"unexpected {{{{{stop}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], str | None]:
        """Nodes up to an `else ...` or `end` (returned as the stop word), or the end of input."""
        nodes: list[Any] = []
        while self.index < len(self.pieces):
            kind, text = self.pieces[self.index]
            self.index += 1
            if kind == "text":
                nodes.append(_Text(text))
                continue
            word = text.split(None, 1)[0] if text else ""
            rest = text[len(word):].strip(_SPACE)
            if word in ("end", "else"):
                return nodes, text
            if word in ("if", "range", "with"):
                nodes.append(self._branch(word, rest))
            elif word in ("break", "continue"):
                nodes.append(_Loop(word))
            elif word in ("define", "template", "block"):
                raise GoTemplateError(f"{{{{{word}}}}} is not supported here")
            else:
                nodes.append(_Action(_pipeline(text)))
        return nodes, None

    def _branch(self, kind: str, header: str) -> _Branch:
        body, stop = self._list()
        if stop is None:
            raise GoTemplateError(f"{{{{{kind} {header}}}}} has no {{{{end}}}}")
        otherwise: list[Any] | None = None
        if stop != "end":
            rest = stop[len("else"):].strip(_SPACE)
            if rest:  # else if / else with: a nested branch that shares this one's end
                word, _, condition = rest.partition(" ")
                if word != kind or kind == "range":
                    raise GoTemplateError(f"{{{{else {word}}}}} inside {{{{{kind}}}}} is not supported here")
                otherwise = [self._branch(word, condition.strip(_SPACE))]
            else:
                otherwise, stop = self._list()
                if stop != "end":
                    raise GoTemplateError(f"{{{{{kind} {header}}}}}: expected {{{{end}}}} after {{{{else}}}}")
        return _Branch(kind, _pipeline(header), body, otherwise)


def _pipeline(text: str) -> _Pipeline:
    tokens = _tokens(text)
    declare, assign = [], False
    for position, token in enumerate(tokens):
        if token.kind in ("declare", "assign"):
            names = [t for t in tokens[:position] if t.kind != "comma"]
            if not names or any(t.kind != "variable" for t in names) or len(names) > 2:
                raise GoTemplateError(f"bad declaration in {{{{{text}}}}}")
            declare, assign = [t.text for t in names], token.kind == "assign"
            tokens = tokens[position + 1:]
            break
    operands, rest = _commands(tokens, text)
    if rest:
        raise GoTemplateError(f"unexpected {rest[0].text!r} in {{{{{text}}}}}")
    if not operands:
        raise GoTemplateError(f"missing value in {{{{{text}}}}}")
    return _Pipeline(operands, declare, assign)


def _commands(tokens: list[_Token], text: str) -> tuple[list[list[_Operand]], list[_Token]]:
    commands: list[list[_Operand]] = [[]]
    while tokens:
        token = tokens[0]
        if token.kind == "rparen":
            break
        tokens = tokens[1:]
        if token.kind == "pipe":
            if not commands[-1]:
                raise GoTemplateError(f"missing command before | in {{{{{text}}}}}")
            commands.append([])
            continue
        if token.kind == "lparen":
            inner, tokens = _commands(tokens, text)
            if not tokens or tokens[0].kind != "rparen":
                raise GoTemplateError(f"unclosed ( in {{{{{text}}}}}")
            tokens = tokens[1:]
            operand = _Operand("pipeline", _Pipeline(inner))
        else:
            operand = _literal(token, text)
        while tokens and tokens[0].kind == "field" and tokens[0].glued and operand.kind in ("pipeline", "variable", "field"):
            operand.fields.append(tokens[0].text[1:])
            tokens = tokens[1:]
        commands[-1].append(operand)
    if not commands[-1] and len(commands) > 1:
        raise GoTemplateError(f"missing command after | in {{{{{text}}}}}")
    return [c for c in commands if c], tokens


def _literal(token: _Token, text: str) -> _Operand:
    kind, value = token.kind, token.text
    if kind == "string":
        return _Operand("string", _go_string(value))
    if kind == "raw":
        return _Operand("string", value[1:-1])
    if kind == "number":
        if "." in value:
            raise GoTemplateError(f"floating-point numbers are not supported here: {{{{{text}}}}}")
        return _Operand("number", int(value))
    if kind == "field":
        return _Operand("field", None, [value[1:]])
    if kind == "variable":
        return _Operand("variable", value)
    if kind == "dot":
        return _Operand("dot", None)
    if kind == "word":
        if value in ("true", "false"):
            return _Operand("bool", value == "true")
        if value == "nil":
            return _Operand("nil", None)
        return _Operand("word", value)
    raise GoTemplateError(f"unexpected {value!r} in {{{{{text}}}}}")


# -- evaluation --------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, slices and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def _text(value: Any) -> str:
    """fmt.Print of a value, as Go prints an action's result."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_text(item) for item in value) + "]"
    raise GoTemplateError(f"cannot print a {type(value).__name__}")


def _go_json(value: Any) -> str:
    # encoding/json escapes <, > and & for HTML safety; Python's json does not.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _comparable(a: Any, b: Any, name: str) -> None:
    basic = (bool, int, str, type(None))
    if not isinstance(a, basic) or not isinstance(b, basic):
        raise GoTemplateError(f"{name}: cannot compare a {type(a).__name__} (non-basic types)")
    if a is not None and b is not None and (isinstance(a, bool) != isinstance(b, bool) or type(a) is not type(b)):
        raise GoTemplateError(f"{name}: incompatible types for comparison ({type(a).__name__}, {type(b).__name__})")


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise GoTemplateError("eq: missing argument for comparison")
    for other in others:
        _comparable(first, other, "eq")
        if first == other:
            return True
    return False


def _order(name: str, a: Any, b: Any) -> bool:
    _comparable(a, b, name)
    if isinstance(a, bool) or a is None:
        raise GoTemplateError(f"{name}: invalid type for comparison")
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[name]


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    raise GoTemplateError(f"len of {type(value).__name__}")


def _slice(value: Any, *bounds: int) -> Any:
    if len(bounds) > 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
        raise GoTemplateError("slice: takes one or two integer indexes here")
    size = _length(value)
    start, stop = (list(bounds) + [0, size][len(bounds):])[:2] if bounds else (0, size)
    if not 0 <= start <= stop <= size:
        raise GoTemplateError(f"slice: index out of range [{start}:{stop}] with length {size}")
    if isinstance(value, str):
        return value.encode("utf-8")[start:stop].decode("utf-8", errors="strict")
    return list(value[start:stop])


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, (list, tuple)) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(value):
                raise GoTemplateError(f"index: index out of range: {key}")
            value = value[key]
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            raise GoTemplateError(f"index of {type(value).__name__} with {key!r}")
    return value


def _sprint(*args: Any) -> str:
    # fmt.Sprint adds a space between operands when neither is a string.
    out = ""
    for position, arg in enumerate(args):
        if position and not isinstance(arg, str) and not isinstance(args[position - 1], str):
            out += " "
        out += _text(arg)
    return out


def _sprintf(form: str, *args: Any) -> str:
    values = list(args)

    def verb(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%"
        if not values:
            return f"%!{match.group()[-1]}(MISSING)"
        value = values.pop(0)
        if match.group() == "%q":
            return json.dumps(value, ensure_ascii=False)
        return _text(value)

    out = re.sub(r"%[%svdq]", verb, form)
    if re.search(r"%[^%svdq]", form):
        raise GoTemplateError(f"printf: only %s %v %d %q are supported here: {form!r}")
    return out


_FUNCTIONS: dict[str, Any] = {
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": lambda a, b: _order("lt", a, b),
    "le": lambda a, b: _order("le", a, b),
    "gt": lambda a, b: _order("gt", a, b),
    "ge": lambda a, b: _order("ge", a, b),
    "not": lambda value: not truth(value),
    "len": _length,
    "slice": _slice,
    "index": _index,
    "print": _sprint,
    "printf": _sprintf,
    "println": lambda *args: " ".join(_text(a) for a in args) + "\n",
    "json": _go_json,
}


class _Run:
    def __init__(self, data: dict[str, Any]):
        self.root = data
        self.scopes: list[dict[str, Any]] = [{"$": data}]
        self.out: list[str] = []

    def nodes(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(node.pipeline, dot)
                if not node.pipeline.declare:
                    self.out.append(_text(value))
            elif isinstance(node, _Branch):
                self.branch(node, dot)
            elif isinstance(node, _Loop):
                raise _Break() if node.kind == "break" else _Continue()

    def block(self, nodes: list[Any], dot: Any, variables: dict[str, Any] | None = None) -> None:
        self.scopes.append(dict(variables or {}))
        try:
            self.nodes(nodes, dot)
        finally:
            self.scopes.pop()

    def branch(self, node: _Branch, dot: Any) -> None:
        if node.kind == "range":
            self.range(node, dot)
            return
        # A variable declared in an if/with header lives until its {{end}}, else branch included.
        self.scopes.append({})
        try:
            value = self.pipeline(node.pipeline, dot)
            if truth(value):
                self.block(node.body, value if node.kind == "with" else dot)
            elif node.otherwise is not None:
                self.block(node.otherwise, dot)
        finally:
            self.scopes.pop()

    def range(self, node: _Branch, dot: Any) -> None:
        names = node.pipeline.declare
        items = self.pipeline(_Pipeline(node.pipeline.commands), dot)
        if node.pipeline.assign:
            raise GoTemplateError("range: use := to declare its variables")
        if isinstance(items, dict):
            pairs = sorted(items.items())
        elif isinstance(items, (list, tuple)):
            pairs = list(enumerate(items))
        elif items is None:
            pairs = []
        else:
            raise GoTemplateError(f"range can't iterate over a {type(items).__name__} here")
        for key, item in pairs:
            variables = {names[0]: item} if len(names) == 1 else dict(zip(names, (key, item)))
            try:
                self.block(node.body, item, variables)
            except _Continue:
                continue
            except _Break:
                break
        if not pairs and node.otherwise is not None:
            self.block(node.otherwise, dot)

    def pipeline(self, pipeline: _Pipeline, dot: Any) -> Any:
        value: Any = _NOTHING
        for command in pipeline.commands:
            value = self.command(command, dot, value)
        if pipeline.declare:
            if pipeline.assign:
                self.assign(pipeline.declare[0], value)
            elif len(pipeline.declare) == 1:
                self.scopes[-1][pipeline.declare[0]] = value
            else:
                raise GoTemplateError("two variables are only allowed in range")
        return value

    def assign(self, name: str, value: Any) -> None:
        for scope in reversed(self.scopes):
            if name in scope:
                scope[name] = value
                return
        raise GoTemplateError(f"undefined variable: {name}")

    def variable(self, name: str) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise GoTemplateError(f"undefined variable: {name}")

    def command(self, command: list[_Operand], dot: Any, piped: Any) -> Any:
        head, arguments = command[0], command[1:]
        if head.kind == "word":
            return self.call(head.value, arguments, dot, piped)
        if arguments or piped is not _NOTHING:
            raise GoTemplateError("can't give arguments to a non-function")
        return self.operand(head, dot)

    def call(self, name: str, arguments: list[_Operand], dot: Any, piped: Any) -> Any:
        if name in ("and", "or"):
            # Go evaluates and/or lazily and returns the deciding argument itself.
            operands: list[Any] = [*arguments, *([] if piped is _NOTHING else [_Value(piped)])]
            if not operands:
                raise GoTemplateError(f"{name}: missing arguments")
            value = None
            for operand in operands:
                value = operand.value if isinstance(operand, _Value) else self.operand(operand, dot)
                if truth(value) != (name == "and"):
                    return value
            return value
        function = _FUNCTIONS.get(name)
        if function is None:
            raise GoTemplateError(f'function "{name}" not defined here')
        values = [self.operand(a, dot) for a in arguments]
        if piped is not _NOTHING:
            values.append(piped)
        try:
            return function(*values)
        except TypeError as error:
            raise GoTemplateError(f"{name}: wrong number of arguments ({error})") from None

    def operand(self, operand: _Operand, dot: Any) -> Any:
        if operand.kind in ("string", "number", "bool"):
            return operand.value
        if operand.kind == "nil":
            raise GoTemplateError("nil is not a command")
        if operand.kind == "word":
            return self.call(operand.value, [], dot, _NOTHING)
        if operand.kind == "pipeline":
            value = self.pipeline(operand.value, dot)
        elif operand.kind == "variable":
            value = self.variable(operand.value)
        else:  # field or dot
            value = dot
        for name in operand.fields:
            value = _field(value, name)
        return value


class _Value:
    """An already evaluated argument (the piped value of and/or)."""

    def __init__(self, value: Any):
        self.value = value


_NOTHING = object()


def _field(value: Any, name: str) -> Any:
    if isinstance(value, GoStruct):
        if name not in value.fields:
            raise GoTemplateError(f"can't evaluate field {name} in type {value.type_name}")
        return value.fields[name]
    if isinstance(value, dict):
        if name not in value:
            raise GoTemplateError(f"map has no entry for key {name!r} (this template reads a field "
                                  "Ollama may not pass)")
        return value[name]
    raise GoTemplateError(f"can't evaluate field {name} in a {type(value).__name__}")


@dataclass
class GoStruct:
    """A Go struct value: a missing field is an error, as in Go."""

    type_name: str
    fields: dict[str, Any]


def render(source: str, data: dict[str, Any]) -> str:
    """The template executed over `data` (maps by key; GoStruct for structs such as a message)."""
    nodes = _Parser(source).parse()
    run = _Run(data)
    try:
        run.nodes(nodes, data)
    except (_Break, _Continue):
        raise GoTemplateError("break or continue outside range") from None
    return "".join(run.out)


def parse(source: str) -> None:
    """Raises GoTemplateError when the template does not parse."""
    _Parser(source).parse()
