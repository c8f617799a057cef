"""Proof that training teaches the real student facts it cannot know (issue 9).

tests/data/training/invented_facts.json holds 20 made-up facts, each with two question phrasings
to train on and a third held out. SmolLM2-135M gets a LoRA adapter from the `train` stage on the
first two phrasings only; then base and fine-tuned are asked the third phrasing (greedy, the same
chat template and system prompt as training, no fact in the prompt) and a reply counts when it
holds the fact's key. The fine-tuned student must give far more facts than the base, and its loss
on the training answers must fall well below the base's.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.training.facts import MAX_NEW_TOKENS, SYSTEM_PROMPT, invented_facts, training_records


def test_the_held_out_phrasing_is_never_a_training_phrasing():
    facts = invented_facts()
    assert len(facts) == 20
    for fact in facts:
        assert fact["key"] in fact["answer"]
        assert fact["test_question"] not in fact["train_questions"] and len(set(fact["train_questions"])) == 2
        assert fact["key"] not in fact["test_question"]  # the prompt never gives the fact away
    training = training_records(facts)
    assert all(r["instruction"] not in {f["test_question"] for f in facts} for r in training)


def answers(model: Any, tokenizer: Any, questions: list[str]) -> list[str]:
    import torch

    replies = []
    for question in questions:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        with torch.no_grad():
            output = model.generate(**prompt, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        replies.append(tokenizer.decode(output[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True))
    return replies


def answer_loss(model: Any, tokenizer: Any, records: list[dict[str, str]]) -> float:
    """Mean cross-entropy over the assistant tokens of the training examples."""
    import torch

    from slm_factory.training.masking import tokenize_with_labels

    total, count = 0.0, 0
    for record in records:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": record["instruction"]},
                    {"role": "assistant", "content": record["output"]}]
        input_ids, labels = tokenize_with_labels(tokenizer, messages, 256)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([input_ids])).logits[0, :-1]
        targets = torch.tensor(labels[1:])
        losses = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
        total += float(losses)
        count += int((targets != -100).sum())
    return total / count


def given(replies: list[str], facts: list[dict[str, Any]]) -> list[bool]:
    return [fact["key"].lower() in reply.lower() for reply, fact in zip(replies, facts)]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a few minutes alone on 2 cores; far more when the cores are shared
def test_finetuned_smollm2_answers_held_out_phrasings_of_invented_facts(trained_facts):
    from peft import PeftModel

    from slm_factory.training.models import load_student, load_tokenizer

    ctx, result = trained_facts  # the train stage on the two training phrasings (tests/conftest.py)
    assert result.counts == {"train": 38, "validation": 2, "dropped_too_long": 0}
    facts = invented_facts()
    records = training_records(facts)
    questions = [fact["test_question"] for fact in facts]
    tokenizer = load_tokenizer(ctx.config)

    base = load_student(ctx.config, dtype="float32").eval()
    base_given = given(answers(base, tokenizer, questions), facts)
    base_loss = answer_loss(base, tokenizer, records)

    tuned = PeftModel.from_pretrained(load_student(ctx.config, dtype="float32"), ctx.workspace.path("adapter")).eval()
    tuned_replies = answers(tuned, tokenizer, questions)
    tuned_given = given(tuned_replies, facts)
    tuned_loss = answer_loss(tuned, tokenizer, records)

    rates = (f"held-out phrasing answered with the fact: base {sum(base_given)}/20, fine-tuned {sum(tuned_given)}/20; "
             f"loss on training answers: base {base_loss:.3f}, fine-tuned {tuned_loss:.3f}; "
             f"fine-tuned replies: {tuned_replies}")
    print(rates)
    assert sum(base_given) <= 3, rates
    assert sum(tuned_given) >= 10 and sum(tuned_given) >= sum(base_given) + 8, rates
    assert tuned_loss < base_loss * 0.3, rates
