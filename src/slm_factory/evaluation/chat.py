"""`slm-factory chat`: talk to a model the way it was trained to be talked to — the training
system prompt and the model's own chat template, greedy answers — through any backend."""

from __future__ import annotations

from dataclasses import dataclass, field

from slm_factory.evaluation.generate import Answerer, Message, ModelRef


@dataclass
class Conversation:
    """The turns so far; each `reply` asks the model with all of them."""

    answerer: Answerer
    ref: ModelRef
    system: str
    max_new_tokens: int = 512
    turns: list[Message] = field(default_factory=list)

    def reply(self, text: str) -> str:
        messages = [{"role": "system", "content": self.system}, *self.turns, {"role": "user", "content": text}]
        answer = self.answerer.answer([messages], self.max_new_tokens)[0]
        self.turns += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        return answer

    def close(self) -> None:
        self.answerer.close()
