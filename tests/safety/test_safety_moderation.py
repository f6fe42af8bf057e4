"""Moderation: policies, evasion resistance, hard negatives, offsets, redaction, classifier, OpenAI shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.safety.moderation import (
    ModerationClassifier,
    Moderator,
    evaluate,
    load_policy,
    policy_from_dict,
    to_openai,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def moderator() -> Moderator:
    return Moderator.from_policy()


def test_default_policy_has_the_issue_categories_with_both_languages() -> None:
    policy = load_policy()
    assert set(policy.names) == {"violence", "sexual", "hate", "harassment", "self-harm", "illicit", "fraud"}
    for category in policy.categories:
        kinds = {rule.kind for rule in category.rules}
        assert {"en", "zh"} <= kinds, category.name
        assert category.action in ("block", "flag", "redact")


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I will kill you", "violence"),
        ("I will k1ll you", "violence"),  # leetspeak
        ("I will k i l l you", "violence"),  # spaced letters
        ("I will k.i.l.l you", "violence"),  # dotted letters
        ("I will k\u200bill you", "violence"),  # zero-width space
        ("I will ｋｉｌｌ you", "violence"),  # full-width
        ("I will кіll you", "violence"),  # Cyrillic homoglyphs
        ("KILL YOU", "violence"),
        ("我要殺了你", "violence"),  # traditional Chinese
        ("我要杀 了 你", "violence"),  # spaced Chinese
        ("我要杀*了*你", "violence"),
        ("free p0rn here", "sexual"),
        ("a $ex tape leaked", "sexual"),
        ("buy c0caine now", "illicit"),
        ("代开发票", "illicit"),
        ("a guaranteed cure for diabetes", "fraud"),
        ("稳赚不赔的项目", "fraud"),
        ("I want to kill myself", "self-harm"),
        ("我不想活了", "self-harm"),
        ("you are worthless and nobody likes you", "harassment"),
        ("滚 回 你 们 国 家", "hate"),  # a pattern seen through spacing
    ],
)
def test_harmful_text_is_flagged_despite_evasion(moderator: Moderator, text: str, category: str) -> None:
    result = moderator.moderate(text)
    assert category in result.flagged_categories, (text, result.categories)
    assert result.flagged


@pytest.mark.parametrize(
    "text",
    [
        "Level up your skills",
        "Scunthorpe United won 2-0",
        "Our chef serves killer burgers",
        "Killer deals all weekend",
        "A lavender bath bomb",
        "Kill time at the arcade",
        "Rapeseed oil, cold pressed",
        "The heroine of the film",
        "A chink in the armor",
        "Graduated summa cum laude in Essex",
        "Free returns guaranteed within 30 days",
        "Pain killer tablets in stock",
        "We will kill the competition on price",
        "$100 off when you spend $500",
        "限时秒杀，全场五折",
        "秒杀人气爆款",
        "杀毒软件免费下载",
        "想死你了，快回来",
        "跳楼价清仓",
        "这款手机性价比超高",
        "大麻籽油富含营养",
        "废物利用，变废为宝",
    ],
)
def test_hard_negatives_are_not_flagged(moderator: Moderator, text: str) -> None:
    result = moderator.moderate(text)
    assert not result.flagged, (text, result.matches)
    assert result.action == "allow" and result.redacted_text == text


def test_weak_terms_add_up_to_the_threshold(moderator: Moderator) -> None:
    one = moderator.moderate("stupid")
    two = moderator.moderate("stupid idiot")
    assert 0 < one.categories["harassment"] < 0.5 and not one.flagged
    assert two.categories["harassment"] == pytest.approx(1 - (1 - 0.25) * (1 - 0.35), abs=1e-4)
    assert two.flagged_categories == ("harassment",) and two.action == "flag" and not two.blocked


def test_match_offsets_refer_to_the_original_text(moderator: Moderator) -> None:
    text = "Well, ｋ\u200bｉｌｌ ｙｏｕ now"
    result = moderator.moderate(text)
    (match,) = [m for m in result.matches if m.rule == "en:kill you"]
    assert text[match.start : match.end] == match.text == "ｋ\u200bｉｌｌ ｙｏｕ"
    assert result.blocked and result.action == "block"


def _custom_policy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_user_defined_redact_category_masks_competitor_names(tmp_path: Path) -> None:
    path = _custom_policy(
        tmp_path,
        '[categories.competitor]\naction = "redact"\nthreshold = 0.5\nen = ["acme corp", "globex"]\nzh = ["艾克米"]\n',
    )
    moderator = Moderator.from_policy(path)
    text = "Better than ACME Corp and 艾克米, says Globex."
    result = moderator.moderate(text)
    assert result.flagged and not result.blocked and result.action == "redact"
    assert result.redacted_text == "Better than ********* and ***, says ******."
    assert [m.text for m in result.matches] == ["ACME Corp", "艾克米", "Globex"]


def test_policy_terms_are_normalised_like_texts(tmp_path: Path) -> None:
    # A term written in traditional Chinese or full-width letters still matches every spelling.
    moderator = Moderator.from_policy(_custom_policy(tmp_path, '[categories.x]\nzh = ["殺人"]\nen = ["ＳＰＡＭ"]\n'))
    for text in ("杀人", "殺人", "spam", "$pam", "ＳＰＡＭ"):
        assert moderator.moderate(text).flagged, text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[categories.x]\nen = ["a"]\nthreshhold = 0.5\n', "unknown key categories.x.'threshhold' in policy"),
        ('colour = "red"\n[categories.x]\nen = ["a"]\n', "unknown key 'colour' in policy"),
        ('[categories.x]\nen = [{ term = "a", wieght = 0.5 }]\n', "unknown key categories.x.en[0].'wieght'"),
        ('[categories.x]\naction = "delete"\n', "use one of: flag, redact, block"),
        ('[categories.x]\nthreshold = 2\n', "must be a number in (0, 1]"),
        ('[categories.x]\npatterns = ["(unclosed"]\n', "not a valid regular expression"),
        ("[categories.x\n", "not valid TOML"),
    ],
)
def test_bad_policy_files_raise_one_clear_error(tmp_path: Path, body: str, message: str) -> None:
    path = _custom_policy(tmp_path, body)
    with pytest.raises(AigcError) as error:
        load_policy(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    if "unknown key" in message:
        assert str(path) in str(error.value)


def test_to_openai_has_booleans_and_scores_for_every_category(moderator: Moderator) -> None:
    converted = to_openai(moderator.moderate("I will kill you"))
    assert converted["flagged"] is True
    assert set(converted["categories"]) == set(converted["category_scores"]) == set(moderator.policy.names)
    assert converted["categories"]["violence"] is True and converted["categories"]["sexual"] is False
    assert converted["category_scores"]["violence"] >= 0.5
    json.dumps(converted)  # serialisable as an HTTP response body


SPAM = [
    "Click this link to win a free phone", "Limited offer, click now to claim free gift cards",
    "You are selected, click to receive your free reward", "Free gift card, click the link to claim",
    "Win a free iPhone, click here now", "Claim your free prize by clicking this link today",
]  # fmt: skip
HAM = [
    "The meeting moved to Thursday afternoon", "Our new linen shirts come in three colours",
    "Thanks for your order, it ships tomorrow", "The recipe needs two eggs and some flour",
    "Store hours are nine to six on weekdays", "Please find the quarterly report attached",
]  # fmt: skip


def test_classifier_scores_add_to_lexicon_scores_and_survive_save_load(tmp_path: Path) -> None:
    policy = policy_from_dict({"categories": {"spam": {"action": "flag", "threshold": 0.5}}})
    classifier = ModerationClassifier.train(SPAM + HAM, ["spam"] * len(SPAM) + ["none"] * len(HAM))
    path = classifier.save(tmp_path / "classifier.json")
    saved = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert saved["classes"] == ["none", "spam"] and len(saved["vocabulary"]) == len(saved["idf"])

    loaded = ModerationClassifier.load(path)
    probe = ["click here to claim your free gift", "the report is attached"]
    assert loaded.predict_proba(probe).tolist() == classifier.predict_proba(probe).tolist()

    without = Moderator(policy)
    with_classifier = Moderator(policy, loaded)
    assert without.moderate(probe[0]).categories["spam"] == 0.0
    spam_score = with_classifier.moderate(probe[0]).categories["spam"]
    ham_score = with_classifier.moderate(probe[1]).categories["spam"]
    assert spam_score > 0.5 > ham_score
    assert with_classifier.moderate(probe[0]).flagged


def test_classifier_matches_scikit_learn_probabilities() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from aigc_studio.safety.normalize import normalize

    texts, labels = SPAM + HAM, ["spam"] * len(SPAM) + ["none"] * len(HAM)
    classifier = ModerationClassifier.train(texts, labels)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=False, sublinear_tf=True, max_features=50_000)
    features = vectorizer.fit_transform([normalize(t).text for t in texts])
    reference = LogisticRegression(C=10.0, max_iter=1000).fit(features, labels)
    probe = ["free gift, click", "attached is the recipe"]
    expected = reference.predict_proba(vectorizer.transform([normalize(t).text for t in probe]))
    assert classifier.predict_proba(probe) == pytest.approx(expected, abs=1e-9)


def test_classifier_rejects_labels_outside_the_policy() -> None:
    classifier = ModerationClassifier.train(SPAM + HAM, ["spam"] * len(SPAM) + ["none"] * len(HAM))
    with pytest.raises(AigcError, match="classifier label 'spam' is not a category"):
        Moderator(load_policy(), classifier)
    with pytest.raises(AigcError, match="at least two labels"):
        ModerationClassifier.train(HAM, ["none"] * len(HAM))


def test_moderation_testset_precision_and_recall(moderator: Moderator) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "moderation_testset.jsonl").read_text(encoding="utf-8").splitlines()]
    scores = evaluate(moderator, [(row["text"], row["categories"]) for row in rows])
    for name, score in scores.items():
        assert score.recall >= 0.95 and score.precision >= 0.95, (name, score)
