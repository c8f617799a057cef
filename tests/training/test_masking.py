"""Loss on assistant replies only, for ChatML (SmolLM2), Llama-3-, Gemma-style and marked templates."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from slm_factory.training import masking
from slm_factory.training.masking import IGNORE_INDEX, TemplateMaskError, TooLongError, tokenize_with_labels

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"

# template name -> (end-of-turn marker, whether the template trims message contents)
FAMILIES = {
    "smollm2": ("<|im_end|>", False),
    "llama3-style": ("<|eot_id|>", True),
    "gemma-style": ("<end_of_turn>", True),
    "chatml-generation": ("<|im_end|>", False),
}

PIECES = [
    "서울 청년 주택 보조금 신청 마감일은 언제인가요?", "2024년 3월 31일입니다.", "The fund pays 40%.",
    "Ms. Quorvath founded Ebbenfeld in 1871.", "  leading and trailing spaces  ", "line one\nline two",
    "<b>tags</b> & {braces}", "숫자 1,234,567원", "x", "Why? Because.", "😀 emoji", "tab\there",
]


def tokenizer_for(family: str, tokenizer_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if family != "smollm2":
        tokenizer.chat_template = (TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8")
    return tokenizer


def random_dialogue(rng: random.Random) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": rng.choice(PIECES)}] if rng.random() < 0.6 else []
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": " ".join(rng.sample(PIECES, rng.randint(1, 3)))})
        messages.append({"role": "assistant", "content": " ".join(rng.sample(PIECES, rng.randint(1, 3)))})
    return messages


def trained_runs(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    current: list[int] = []
    for token, label in zip(input_ids, labels):
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token, "a trained label must be the token itself"
            current.append(token)
    if current:
        runs.append(current)
    return runs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_only_assistant_replies_and_their_end_marker_are_trained(family, smollm2_tokenizer_dir):
    tokenizer = tokenizer_for(family, smollm2_tokenizer_dir)
    end_marker, trims = FAMILIES[family]
    rng = random.Random(family)
    for _ in range(40):
        messages = random_dialogue(rng)
        input_ids, labels = tokenize_with_labels(tokenizer, messages, max_length=4096)
        assert input_ids == list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        replies = [m["content"].strip() if trims else m["content"] for m in messages if m["role"] == "assistant"]
        runs = [tokenizer.decode(run) for run in trained_runs(input_ids, labels)]
        assert len(runs) == len(replies), (runs, replies)
        for run, reply in zip(runs, replies):
            # BPE may merge a reply's leading whitespace into the scaffolding before it, and
            # where the template's markers are plain text to this tokenizer (llama3-style on
            # SmolLM2) the end marker with the first character of the next turn.
            run, expected = run.lstrip(), (reply + end_marker).lstrip()
            assert run == expected or (run.startswith(expected) and len(run) - len(expected) <= 2), (run, expected)


def test_prompt_tokens_are_never_trained_even_when_they_repeat_the_reply(smollm2_tokenizer):
    messages = [
        {"role": "user", "content": "Say: the answer is 42."},
        {"role": "assistant", "content": "the answer is 42."},
    ]
    input_ids, labels = tokenize_with_labels(smollm2_tokenizer, messages, max_length=256)
    prompt_text = smollm2_tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    n_prompt = len(smollm2_tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    assert set(labels[:n_prompt]) == {IGNORE_INDEX}
    assert all(label != IGNORE_INDEX for label in labels[n_prompt:-1])
    assert labels[-1] == IGNORE_INDEX  # the newline ChatML writes after <|im_end|> is scaffolding
    assert smollm2_tokenizer.decode(input_ids[-2]) == "<|im_end|>" and labels[-2] == input_ids[-2]


def test_the_llama3_style_template_takes_the_offset_fallback_and_smollm2_the_token_prefixes(smollm2_tokenizer_dir):
    messages = random_dialogue(random.Random(7))
    for family, prefixes_work in (("smollm2", True), ("llama3-style", False)):
        tokenizer = tokenizer_for(family, smollm2_tokenizer_dir)
        text, spans = masking.assistant_char_spans(tokenizer, messages)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert (masking._mask_by_token_prefixes(tokenizer, text, spans, ids) is not None) == prefixes_work


def test_generation_markers_agree_with_rendered_prefixes(smollm2_tokenizer_dir):
    marked = tokenizer_for("chatml-generation", smollm2_tokenizer_dir)
    assert masking.has_generation_markers(marked)
    rng = random.Random(3)
    checked = 0
    for _ in range(20):
        messages = random_dialogue(rng)
        by_markers = tokenize_with_labels(marked, messages, 4096)
        ids, mask = masking._rendered_assistant_tokens(marked, messages)
        assert by_markers[0] == ids
        differ = [i for i, (label, m) in enumerate(zip(by_markers[1], mask)) if (label != IGNORE_INDEX) != m]
        # The only disagreement allowed: a token that merges the template's newline with the
        # reply's leading space (the markers count it as the reply's, the offsets as scaffolding).
        assert all(marked.decode([ids[i]]).startswith("\n ") for i in differ)
        checked += len(ids) - len(differ)
    assert checked > 1000


def test_too_long_is_an_error_not_a_cut(smollm2_tokenizer):
    messages = [{"role": "user", "content": "긴 질문 " * 200}, {"role": "assistant", "content": "네."}]
    with pytest.raises(TooLongError) as caught:
        tokenize_with_labels(smollm2_tokenizer, messages, max_length=64)
    assert caught.value.length > 64


def test_a_template_that_rewrites_earlier_turns_is_refused(smollm2_tokenizer_dir):
    tokenizer = tokenizer_for("smollm2", smollm2_tokenizer_dir)
    # Renders each turn with the number of turns that follow it, so a prefix is not a prefix.
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}({{ messages|length }}): {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(TemplateMaskError):
        tokenize_with_labels(tokenizer, messages, 64)


def logit_grads(model, input_ids: list[int], labels: list[int]):
    import torch

    ids = torch.tensor([input_ids])
    out = model(input_ids=ids)
    logits = out.logits
    logits.retain_grad()
    shifted = torch.tensor([labels])[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], shifted[0], ignore_index=IGNORE_INDEX)
    loss.backward()
    return loss.detach(), logits.grad[0]


def test_prompt_tokens_carry_no_loss_in_the_model(smollm2_tokenizer, tiny_llama):
    """The gradient of the loss is zero at every position that predicts a prompt token, and the
    model's own loss equals the mean over assistant targets; with prompt labels left in, the
    same checks fail (so they can)."""
    import torch

    messages = [
        {"role": "system", "content": "답변은 짧게."},
        {"role": "user", "content": "Where did Quorvath live?"},
        {"role": "assistant", "content": "In Ebbenfeld."},
        {"role": "user", "content": "언제부터요?"},
        {"role": "assistant", "content": "1871년부터요."},
    ]
    input_ids, labels = tokenize_with_labels(smollm2_tokenizer, messages, 512)
    loss, grads = logit_grads(tiny_llama, input_ids, labels)
    predicts_prompt = torch.tensor([label == IGNORE_INDEX for label in labels[1:]] + [True])
    assert predicts_prompt.sum() > 20 and (~predicts_prompt).sum() > 5
    assert torch.all(grads[predicts_prompt] == 0)
    assert torch.all(grads[~predicts_prompt].abs().sum(-1) > 0)

    model_loss = tiny_llama(input_ids=torch.tensor([input_ids]), labels=torch.tensor([labels])).loss
    torch.testing.assert_close(model_loss, loss)

    changed = list(labels)
    prompt_position = labels.index(IGNORE_INDEX, 5)
    changed[prompt_position] = input_ids[prompt_position]
    changed_loss, changed_grads = logit_grads(tiny_llama, input_ids, changed)
    assert not torch.equal(changed_loss, loss)
    assert changed_grads[prompt_position - 1].abs().sum() > 0
