"""The Ollama Modelfile: a TEMPLATE derived from the student tokenizer's own chat template, and
checked against it, so that Ollama feeds the model exactly the text it was trained on.

Derivation, not a table of family templates: probe conversations with sentinel contents go
through the real chat template (tokenizer.apply_chat_template, the tokenizer's own bos/eos), and
the text between the sentinels gives each role's prefix and suffix, the BOS, the generation
prompt, the text written when there is no system prompt, and where the system prompt goes: its
own turn, folded into the first user turn (as training folds it for templates that refuse a
system turn, formats.render), or into the last user turn (Mistral Nemo). Any template of those
shapes works; the family name only labels the markers found. The Go template written from that is
then rendered here (gotemplate.py) over several conversations and compared with the HF render;
any difference and the plan has no template, with a one-line warning, rather than a file that
makes the model answer gibberish or never stop. (tests/export also run every derived TEMPLATE
through Go's own text/template, tests/data/templates/ollama_render.go, where Go is installed.)

Ollama semantics relied on (ollama/ollama template/template.go, `Execute` and `collate`; server
routes.go; docs/template.md; parser/parser.go):
- A template that mentions .Messages gets `.System` (all system messages joined with "\\n\\n"),
  `.Messages` (consecutive messages of one role collated into one, joined with "\\n\\n"; system
  messages stay in the list), `.Tools` and `.Response` = "". Each message is an api.Message
  struct (Role, Content, ...).
- The Modelfile SYSTEM is inserted as a first system message when a chat request has none.
- The template text has no BOS where the model's tokenizer adds one: the runner adds it then
  (inferred from Ollama's own library templates, e.g. llama3-instruct.gotmpl, which omit
  <|begin_of_text|>; not seen in a running Ollama here). Where the tokenizer adds none, a BOS
  the chat template writes stays in the TEMPLATE text.
- A `\"\"\"` value in a Modelfile ends at the first line end where the text read so far ends with
  `\"\"\"`; there are no escapes, and non-printable characters other than tab and newlines are
  dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slm_factory.export import gotemplate
from slm_factory.pipeline import StageError

Message = dict[str, str]

# Mixed case, so that a template changing contents (upper, lower, title) is noticed.
_S, _U1, _A1, _U2 = "sYsQzXw", "uSrQzXa", "aStQzXb", "uSrQzXc"


@dataclass(frozen=True)
class ModelfilePlan:
    template: str | None        # Ollama Go template; None when the chat template could not be derived or did not check
    stops: list[str]            # PARAMETER stop values: the end-of-turn marker(s) of the assistant turn, and eos when it differs
    family: str                 # chatml, gemma, llama3, mistral, phi3, other, unknown
    conversations_checked: int  # conversations rendered identically both ways
    warning: str | None         # one line for the user (why no TEMPLATE), else None


@dataclass(frozen=True)
class ChatShape:
    """The chat template as text around the contents: what a Go template needs to reproduce it."""

    bos: str              # written by the chat template before everything (the tokenizer's bos_token) or ""
    placement: str        # where the system prompt goes: turn, first_user, last_user
    system_prefix: str    # placement turn: before the system prompt
    system_suffix: str    # placement turn: after it
    fold_separator: str   # placement first_user/last_user: between the system prompt and the user's text
    no_system: str        # written where the system turn would be when there is none (a default prompt)
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    generation_prompt: str


# -- rendering as training did -----------------------------------------------------------------


def hf_prompt(tokenizer: Any, messages: list[Message]) -> str:
    """A conversation ending with a user turn, as the student saw it in training plus the
    generation prompt: formats.render's system fold where the template refuses a system turn."""
    from slm_factory.training.formats import render

    return render(tokenizer, messages, generation_prompt=True)


def _training_text(tokenizer: Any, messages: list[Message]) -> str:
    from slm_factory.training.formats import render

    return render(tokenizer, messages)


