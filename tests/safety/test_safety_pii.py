"""Personal-data detection: each detector on true and hard-negative cases, overlaps, redaction, the test set."""

from __future__ import annotations

import collections
import importlib.util
import json
from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.safety.pii import (
    Entity,
    cn_id_check_char,
    detect,
    evaluate,
    is_valid_cn_id,
    luhn_valid,
    redact,
)

FIXTURES = Path(__file__).parent / "fixtures"


def found(text: str) -> list[tuple[str, str]]:
    return [(entity.type, entity.text) for entity in detect(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to zhang.san@example.com today", [("EMAIL", "zhang.san@example.com")]),
        ("邮箱：ｌｉ＠ｅｘａｍｐｌｅ．ｃｎ。", [("EMAIL", "ｌｉ＠ｅｘａｍｐｌｅ．ｃｎ")]),  # full-width
        ("手机13812345678，谢谢", [("PHONE", "13812345678")]),
        ("call +86 138 1234 5678 now", [("PHONE", "+86 138 1234 5678")]),
        ("电话：138-1234-5678", [("PHONE", "138-1234-5678")]),
        ("座机 010-12345678 或 0755-1234567", [("PHONE", "010-12345678"), ("PHONE", "0755-1234567")]),
        ("ring (415) 555-2671 or +44 20 7946 0958", [("PHONE", "(415) 555-2671"), ("PHONE", "+44 20 7946 0958")]),
        ("office 020 7946 0958.", [("PHONE", "020 7946 0958")]),
        ("身份证号11010519491231002X。", [("CN_ID", "11010519491231002X")]),
        ("card 4111 1111 1111 1111 expires", [("BANK_CARD", "4111 1111 1111 1111")]),
        ("银行卡6222-0212-3456-7890-128", [("BANK_CARD", "6222-0212-3456-7890-128")]),
        ("from 203.0.113.7 and 2001:db8::8a2e:370:7334.", [("IP_ADDRESS", "203.0.113.7"), ("IP_ADDRESS", "2001:db8::8a2e:370:7334")]),
        ("Please ask Mr. John Smith.", [("PERSON", "John Smith")]),
        ("Dear Anna, thanks!", [("PERSON", "Anna")]),
        ("My name is Liam O'Brien.", [("PERSON", "Liam O'Brien")]),
        ("收货人：欧阳娜娜，地址见下", [("PERSON", "欧阳娜娜")]),
        ("尊敬的王小明先生：", [("PERSON", "王小明")]),
        ("感谢马云先生的支持", [("PERSON", "马云")]),  # 谢 is a surname, but 感谢 is a word
        ("客户张伟反映问题", [("PERSON", "张伟")]),
        ("李先生和王女士都来了", [("PERSON", "李"), ("PERSON", "王")]),  # 和 joins, it does not start 和王
    ],
)
def test_detects_personal_data_in_both_languages(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "订单号：2024061512345678，请保留",  # order number
        "Order no. 4111111111111111 has shipped",  # Luhn-valid, but after an order cue
        "运单 SF1234567890123 已签收",  # tracking code glued to letters
        "tracking 1Z999AA10123456784",
        "总价 ¥13,800.00，优惠 $1,299.99",  # prices
        "发货日期 2024-06-15 10:30，或 2024年6月15日，或 15/06/2024",  # dates
        "ID 110105194912310021 is wrong",  # wrong check character
        "ID 110105199313310028 has no such date",  # 13th month with a matching check character
        "card 4111 1111 1111 1112 was declined",  # fails Luhn
        "number 9111111111111111",  # Luhn-valid but no card scheme starts with 9
        "icon@2x.png and @aigc_studio",
        "version 1.2.3.4, build 10.0.0.1",
        "time 12:30:45, MAC 00:1A:2B:3C:4D:5E, 999.1.1.1",
        "Dear Customer, Hi there, Dear Valued Member,",
        "尊敬的客户，各位先生女士，这位女士",
        "库存 12345678 件，条形码 6901234567892",
    ],
)
def test_hard_negatives_are_not_personal_data(text: str) -> None:
    assert found(text) == []


def test_checksums() -> None:
    assert cn_id_check_char("11010519491231002") == "X"
    assert is_valid_cn_id("11010519491231002X") and is_valid_cn_id("11010519491231002x")
    assert not is_valid_cn_id("110105194912310021")
    assert not is_valid_cn_id("99010519491231002X")  # no province 99
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert luhn_valid("79927398713")


