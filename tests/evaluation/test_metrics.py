"""BLEU, ROUGE and the key-fact score on strings whose scores are worked out by hand, Korean
first (the library defaults score Korean 0), and the key-fact rules as properties over many
generated references."""

from __future__ import annotations

import math
import random

import pytest

from slm_factory.evaluation.metrics import (
    _korean_tokens,
    aggregate,
    bleu,
    key_fact_score,
    key_facts,
    overall,
    rouge,
    score_answer,
)

# -- Korean tokens ---------------------------------------------------------------------------------


def test_korean_tokens_drop_particles_and_endings_so_a_stem_matches_across_particles() -> None:
    assert _korean_tokens("서울은") == _korean_tokens("서울이") == ["서울"]
    assert _korean_tokens("서울은 한국의 수도이다.") == ["서울", "한국", "수도", "이"]
    assert _korean_tokens("부산은 한국의 항구 도시이다.") == ["부산", "한국", "항구", "도시", "이"]


def test_a_korean_paraphrase_scores_far_above_an_unrelated_sentence() -> None:
    reference = "이 제도는 청년의 주거비 부담을 줄이기 위해 도입되었다."
    paraphrase = "청년들의 주거비 부담을 덜기 위해 이 제도가 도입됐습니다."
    unrelated = "보조금은 매월 최대 20만 원까지 지급된다."
    assert rouge(paraphrase, reference, "ko")["rouge1"] > 0.6 > 0.2 > rouge(unrelated, reference, "ko")["rouge1"]
    # BLEU needs matching n-grams, rare in a paraphrase: 15.6 against 4.9 here.
    assert bleu(paraphrase, reference, "ko") > 2 * bleu(unrelated, reference, "ko")


# -- BLEU and ROUGE on known strings ---------------------------------------------------------------


@pytest.mark.parametrize("language, text", [
    ("ko", "서울은 한국의 수도이며 인구는 약 940만 명이다."),
    ("en", "The capital of Korea is Seoul, home to about 9.4 million people."),
])
def test_identical_answers_score_full_marks(language: str, text: str) -> None:
    assert bleu(text, text, language) == pytest.approx(100.0)
    assert rouge(text, text, language) == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})


@pytest.mark.parametrize("language, answer, reference", [
    ("ko", "사과를 먹었다", "자동차가 빠르다"),
    ("en", "apples taste sweet", "trains run late"),
])
def test_disjoint_answers_score_zero(language: str, answer: str, reference: str) -> None:
    assert bleu(answer, reference, language) == 0.0
    assert rouge(answer, reference, language) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_korean_rouge_on_a_partial_overlap_matches_the_hand_count() -> None:
    # answer [부산 한국 항구 도시 이], reference [서울 한국 수도 이]: 2 shared unigrams (한국, 이),
    # P = 2/5, R = 2/4, F1 = 2PR/(P+R) = 0.4/0.9 = 4/9; no shared bigram; LCS = 2 so rougeL = 4/9.
    scores = rouge("부산은 한국의 항구 도시이다.", "서울은 한국의 수도이다.", "ko")
    assert scores == pytest.approx({"rouge1": 4 / 9, "rouge2": 0.0, "rougeL": 4 / 9})


def test_korean_bleu_of_a_contiguous_part_is_the_brevity_penalty() -> None:
    # reference [신청 기한 2024 년 3 월 31 일 이] (9 tokens); the answer is its last 8 tokens, so
    # every n-gram precision is 1 and BLEU = BP = exp(1 - 9/8).
    reference = "신청 기한은 2024년 3월 31일까지입니다."
    answer = "기한은 2024년 3월 31일까지입니다."
    assert len(_korean_tokens(reference)) == 9 and len(_korean_tokens(answer)) == 8
    assert bleu(answer, reference, "ko") == pytest.approx(100 * math.exp(1 - 9 / 8))


def test_english_bleu_and_rouge_on_a_partial_overlap_match_the_hand_count() -> None:
    # 5 tokens each, the last differs: p1..p4 = 4/5, 3/4, 2/3, 1/2, BP = 1,
    # BLEU = (4/5 * 3/4 * 2/3 * 1/2) ** (1/4) = 0.2 ** 0.25; rouge1 = 4/5, rouge2 = 3/4, rougeL = 4/5.
    answer, reference = "red apples grow on trees", "red apples grow on vines"
    assert bleu(answer, reference, "en") == pytest.approx(100 * 0.2 ** 0.25)
    assert rouge(answer, reference, "en") == pytest.approx({"rouge1": 0.8, "rouge2": 0.75, "rougeL": 0.8})


def test_english_scores_ignore_case_and_stem_words() -> None:
    assert bleu("The Cat", "the cat", "en") == pytest.approx(100.0)
    assert rouge("cats running", "cat runs", "en")["rouge1"] == pytest.approx(1.0)