def runner_bos(tokenizer: Any) -> str:
    """The BOS the serving runner puts before the prompt: the tokenizer's, when encoding plain
    text adds it (what the GGUF's add_bos_token records), else ""."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None or not tokenizer.bos_token:
        return ""
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token if ids and ids[0] == bos_id else ""


# -- derivation --------------------------------------------------------------------------------


class _Shapeless(ValueError):
    """The chat template does not have a shape this module can express."""


def _between(text: str, before: str, after: str) -> str:
    start = text.index(before) + len(before) if before else 0
    end = text.index(after, start) if after else len(text)
    return text[start:end]


def _strip_suffix(text: str, suffix: str, what: str) -> str:
    if not text.endswith(suffix):
        raise _Shapeless(f"{what} does not end with the user prefix")
    return text[:len(text) - len(suffix)] if suffix else text


def derive_shape(tokenizer: Any) -> ChatShape:
    """The chat template's shape from sentinel conversations; _Shapeless when it has none we know.

    Text the template writes that depends on nothing in the conversation lands in a prefix as it
    is. Llama 3.1/3.2 write "Cutting Knowledge Date: December 2023\nToday Date: <date>" into the
    system turn, and 3.2's date is today's (strftime_now): it is constant for a day and becomes
    part of the system prefix, so a convert on another day writes another date (as the HF template
    itself would render it that day)."""
    system, u1, a1, u2 = ({"role": r, "content": c} for r, c in
                          (("system", _S), ("user", _U1), ("assistant", _A1), ("user", _U2)))
    bare = _training_text(tokenizer, [u1])  # no generation prompt
    with_prompt = hf_prompt(tokenizer, [u1])
    closed = _training_text(tokenizer, [u1, a1])
    dialogue = hf_prompt(tokenizer, [u1, a1, u2])
    full = hf_prompt(tokenizer, [system, u1, a1, u2])
    for text, needed in ((bare, [_U1]), (closed, [_U1, _A1]), (dialogue, [_U1, _A1, _U2]), (full, [_S, _U1, _A1, _U2])):
        if any(text.count(sentinel) != 1 for sentinel in needed):
            raise _Shapeless("the contents are not written exactly once each")

    # A render without a generation prompt may close the whole text after the last turn (Phi-3
    # writes eos there): that ending belongs to no turn, and shows as text the next turn lacks.
    user_to_assistant = _between(dialogue, _U1, _A1)
    ending = _conversation_ending(tokenizer, _between(bare, _U1, ""), user_to_assistant)
    user_suffix = _strip_ending(_between(bare, _U1, ""), ending)
    if not user_to_assistant.startswith(user_suffix):
        raise _Shapeless("the user turn's end differs inside a conversation")
    bare_turns = bare[:len(bare) - len(ending)]
    if not with_prompt.startswith(bare_turns):
        raise _Shapeless("the generation prompt is not appended to the conversation")
    generation_prompt = with_prompt[len(bare_turns):]
    assistant_suffix = _strip_ending(_between(closed, _A1, ""), ending)
    assistant_prefix = user_to_assistant[len(user_suffix):]
    assistant_to_user = _between(dialogue, _A1, _U2)
    if not assistant_to_user.startswith(assistant_suffix):
        raise _Shapeless("the assistant turn's end differs inside a conversation")
    user_prefix = assistant_to_user[len(assistant_suffix):]
    if _between(dialogue, _U2, "") != user_suffix + generation_prompt:
        raise _Shapeless("the last user turn ends differently")

    # Only a template that writes bos_token has a BOS of its own (SmolLM2's bos_token is
    # <|im_start|>, which its ChatML template writes as a turn marker).
    writes_bos = bool(tokenizer.bos_token) and "bos_token" in str(tokenizer.chat_template)
    bos = tokenizer.bos_token if writes_bos and dialogue.startswith(tokenizer.bos_token) else ""
    no_system = _strip_suffix(_between(dialogue, "", _U1), user_prefix, "the text before the first user turn")[len(bos):]
    return _system_shape(full, bos, no_system, ChatShape(
        bos=bos, placement="", system_prefix="", system_suffix="", fold_separator="", no_system=no_system,
        user_prefix=user_prefix, user_suffix=user_suffix, assistant_prefix=assistant_prefix,
        assistant_suffix=assistant_suffix, generation_prompt=generation_prompt))


def _conversation_ending(tokenizer: Any, after_user: str, user_to_assistant: str) -> str:
    eos = tokenizer.eos_token or ""
    if eos and after_user.endswith(eos) and not user_to_assistant.startswith(after_user):
        return eos
    return ""


def _strip_ending(text: str, ending: str) -> str:
    return text[:len(text) - len(ending)] if ending and text.endswith(ending) else text


def _system_shape(full: str, bos: str, no_system: str, shape: ChatShape) -> ChatShape:
    from dataclasses import replace

    if full.index(_S) > full.index(_A1):  # into the last user turn (Mistral Nemo)
        before, separator = _between(full, _A1, _S), _between(full, _S, _U2)
        if before != shape.assistant_suffix + shape.user_prefix or full.index(_U1) > full.index(_S):
            raise _Shapeless("the system prompt sits inside a later turn in a way not understood")
        if not full.startswith(bos + no_system + shape.user_prefix + _U1):
            raise _Shapeless("the conversation's start changes with a system prompt")
        return replace(shape, placement="last_user", fold_separator=separator)
    head, between = _between(full, "", _S), _between(full, _S, _U1)
    if head == bos + no_system + shape.user_prefix:  # folded into the first user turn
        return replace(shape, placement="first_user", fold_separator=between)
    if not head.startswith(bos) or not between.endswith(shape.user_prefix):
        raise _Shapeless("the system turn's text is not understood")
    return replace(shape, placement="turn", system_prefix=head[len(bos):],
                   system_suffix=between[:len(between) - len(shape.user_prefix)])


_FAMILIES = (("chatml", "<|im_start|>user"), ("gemma", "<start_of_turn>user"),
             ("llama3", "<|start_header_id|>user"), ("mistral", "[INST]"), ("phi3", "<|user|>"))


def family_of(shape: ChatShape) -> str:
    for name, marker in _FAMILIES:
        if marker in shape.user_prefix:
            return name
    return "other"


# -- the Go template ---------------------------------------------------------------------------


def go_template(shape: ChatShape, include_bos: bool) -> str:
    """The Ollama template that writes `shape`. Literal text stays as written; an action gets a
    `{{-` (eating the layout newline before it) only where that newline is all it would eat."""
    pieces: list[tuple[str, str]] = []
    lit = lambda text: pieces.append(("text", text))  # noqa: E731
    act = lambda code: pieces.append(("action", code))  # noqa: E731
    if include_bos:
        lit(shape.bos)
    if shape.placement == "turn" and shape.no_system == shape.system_prefix + shape.system_suffix:
        lit(shape.system_prefix), act("$.System"), lit(shape.system_suffix)  # an empty system turn (Llama 3)
    elif shape.placement == "turn":
        act("if $.System")
        lit(shape.system_prefix), act("$.System"), lit(shape.system_suffix)
        if shape.no_system:
            act("else"), lit(shape.no_system)
        act("end")
    else:
        lit(shape.no_system)
        if shape.placement == "first_user":
            act("$system := $.System")
    act("range $i, $_ := $.Messages")
    act("$last := eq (len (slice $.Messages $i)) 1")
    act('if eq .Role "user"')
    lit(shape.user_prefix)
    if shape.placement == "first_user":
        act("if $system"), act("$system"), lit(shape.fold_separator), act('$system = ""'), act("end")
    elif shape.placement == "last_user":
        act("if and $last $.System"), act("$.System"), lit(shape.fold_separator), act("end")
    act(".Content"), lit(shape.user_suffix)
    if shape.generation_prompt:
        act("if $last"), lit(shape.generation_prompt), act("end")
    act('else if eq .Role "assistant"')
    lit(shape.assistant_prefix), act(".Content"), lit(shape.assistant_suffix)
    act("end")
    act("end")
    return _layout(pieces)


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _layout(pieces: list[tuple[str, str]]) -> str:
    out = ""
    for kind, text in pieces:
        if kind == "text":
            if not text:
                continue
            out += f"{{{{ {_go_quote(text)} }}}}" if "{{" in text or "}}" in text else text
        elif out and out[-1] not in " \t\r\n":
            out += f"\n{{{{- {text} }}}}"
        else:
            out += f"{{{{ {text} }}}}"
    return out


# -- checking ----------------------------------------------------------------------------------


def ollama_render(template: str, messages: list[Message]) -> str:
    """What Ollama's template.Execute writes for a chat request with these messages."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    collated: list[Message] = []
    for message in messages:
        if collated and collated[-1]["role"] == message["role"]:
            collated[-1] = {"role": message["role"], "content": collated[-1]["content"] + "\n\n" + message["content"]}
        else:
            collated.append(dict(message))
    structs = [gotemplate.GoStruct("api.Message", {"Role": m["role"], "Content": m["content"], "Thinking": "",
                                                   "Images": [], "ToolCalls": [], "ToolName": ""}) for m in collated]
    return gotemplate.render(template, {"System": "\n\n".join(system), "Messages": structs, "Tools": [],
                                        "Response": ""})


