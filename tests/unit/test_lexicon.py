"""The crisis lexicon: Chinese substrings, English words, exclusions, negation in the clause, and speed."""

from pathlib import Path

import pytest

from kefu.config_file import load_section
from services.escalation.domain.lexicon import Lexicon, LexiconError, LexiconList
from services.escalation.domain.policy import EscalationPolicy

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "escalation.yaml"


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    crisis = load_section(EXAMPLE, "escalation", EscalationPolicy).triggers.crisis
    assert crisis is not None
    return crisis.compiled


@pytest.mark.parametrize(
    ("text", "category", "matched"),
    [
        ("你们再不处理我就找记者曝光", "media", "记者"),
        ("我已经请了律师，准备起诉", "legal", "律师"),
        ("我要打12315投诉你们", "regulator", "12315"),
        ("空调外机冒烟了，还有焦味", "safety", "冒烟"),
        ("航班延误五个小时没人管", "mass_incident", "航班延误"),
        ("My LAWYER will contact you", "legal", "LAWYER"),
        ("we will sue", "legal", "sue"),
        ("two journalists called me", "media", "journalists"),
        ("it caught fire, not a joke", "safety", "caught fire"),
        ("不是开玩笑，起火了", "safety", "起火"),
        ("没想到起火了", "safety", "起火"),
        ("不小心烫伤了手", "safety", "烫伤"),
        ("没有人受伤但是冒烟了", "safety", "冒烟"),
        ("I'm not happy that my kid got injured", "safety", "injured"),
    ],
)
def test_matches_with_evidence(lexicon: Lexicon, text: str, category: str, matched: str) -> None:
    hit = lexicon.search(text)
    assert hit is not None
    assert (hit.category, hit.matched) == (category, matched)
    assert text[hit.start : hit.end] == matched


@pytest.mark.parametrize(
    "text",
    [
        "没有起火，只是有点热",
        "不是要起诉你们，只想退货",
        "no fire, just a weird smell",  # smell is not a term; fire is negated
        "I'm not going to sue anyone",
        "nobody was injured",
        "无人受伤",
        "这款相机的曝光度怎么调？曝光补偿在哪里",
        "订单号8812315990",  # 12315 inside a longer number
        "the fire extinguisher is in the box",
        "firewall settings",  # fire is a whole word only
        "please reissue the invoice",  # sue is a whole word only
        "多媒体播放器不能用",
    ],
)
def test_false_positives(lexicon: Lexicon, text: str) -> None:
    assert lexicon.search(text) is None, lexicon.find_all(text)


def test_negation_off_matches_everything() -> None:
    lex = Lexicon({"safety": LexiconList(terms=["起火", "fire"])}, negation=False)
    assert [h.term for h in lex.find_all("没有起火, no fire")] == ["起火", "fire"]


def test_exclusion_does_not_hide_a_later_real_hit() -> None:
    lex = Lexicon({"media": LexiconList(terms=["曝光"], exclusions=["曝光度"])})
    hits = lex.find_all("曝光度太高，我要去曝光你们")
    assert [(h.matched, h.start) for h in hits] == [("曝光", 9)]


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(LexiconError) as caught:
        Lexicon({"x": LexiconList(terms=[" "], patterns=["(a"], exclusions=["zzz"])})
    locs = [loc for loc, _ in caught.value.problems]
    assert locs == [("x", "terms", 0), ("x", "patterns", 0), ("x", "exclusions", 0)]


def _messages(n: int) -> list[str]:
    base = [
        "你好，我买的冰箱不制冷了，什么时候能上门维修？",
        "Hi, my order #88123 hasn't arrived yet, can you check the tracking?",
        "请问这款洗衣机有没有现货，能开发票吗",
        "相机曝光度怎么设置，说明书没写",
        "The dishwasher is leaking water, I need a repair appointment please",
        "昨天的空调安装师傅态度很好，谢谢",
        "没有起火，就是插头有点热",
        "If this is not fixed I will contact a journalist and my lawyer",
        "热水器漏电了，我家孩子差点受伤，我要打12315",
        "Refund please, the item is broken and I want my money back",
    ]
    return [f"{base[i % len(base)]} ({i})" for i in range(n)]


def test_ten_thousand_messages_find_exactly_the_crisis_ones(lexicon: Lexicon) -> None:
    # speed is measured by bench, not asserted here (shared machines are noisy)
    messages = _messages(10_000)
    hits = sum(1 for m in messages if lexicon.search(m) is not None)
    assert hits == 2_000  # the journalist/lawyer and the 漏电/受伤/12315 messages