def test_hangul_in_an_english_project_is_still_tokenised() -> None:
    assert rouge("서울은 수도", "서울이 수도", "en")["rouge1"] == pytest.approx(1.0)


def test_empty_reference_has_no_score_and_an_empty_answer_scores_zero() -> None:
    assert bleu("anything", " ", "en") is None and rouge("anything", "", "ko")["rouge1"] is None
    assert bleu("", "서울은 수도이다", "ko") == 0.0 and rouge("", "서울은 수도이다", "ko")["rougeL"] == 0.0


# -- key facts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reference, language, expected", [
    ("2024년 예산은 3,000원을 넘었고 12.5% 증가했다.", "ko", ["2024년", "3,000원", "12.5%"]),
    ("ISO-27001 인증은 한국인터넷진흥원이 담당한다.", "ko", ["ISO-27001", "한국인터넷진흥원"]),
    ("홍길동 과장이 「개인정보 보호법」 제3조를 설명했다.", "ko", ["개인정보 보호법", "3조", "홍길동"]),
    ("보조금은 매월 최대 20만 원까지 지급된다.", "ko", ["20만 원"]),
    ("The World Health Organization said on 2024-03-01 that 1,200 people in New York had GPT-4. "
     "Paris is nice. NASA agrees.", "en",
     ["2024-03-01", "GPT-4", "1,200", "World Health Organization", "New York", "NASA"]),
    ('He called it "open data", 20 km away at 3.5 GHz.', "en", ["open data", "20 km", "3.5 GHz"]),
    ("the sky is blue and grass is green.", "en", []),
    ("Yes, I think Seoul's port is busy. I'm sure World War I ended. Ask Mr. Kim at Samsung.", "en",
     ["Seoul", "World War I", "Kim", "Samsung"]),  # not "I", "I'm", "Mr"; "Seoul's" is "Seoul"
])
def test_key_facts_are_numbers_names_codes_and_quoted_terms(reference: str, language: str, expected: list[str]) -> None:
    assert key_facts(reference, language) == expected


@pytest.mark.parametrize("answer, expected", [
    ("예산은 2024년에 3000원 이상이었고 12.5 % 늘었다", 1.0),  # separators and spacing are ignored
    ("예산은 2024년에 3,000명이었다", 1 / 3),  # 3,000명 is not 3,000원; 12.5% is missing
    ("예산은 2023년에 30,000원", 0.0),  # 30000 is not 3000, 2023 is not 2024
])
def test_key_fact_score_counts_facts_found(answer: str, expected: float) -> None:
    assert key_fact_score(answer, "2024년 예산은 3,000원을 넘었고 12.5% 증가했다.", "ko") == pytest.approx(expected)


def test_key_fact_score_ignores_case_and_korean_spacing_and_is_none_without_facts() -> None:
    assert key_fact_score("개인정보보호법 3조는 홍길동이", "홍길동 과장이 「개인정보 보호법」 제3조를 설명했다.", "ko") == 1.0
    assert key_fact_score("iso-27001 and nasa", "Both ISO-27001 and NASA.", "en") == 1.0
    assert key_fact_score("anything", "the sky is blue.", "en") is None


_KO_NAMES = ["홍길동", "김철수", "이영희", "부산", "대구", "인천", "세종"]
_EN_NAMES = ["Alice Moreau", "Acme Corp", "Lake Geneva", "Norway", "Bob", "Tokyo Metro"]
_CODES = ["ISO-27001", "COVID-19", "GPT-4", "A380", "v2.1", "RFC-9110"]
_TERMS_KO = ["청년 주거 지원법", "개인정보 보호법", "탄소중립 기본계획", "정보공개"]
_TERMS_EN = ["open data", "zero trust", "fair use", "cold chain"]
_UNITS = ["%", "년", "원", "명", "개월", "만 원", " km", "세", "일"]
_FILLER_KO = ["그리고", "예산은", "신청은", "담당자가", "처리한다", "지원하며", "늘었다", "제도는", "기관에서"]
_FILLER_EN = ["the", "report", "says", "that", "funding", "grew", "while", "staff", "agreed", "and"]


def _number(rng: random.Random) -> str:
    value = rng.choice([rng.randint(1, 99), rng.randint(1000, 999999), round(rng.uniform(0, 100), 1)])
    return f"{value:,}" if isinstance(value, int) and rng.random() < 0.5 else str(value)