def check_conversations(system: str) -> list[list[Message]]:
    """Conversations ending with a user turn: system + one turn, system + three turns, none, a
    multi-line system prompt, Korean, and contents with newlines, braces and `{{`. Contents have
    no surrounding whitespace: Llama 3 and Gemma `| trim` each content, which a Go template cannot
    do (Ollama passes contents as they are), so a content with outer whitespace renders
    differently there, and did in training only if the data had such whitespace (formats.py
    strips it)."""
    def turns(*texts: str) -> list[Message]:
        return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]

    def with_system(prompt: str, messages: list[Message]) -> list[Message]:
        return [{"role": "system", "content": prompt}, *messages] if prompt else messages

    multi_line = "You answer from the manual.\n\nRules:\n- cite the section\n- say \"I don't know\" {{ .System }}"
    return [
        with_system(system, turns("What does the warranty cover?")),
        with_system(system, turns("How long is the warranty?", "Two years from purchase.", "Does it cover batteries?",
                                  "Batteries are covered for one year.", "And the screen?")),
        turns("Hello there."),
        turns("First question?", "First answer.", "Second question?"),
        with_system(multi_line, turns("Summarise section 4.2.", "It covers returns.\nSee 4.3 too.", "Thanks, and 5?")),
        with_system("당신은 제품 설명서를 바탕으로 답하는 도우미입니다.",
                    turns("보증 기간은 얼마나 되나요?", "구매일로부터 2년입니다.", "배터리도 포함되나요?")),
        with_system(system, turns('Print {{ .Content }} and {"a": {"b": 1}} }} {{', "```\n{{- end }}\n```\n\ndone",
                                  "Line one\nline two\n\n\tindented")),
    ]


