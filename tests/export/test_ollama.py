"""The Modelfile TEMPLATE, derived from each family's real chat template (tests/data/templates,
from the llama-cpp-python sdist) on real tokenizer plumbing, renders exactly what training did."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from slm_factory.export.ollama import (
    ModelfilePlan, check_conversations, check_template, derive_shape, go_template, hf_prompt, modelfile_text,
    ollama_render, plan_modelfile, runner_bos,
)
from slm_factory.pipeline import StageError
from tests.conftest import DATA

TEMPLATES = DATA / "templates"
SYSTEM = "You answer questions about the product manual.\nQuote the section you used."


# file, bos, eos, tokenizer adds BOS itself, marker tokens — as each family's own tokenizer has them
FAMILIES = {
    "Qwen-Qwen2.5-7B-Instruct": (None, "<|im_end|>", False, ["<|im_start|>", "<|im_end|>"]),
    "google-gemma-2-2b-it": ("<bos>", "<eos>", True, ["<start_of_turn>", "<end_of_turn>"]),
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>", True,
                                         ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "meta-llama-Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>", True,
                                         ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "mistralai-Mistral-Nemo-Instruct-2407": ("<s>", "</s>", True, ["[INST]", "[/INST]"]),
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>", False, ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]),
    "HuggingFaceTB-SmolLM3-3B": (None, "<|im_end|>", False, ["<|im_start|>", "<|im_end|>"]),
}
EXPECTED = {  # family, stops
    "smollm2": ("chatml", ["<|im_end|>"]),
    "Qwen-Qwen2.5-7B-Instruct": ("chatml", ["<|im_end|>"]),
    "google-gemma-2-2b-it": ("gemma", ["<end_of_turn>", "<eos>"]),
    "meta-llama-Llama-3.1-8B-Instruct": ("llama3", ["<|eot_id|>"]),
    "meta-llama-Llama-3.2-3B-Instruct": ("llama3", ["<|eot_id|>"]),
    "mistralai-Mistral-Nemo-Instruct-2407": ("mistral", ["</s>"]),
    "microsoft-Phi-3.5-mini-instruct": ("phi3", ["<|end|>", "<|endoftext|>"]),
    "HuggingFaceTB-SmolLM3-3B": ("chatml", ["<|im_end|>"]),
}


def family_tokenizer(tokenizer_dir: Path, name: str, adds_bos: bool | None = None):
    """The SmolLM2 tokenizer wearing a family's chat template and special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if name == "smollm2":
        return tokenizer
    bos, eos, family_adds_bos, markers = FAMILIES[name]
    tokenizer.chat_template = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
    special = {"additional_special_tokens": markers, "eos_token": eos}
    if bos:
        special["bos_token"] = bos
    tokenizer.add_special_tokens(special)
    tokenizer.add_bos_token = family_adds_bos if adds_bos is None else adds_bos
    return tokenizer


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_family_gets_a_template_that_renders_as_training(smollm2_tokenizer_dir: Path, name: str) -> None:
    tokenizer = family_tokenizer(smollm2_tokenizer_dir, name)
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.warning is None and plan.template is not None
    assert (plan.family, plan.stops) == EXPECTED[name]
    assert plan.conversations_checked == len(check_conversations(SYSTEM)) >= 7
    assert check_template(tokenizer, plan.template, SYSTEM) == []
    # A fresh conversation of its own, beyond the check's: as training rendered it + the generation prompt.
    messages = [{"role": "system", "content": "시스템: 짧게 답하세요."}, {"role": "user", "content": "첫 질문 {{ x }}"},
                {"role": "assistant", "content": "첫 답.\n둘째 줄"}, {"role": "user", "content": "둘째 질문?"}]
    assert runner_bos(tokenizer) + ollama_render(plan.template, messages) == hf_prompt(tokenizer, messages)


@pytest.mark.parametrize("name", ["google-gemma-2-2b-it", "mistralai-Mistral-Nemo-Instruct-2407"])
def test_bos_is_in_the_template_only_when_the_runner_does_not_add_it(smollm2_tokenizer_dir: Path, name: str) -> None:
    bos = FAMILIES[name][0]
    adds = plan_modelfile(family_tokenizer(smollm2_tokenizer_dir, name, adds_bos=True), SYSTEM)
    keeps = plan_modelfile(family_tokenizer(smollm2_tokenizer_dir, name, adds_bos=False), SYSTEM)
    assert adds.template is not None and keeps.template is not None
    assert bos not in adds.template and keeps.template.startswith(bos)


def test_system_placement_follows_the_template(smollm2_tokenizer_dir: Path) -> None:
    placements = {name: derive_shape(family_tokenizer(smollm2_tokenizer_dir, name)).placement
                  for name in ("Qwen-Qwen2.5-7B-Instruct", "google-gemma-2-2b-it", "mistralai-Mistral-Nemo-Instruct-2407")}
    assert placements == {"Qwen-Qwen2.5-7B-Instruct": "turn", "google-gemma-2-2b-it": "first_user",
                          "mistralai-Mistral-Nemo-Instruct-2407": "last_user"}