def _reference(rng: random.Random) -> tuple[str, str]:
    korean = rng.random() < 0.5
    filler, names = (_FILLER_KO, _KO_NAMES) if korean else (_FILLER_EN, _EN_NAMES)
    parts = [rng.choice(filler)]
    for _ in range(rng.randint(1, 5)):
        kind = rng.randrange(4)
        if kind == 0:
            parts.append(_number(rng) + rng.choice(_UNITS))
        elif kind == 1:
            parts.append(rng.choice(names) + ("이" if korean else ""))
        elif kind == 2:
            parts.append(rng.choice(_CODES))
        else:
            parts.append(f"「{rng.choice(_TERMS_KO)}」" if korean else f'"{rng.choice(_TERMS_EN)}"')
        parts += rng.sample(filler, 2)
    return " ".join(parts) + ".", "ko" if korean else "en"


def test_key_fact_score_properties_over_generated_references() -> None:
    rng = random.Random(7)
    with_facts = 0
    for _ in range(300):
        reference, language = _reference(rng)
        facts = key_facts(reference, language)
        score = key_fact_score(reference, reference, language)
        if not facts:
            assert score is None
            continue
        with_facts += 1
        # An answer that contains the reference has every fact.
        wrapped = f"{' '.join(rng.sample(_FILLER_EN + _FILLER_KO, 3))} {reference} {rng.choice(_FILLER_KO)}"
        assert score == 1.0 and key_fact_score(wrapped, reference, language) == 1.0, (reference, facts)
        # An answer of filler words only (no digits, names or codes) has none.
        unrelated = " ".join(rng.choices(_FILLER_KO + _FILLER_EN, k=12))
        assert key_fact_score(unrelated, reference, language) == 0.0, (reference, facts)
        # Any answer, made of pieces of the reference and noise, scores within [0, 1].
        pieces = reference.split() + rng.sample(_FILLER_KO + _FILLER_EN, 4) + [_number(rng), rng.choice(_CODES)]
        partial = " ".join(rng.sample(pieces, rng.randint(0, len(pieces))))
        partial_score = key_fact_score(partial, reference, language)
        assert partial_score is not None and 0.0 <= partial_score <= 1.0
        assert partial_score * len(facts) == pytest.approx(round(partial_score * len(facts)))
    assert with_facts > 250


def test_every_fact_found_is_a_piece_of_the_reference() -> None:
    rng = random.Random(11)
    for _ in range(200):
        reference, language = _reference(rng)
        for fact in key_facts(reference, language):
            assert fact and fact in reference


# -- score_answer, overall, aggregate --------------------------------------------------------------


def test_score_answer_gives_the_keys_of_the_metrics_asked() -> None:
    reference = "서울은 한국의 수도이며 인구는 약 940만 명이다."
    scores = score_answer(reference, reference, "ko", ["bleu", "rouge", "key_facts", "judge"])
    assert scores == pytest.approx({"bleu": 100.0, "rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "key_facts": 1.0})
    assert set(score_answer("x", reference, "ko", ["rouge"])) == {"rouge1", "rouge2", "rougeL"}
    with pytest.raises(ValueError, match="meteor"):
        score_answer("x", reference, "ko", ["meteor"])


def test_overall_prefers_the_judge_and_otherwise_averages_what_is_present() -> None:
    assert overall({"judge": 5, "bleu": 0.0, "rougeL": 0.0}) == 1.0
    assert overall({"judge": 1}) == 0.0 and overall({"judge": 4}) == pytest.approx(0.75)
    assert overall({"bleu": 50.0, "rougeL": 0.3, "key_facts": 0.7, "rouge1": 0.9}) == pytest.approx((0.5 + 0.3 + 0.7) / 3)
    assert overall({"bleu": 20.0, "rougeL": 0.6, "key_facts": None, "judge": None}) == pytest.approx(0.4)
    assert overall({"key_facts": None}) is None and overall({}) is None


def test_aggregate_means_over_items_that_have_a_score() -> None:
    items = [{"bleu": 10.0, "key_facts": None}, {"bleu": 30.0, "key_facts": 0.5}, {"bleu": 20.0, "key_facts": None}]
    assert aggregate(items) == {"bleu": 20.0, "key_facts": 0.5, "n": 3}
    assert aggregate([{"judge": None}]) == {"judge": None, "n": 1}
    assert aggregate([]) == {"n": 0}


def test_facts_the_question_names_do_not_count():
    reference = "The Velmora Bridge opened in 1873."
    question = "In which year did the Velmora Bridge first open?"
    echo = "The Velmora Bridge opened a long time ago."
    assert key_fact_score(echo, reference, "en") > 0  # without the question, the echoed name counts
    assert key_fact_score(echo, reference, "en", question) == 0.0
    assert key_fact_score("It opened in 1873.", reference, "en", question) == 1.0
    assert key_fact_score("Yes.", "The Velmora Bridge.", "en", "Is it the Velmora Bridge?") is None
    korean = "한국인터넷진흥원의 신고 기한은 72시간입니다."
    assert key_fact_score("한국인터넷진흥원에 알립니다.", korean, "ko", "한국인터넷진흥원의 신고 기한은?") == 0.0