def check_template(tokenizer: Any, template: str, system: str) -> list[str]:
    """Differences between Ollama's render of `template` and the training render (plus the
    generation prompt) over check_conversations(system); empty when every one is identical. The
    runner's BOS (runner_bos) is put before Ollama's text, as the runner adds it.

    What a Go template cannot express, and so is not checked: Jinja filters on contents (Llama 3
    and Gemma `| trim` each one; SmolLM3 rewrites its system prompt) — the check uses contents
    without outer whitespace and the project's own system prompt, which is what training and
    the Modelfile's SYSTEM use; tool calls; images; and messages of one role in a row (Ollama
    collates them with "\n\n"; training never had them)."""
    differences = []
    bos = runner_bos(tokenizer)
    for number, messages in enumerate(check_conversations(system), 1):
        expected = hf_prompt(tokenizer, messages)
        try:
            got = bos + ollama_render(template, messages)
        except gotemplate.GoTemplateError as error:
            differences.append(f"conversation {number}: the template does not run: {error}")
            continue
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            differences.append(f"conversation {number}: differs at character {at}: "
                               f"Ollama {got[max(0, at - 20):at + 30]!r}, training {expected[max(0, at - 20):at + 30]!r}")
    return differences


# -- the plan ----------------------------------------------------------------------------------


def _stops(shape: ChatShape | None, tokenizer: Any) -> list[str]:
    """The assistant turn's end marker (each special token in it, when it holds several: the
    model stops after the first one it writes), then eos."""
    marker = shape.assistant_suffix.strip() if shape else ""
    special = tokenizer.get_added_vocab()
    if not marker or marker in special:
        stops = [marker] if marker else []
    else:
        stops = sorted((token for token in special if token and token in marker), key=marker.index) or [marker]
    eos = tokenizer.eos_token or ""
    if eos and eos not in stops:
        stops.append(eos)
    return stops


def turn_stops(tokenizer: Any) -> list[str]:
    """The stops alone (what ends the assistant's turn, then eos), without writing or checking a
    template: what transformers' generate needs to stop where Ollama does."""
    try:
        shape = derive_shape(tokenizer) if getattr(tokenizer, "chat_template", None) else None
    except Exception:  # noqa: BLE001 - as in plan_modelfile: a foreign template that cannot be read
        shape = None
    return _stops(shape, tokenizer)