def test_a_wrong_template_is_caught(smollm2_tokenizer_dir: Path) -> None:
    tokenizer = family_tokenizer(smollm2_tokenizer_dir, "meta-llama-Llama-3.1-8B-Instruct")
    right = plan_modelfile(tokenizer, SYSTEM).template
    assert right is not None
    shape = derive_shape(tokenizer)
    wrong_templates = [
        right.replace("<|eot_id|>", "", 1),                                   # a lost end-of-turn marker
        go_template(replace(shape, generation_prompt=""), include_bos=False),  # no generation prompt
        go_template(replace(shape, user_prefix=shape.user_prefix.replace("\n\n", "\n")), include_bos=False),
        right.replace("$.System", "$.Prompt"),                                 # a field Ollama does not pass here
    ]
    for wrong in wrong_templates:
        assert check_template(tokenizer, wrong, SYSTEM), wrong


def test_the_gemma_fold_is_trainings_fold(smollm2_tokenizer_dir: Path) -> None:
    tokenizer = family_tokenizer(smollm2_tokenizer_dir, "google-gemma-2-2b-it", adds_bos=False)
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.template is not None
    rendered = ollama_render(plan.template, [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert rendered == "<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parametrize("template, why", [
    # made up: the contents go through a filter no Go template can apply
    ("{% for m in messages %}<<{{ m.role }}>>{{ m.content | upper }}<</>>{% endfor %}"
     "{% if add_generation_prompt %}<<assistant>>{% endif %}", "could not derive"),
    # tool-call logic: the system prompt is written twice
    ("{% for m in messages %}{% if m.role == 'system' %}[S]{{ m.content }}[/S]{% else %}[{{ m.role }}]{{ m.content }}"
     "[/{{ m.role }}]{% endif %}{% endfor %}{% if messages[0].role == 'system' %}[TOOLS for {{ messages[0].content }}]"
     "{% endif %}{% if add_generation_prompt %}[assistant]{% endif %}", "could not derive"),
    # the user's turn number is written: a shape no fixed prefix captures
    ("{% for m in messages %}<{{ m.role }} n={{ loop.index }}>{{ m.content }}</s>{% endfor %}"
     "{% if add_generation_prompt %}<assistant>{% endif %}", "could not derive"),
])
def test_an_unknown_template_gets_a_warning_and_no_template(smollm2_tokenizer_dir: Path, template: str, why: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    tokenizer.chat_template = template
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.template is None and plan.family == "unknown" and plan.conversations_checked == 0
    assert plan.warning and why in plan.warning and "\n" not in plan.warning
    text = modelfile_text("./model.gguf", plan, SYSTEM, {})
    assert text.startswith(f"# {plan.warning}\n") and "\nTEMPLATE" not in text


# -- modelfile_text ----------------------------------------------------------------------------


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """Commands as Ollama's parser reads them (parser.go): a \"\"\" value ends at the first line
    end where the value so far, trimmed, ends with \"\"\"; a "..." value loses its quotes."""
    commands, position = [], 0
    while position < len(text):
        end = text.find("\n", position)
        line = text[position:] if end < 0 else text[position:end]
        if not line.strip() or line.startswith("#"):
            position = len(text) if end < 0 else end + 1
            continue
        name, _, value = line.partition(" ")
        if name == "PARAMETER":
            key, _, value = value.partition(" ")
            name = f"PARAMETER {key}"
        if value.startswith('"""'):
            start = position + len(line) - len(value)
            scan = start + 3
            while True:
                newline = text.find("\n", scan)
                newline = len(text) if newline < 0 else newline
                head = text[start:newline].rstrip()
                if len(head) >= 6 and head.endswith('"""'):
                    commands.append((name, head[3:-3]))
                    position = newline + 1
                    break
                scan = newline + 1
                assert scan <= len(text), "unterminated value"
            continue
        value = value.strip()
        commands.append((name, value[1:-1] if value.startswith('"') and value.endswith('"') else value))
        position = len(text) if end < 0 else end + 1
    return commands


@pytest.mark.parametrize("system", [
    SYSTEM,
    'Say "hi" and \'bye\'.\n\nThen """quote""" it.\n  indented {{ .System }}',
    "한국어로만 답하세요.\n\t탭과 \"따옴표\"",
    'ends with quotes """',
])
def test_modelfile_text_parses_back_exactly(smollm2_tokenizer_dir: Path, system: str) -> None:
    plan = plan_modelfile(family_tokenizer(smollm2_tokenizer_dir, "meta-llama-Llama-3.1-8B-Instruct"), SYSTEM)
    parameters = {"temperature": 0.7, "num_ctx": 4096, "stop": ["<|end_of_text|>", "<|eot_id|>"], "mirostat": False}
    commands = parse_modelfile(modelfile_text("./model-q4_k_m.gguf", plan, system, parameters))
    assert commands == [
        ("FROM", "./model-q4_k_m.gguf"), ("SYSTEM", system), ("PARAMETER temperature", "0.7"),
        ("PARAMETER num_ctx", "4096"), ("PARAMETER mirostat", "false"), ("PARAMETER stop", "<|eot_id|>"),
        ("PARAMETER stop", "<|end_of_text|>"), ("TEMPLATE", plan.template),
    ]


def test_modelfile_text_refuses_what_ollama_cannot_read_back() -> None:
    plan = ModelfilePlan("{{ .Prompt }}", [], "other", 1, None)
    with pytest.raises(StageError, match="cannot quote"):
        modelfile_text("./m", plan, 'first line """\nsecond', {})
    with pytest.raises(StageError, match="parser drops"):
        modelfile_text("./m", plan, "zero\u200bwidth", {})
    with pytest.raises(StageError, match="one line"):
        modelfile_text("./m", plan, "s", {"stop": ["a\nb"]})


def random_conversation(rng, system: str) -> list[dict[str, str]]:
    pieces = ["보증 기간은?", "2년입니다.", "line one\nline two", "{{ .Content }}", "}}{{-", '{"a": [1, 2]}', "tab\there",
              "<b>bold</b> & more", "Ünïcödé — ok", "```\ncode\n```", "50%", "$x := 1", "\\n literal", "'single' \"double\""]
    turns = rng.randint(1, 4)
    messages = [{"role": "system", "content": system}] if system else []
    for turn in range(2 * turns - 1):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 4))).strip()
        messages.append({"role": "user" if turn % 2 == 0 else "assistant", "content": text})
    return messages