def test_overlapping_candidates_keep_the_longest_most_specific() -> None:
    # A 19-digit card contains what the phone patterns would read as a national number.
    text = "卡号 6222 0212 3456 7890 128"
    assert found(text) == [("BANK_CARD", "6222 0212 3456 7890 128")]
    # An ID is both an ID and, digit-wise, a possible card: the ID wins.
    number = "44030419900307001" + cn_id_check_char("44030419900307001")
    assert [entity.type for entity in detect(f"id {number}")] == ["CN_ID"]


def test_offsets_refer_to_the_original_text() -> None:
    text = "电\u200b话：１３８１２３４５６７８。"
    (entity,) = detect(text)
    assert entity == Entity("PHONE", 4, 15, "１３８１２３４５６７８")
    assert text[entity.start : entity.end] == entity.text


def test_detect_can_be_limited_to_some_types() -> None:
    text = "Mr. John Smith, 13812345678"
    assert found(text) != [("PHONE", "13812345678")]
    assert [e.type for e in detect(text, types=["PHONE"])] == ["PHONE"]
    with pytest.raises(AigcError, match="unknown personal-data type 'SSN'"):
        detect(text, types=["SSN"])


def test_placeholders_are_numbered_per_distinct_value() -> None:
    text = "Call 13812345678 or +86 138 1234 5678 or 13912345678; mail a@x.com"
    assert redact(text) == "Call <PHONE_1> or <PHONE_1> or <PHONE_2>; mail <EMAIL_1>"


def test_mask_can_keep_the_last_card_digits() -> None:
    text = "card 4111 1111 1111 1111, phone 13812345678"
    assert redact(text, "mask") == "card ****, phone ****"
    assert redact(text, "mask", keep_last_card_digits=4) == "card ****1111, phone ****"


def test_keyed_hash_is_stable_per_value_and_depends_on_the_key() -> None:
    first = redact("a@x.com and A@X.com", "hash", hash_key="secret")
    tokens = first.split(" and ")
    assert tokens[0] == tokens[1] and tokens[0].startswith("<EMAIL:") and len(tokens[0]) == len("<EMAIL:>") + 12
    assert redact("a@x.com", "hash", hash_key="other") != tokens[0]
    with pytest.raises(AigcError, match="hash mode needs a secret key"):
        redact("a@x.com", "hash")
    with pytest.raises(AigcError, match="unknown redaction mode 'blur'"):
        redact("a@x.com", "blur")  # type: ignore[arg-type]


def _load_rows() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "pii_testset.jsonl").read_text(encoding="utf-8").splitlines()]


def test_testset_is_large_bilingual_and_has_hard_negatives() -> None:
    rows = _load_rows()
    spans = [entity for row in rows for entity in row["entities"]]
    assert len(spans) >= 1000
    assert {row["lang"] for row in rows} == {"en", "zh", "neg"}
    negatives = collections.Counter(kind for row in rows for kind in row["negatives"])
    for kind in ("order_number", "tracking_code", "price", "date", "id_wrong_checksum", "luhn_failing_number"):
        assert negatives[kind] >= 20, kind
    for row in rows:
        for entity in row["entities"]:
            assert row["text"][entity["start"] : entity["end"]] == entity["text"]


def test_testset_precision_and_recall_per_type() -> None:
    rows = _load_rows()
    scores = evaluate((row["text"], [Entity(**e) for e in row["entities"]]) for row in rows)
    for entity_type in ("CN_ID", "BANK_CARD"):
        assert scores[entity_type].true_positives >= 150, entity_type
        assert scores[entity_type].recall >= 0.99, (entity_type, scores[entity_type])
        assert scores[entity_type].precision >= 0.97, (entity_type, scores[entity_type])
    for entity_type in ("EMAIL", "PHONE", "IP_ADDRESS", "PERSON"):
        assert scores[entity_type].recall >= 0.9 and scores[entity_type].precision >= 0.95, (entity_type, scores[entity_type])


def test_testset_generator_is_deterministic(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_testsets", FIXTURES / "make_testsets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("pii_testset.jsonl", "moderation_testset.jsonl"):
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), f"regenerate {name} with make_testsets.py"