def plan_modelfile(tokenizer: Any, system: str) -> ModelfilePlan:
    """The TEMPLATE and stops for this tokenizer, checked; template None with a warning when the
    chat template cannot be expressed or the check finds a difference."""
    if not getattr(tokenizer, "chat_template", None):
        return ModelfilePlan(None, _stops(None, tokenizer), "unknown", 0,
                             "the tokenizer has no chat template; the Modelfile has no TEMPLATE")
    try:
        shape = derive_shape(tokenizer)
    except Exception as error:  # noqa: BLE001 - any failure of a foreign template means: no template
        return ModelfilePlan(None, _stops(None, tokenizer), "unknown", 0,
                             f"could not derive an Ollama TEMPLATE from the chat template ({error}); "
                             "write one by hand before `ollama create`")
    bos = runner_bos(tokenizer)
    family = family_of(shape)
    if bos and not shape.bos:
        # Training encodes rendered text without special tokens (formats.encode), so it never saw
        # this BOS, but a runner adds it to every prompt of a model whose tokenizer adds it.
        return ModelfilePlan(None, _stops(shape, tokenizer), family, 0,
                             f"the tokenizer adds {bos} to every text but its chat template does not write it, "
                             "so Ollama would prompt differently from training; no TEMPLATE written")
    template = go_template(shape, include_bos=shape.bos != bos)
    try:
        differences = check_template(tokenizer, template, system)
    except Exception as error:  # noqa: BLE001
        differences = [f"the chat template fails on a check conversation ({error})"]
    if not differences and _modelfile_problem(template):
        differences = [f"the template {_modelfile_problem(template)}"]
    if differences:
        return ModelfilePlan(None, _stops(shape, tokenizer), family, 0,
                             f"the derived {family} TEMPLATE does not render as the chat template "
                             f"({differences[0]}); write one by hand before `ollama create`")
    return ModelfilePlan(template, _stops(shape, tokenizer), family, len(check_conversations(system)), None)


# -- the Modelfile -----------------------------------------------------------------------------

def _ends_early(text: str) -> bool:
    """Whether Ollama's parser would end a \"\"\"-quoted `text` before its end: it stops at the
    first line end where the value read so far, trimmed, ends with \"\"\" (parser.go unquote)."""
    for position, char in enumerate(text):
        if char in "\r\n":
            head = ('"""' + text[:position]).rstrip()
            if len(head) >= 6 and head.endswith('"""'):
                return True
    return False


def _modelfile_problem(text: str) -> str | None:
    """Why Ollama's Modelfile parser would not read `text` back as it is, or None."""
    if _ends_early(text):
        return 'has """ before a line end, which a Modelfile cannot quote'
    unprintable = [c for c in text if not c.isprintable() and c not in "\t\r\n"]
    if unprintable:
        return f"contains {unprintable[0]!r}, which Ollama's Modelfile parser drops"
    return None


def _block(name: str, text: str) -> str:
    problem = _modelfile_problem(text)
    if problem:
        raise StageError(f"export.ollama: the {name} {problem}; change it")
    return f'{name.upper()} """{text}"""'


def _parameter_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if "\n" in text or "\r" in text:
        raise StageError(f"export.ollama.parameters: {text!r} spans lines; a PARAMETER value is one line")
    return f'"{text}"' if isinstance(value, str) else text


def modelfile_text(source: str, plan: ModelfilePlan, system: str, parameters: dict[str, Any],
                   adapter: str | None = None) -> str:
    """FROM (and ADAPTER when the adapter is not merged), SYSTEM, PARAMETER lines (a list gives one
    line per value; stops merged with the plan's), and TEMPLATE; without a template, a comment with
    the warning at the top instead."""
    lines = [f"# {plan.warning}"] if plan.template is None and plan.warning else []
    lines.append(f"FROM {source}")
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    if system:
        lines.append(_block("system", system))
    stops = list(plan.stops)
    for name, value in parameters.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if name == "stop":
            stops += [str(v) for v in values if str(v) not in stops]
            continue
        lines += [f"PARAMETER {name} {_parameter_value(v)}" for v in values]
    lines += [f"PARAMETER stop {_parameter_value(stop)}" for stop in stops]
    if plan.template is not None:
        lines.append(_block("template", plan.template))
    return "\n".join(lines) + "\n"