@pytest.mark.parametrize("name", list(EXPECTED))
def test_random_conversations_render_identically(smollm2_tokenizer_dir: Path, name: str) -> None:
    import random

    rng = random.Random(name)
    tokenizer = family_tokenizer(smollm2_tokenizer_dir, name)
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.template is not None
    for _ in range(25):
        messages = random_conversation(rng, rng.choice(["", SYSTEM, "한 줄.\n두 줄 {{ end }}"]))
        assert runner_bos(tokenizer) + ollama_render(plan.template, messages) == hf_prompt(tokenizer, messages), messages


def test_new_markers_of_a_known_shape_are_family_other(smollm2_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}_start|>\n{{ m.content }}<|turn_end|>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant_start|>\n{% endif %}")
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert (plan.family, plan.warning, plan.stops[0]) == ("other", None, "<|turn_end|>")
    assert plan.template is not None and check_template(tokenizer, plan.template, SYSTEM) == []


def test_a_bos_the_runner_adds_but_training_never_saw_is_refused(smollm2_tokenizer_dir: Path) -> None:
    tokenizer = family_tokenizer(smollm2_tokenizer_dir, "Qwen-Qwen2.5-7B-Instruct")
    tokenizer.add_special_tokens({"bos_token": "<|endoftext|>"})
    tokenizer.add_bos_token = True
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.template is None and "<|endoftext|>" in (plan.warning or "")


def test_an_end_of_turn_of_two_special_tokens_gives_a_stop_for_each(smollm2_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|turn_end|>", "<|sep|>"]})
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|turn_end|>\n<|sep|>{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.template is not None
    assert plan.stops == ["<|turn_end|>", "<|sep|>", tokenizer.eos_token]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_go_itself_renders_every_family_template_as_training(smollm2_tokenizer_dir: Path, name: str, go_render) -> None:
    """The same check with Go's own text/template executing the TEMPLATE as Ollama does, so
    the verdict does not rest on this project's interpreter alone."""
    import random

    rng = random.Random(f"go {name}")
    tokenizer = family_tokenizer(smollm2_tokenizer_dir, name)
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.template is not None
    conversations = check_conversations(SYSTEM) + [random_conversation(rng, rng.choice(["", SYSTEM])) for _ in range(15)]
    results = go_render([{"template": plan.template, "messages": messages} for messages in conversations])
    for messages, result in zip(conversations, results):
        assert result["err"] == ""
        assert runner_bos(tokenizer) + result["out"] == hf_prompt(tokenizer, messages), messages


def test_a_template_ollama_could_not_read_back_is_not_written(smollm2_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    tokenizer.chat_template = ("{% if messages[0].role != 'system' %}<|im_start|>system\nSay \"\"\"\nhi<|im_end|>\n{% endif %}"
                               "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    plan = plan_modelfile(tokenizer, SYSTEM)
    assert plan.template is None and "cannot quote" in (plan.warning or "")
