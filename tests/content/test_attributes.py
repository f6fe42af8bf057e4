from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigc_studio.content.attributes import format_mr, parse_attributes
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.reference import load_e2e_references

EAGLE = {"name": "The Eagle", "eatType": "coffee shop", "customer rating": "5 out of 5"}


def test_e2e_mr_parses_in_order_with_spaces_in_keys():
    parsed = parse_attributes("name[The Eagle], eatType[coffee shop], customer rating[5 out of 5]")
    assert parsed == EAGLE
    assert list(parsed) == ["name", "eatType", "customer rating"]


def test_key_value_pairs_parse_with_semicolons_or_newlines():
    assert parse_attributes("name = The Eagle; eatType=coffee shop\ncustomer rating=5 out of 5;") == EAGLE


def test_key_value_value_may_contain_hash_and_equals():
    assert parse_attributes("color=#fff; formula=a=b") == {"color": "#fff", "formula": "a=b"}


def test_json_string_and_dict_give_the_same_attributes():
    assert parse_attributes(json.dumps(EAGLE)) == EAGLE
    assert parse_attributes(dict(EAGLE)) == EAGLE


def test_json_booleans_become_yes_no_and_numbers_text():
    assert parse_attributes({"familyFriendly": False, "stars": 5}) == {"familyFriendly": "no", "stars": "5"}


def test_advertisegen_repeated_keys_are_joined_in_order():
    parsed = parse_attributes("类型#裤*版型#宽松*风格#性感*风格#简约")
    assert parsed == {"类型": "裤", "版型": "宽松", "风格": "性感、简约"}


def test_format_mr_round_trips_through_parse():
    attributes = {"name": "The Eagle", "food": "French", "风格": "性感、简约"}
    text = format_mr(attributes)
    assert text == "name[The Eagle], food[French], 风格[性感、简约]"
    assert parse_attributes(text) == attributes


def test_every_e2e_dev_mr_round_trips(shared_data: Path):
    mrs, _ = load_e2e_references(shared_data / "e2e" / "devset.csv")
    for mr in mrs:
        assert format_mr(parse_attributes(mr)) == mr


def test_every_advertisegen_content_parses(shared_data: Path):
    lines = (shared_data / "advertisegen" / "dev.json").read_text(encoding="utf-8").splitlines()
    for line in lines[:100]:
        content = json.loads(line)["content"]
        parsed = parse_attributes(content)
        pair_count = content.count("*") + 1
        assert sum(len(value.split("、")) for value in parsed.values()) <= pair_count
        assert all(key and value for key, value in parsed.items())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name[The Eagle", "unbalanced '['"),
        ("name]The Eagle[", "unbalanced ']'"),
        ("name[The [Eagle]]", "cannot nest"),
        ("name[The Eagle], [cheap]", "empty key"),
        ("name=The Eagle; =cheap", "empty key"),
        ("name[]", "empty value"),
        ("name[A], name[B]", "given twice"),
        ("name=A; name=B", "given twice"),
        ("name[A] food[B]", "expected ','"),
        ("name, food[French]", "has no [value]"),
        ("just some words", "cannot tell the form"),
        ("   ", "empty"),
        ('{"name": ', "malformed JSON"),
        ('{"name": {"first": "A"}}', "dict value"),
        ("类型#裤*版型", "not a key#value pair"),
    ],
)
def test_malformed_attributes_name_the_problem_and_the_accepted_forms(text: str, problem: str):
    with pytest.raises(AigcError) as error:
        parse_attributes(text)
    assert problem in str(error.value)
    assert "accepted forms" in str(error.value)
    assert "\n" not in str(error.value)
    assert error.value.param == "attributes"


def test_same_value_twice_is_kept_once():
    assert parse_attributes("name[A], name[A]") == {"name": "A"}


def test_format_mr_rejects_brackets_it_cannot_hold():
    with pytest.raises(AigcError, match="cannot hold"):
        format_mr({"name": "The [new] Eagle"})
    with pytest.raises(AigcError, match="cannot hold"):
        format_mr({"a=b": "c"})
