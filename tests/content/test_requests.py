from __future__ import annotations

import pytest

from aigc_studio.content.requests import make_request, parse_terms, request_from_json
from aigc_studio.errors import AigcError

EAGLE_MR = "name[The Eagle], eatType[pub]"


def test_keywords_split_on_ascii_and_full_width_commas_and_lists_are_kept():
    assert parse_terms("pub, riverside，显瘦", "keywords") == ("pub", "riverside", "显瘦")
    assert parse_terms([" pub ", "pub", "river side"], "keywords") == ("pub", "river side")
    assert parse_terms(None, "keywords") == ()


@pytest.mark.parametrize("value, message", [("", "keywords is empty"), ("  ", "keywords is empty"),
                                            ("pub,,cheap", "empty term"), (["pub", ""], "empty term")])
def test_empty_keywords_or_terms_are_errors(value, message):
    with pytest.raises(AigcError, match=message) as error:
        make_request("ad-copy", attributes=EAGLE_MR, keywords=value)
    assert error.value.param == "keywords"


def test_a_term_both_required_and_forbidden_is_an_error():
    with pytest.raises(AigcError, match="'Pub' is both a keyword and forbidden"):
        make_request("ad-copy", attributes=EAGLE_MR, keywords="Pub", forbid="pub")


def test_language_is_inferred_from_chinese_attributes_and_picks_the_advertisegen_source():
    chinese = make_request("ad-copy", attributes="类型#裤*风格#简约")
    english = make_request("ad-copy", attributes=EAGLE_MR)
    assert (chinese.language, chinese.resolved_source_format) == ("zh", "advertisegen")
    assert (english.language, english.resolved_source_format) == ("en", "e2e")
    assert make_request("ad-copy", attributes=EAGLE_MR, source_format="advertisegen").resolved_source_format == "advertisegen"


@pytest.mark.parametrize("field, value, param", [("n", 0, "n"), ("length", 0, "length"), ("n", True, "n"),
                                                 ("language", "fr", "language"), ("source_format", "csv", "source_format"),
                                                 ("tone", " ", "tone"), ("attributes", None, "attributes"),
                                                 ("attributes", "name[The Eagle", "attributes")])
def test_bad_request_fields_name_the_parameter(field, value, param):
    fields = {"attributes": EAGLE_MR, field: value}
    with pytest.raises(AigcError) as error:
        make_request("ad-copy", **fields)
    assert error.value.param == param


def test_json_line_overrides_flag_defaults_and_unknown_keys_are_errors():
    request = request_from_json("ad-copy", {"id": 7, "attributes": EAGLE_MR, "n": 2, "keywords": ["pub"]},
                                defaults={"n": 5, "tone": "warm", "keywords": None})
    assert (request.n, request.tone, request.keywords) == (2, "warm", ("pub",))
    with pytest.raises(AigcError, match="unknown field 'keyword'; a line may hold: attributes"):
        request_from_json("ad-copy", {"attributes": EAGLE_MR, "keyword": "pub"})


def test_to_dict_is_plain_json_data():
    data = make_request("ad-copy", attributes=EAGLE_MR, keywords="pub").to_dict()
    assert data["keywords"] == ["pub"] and data["attributes"] == {"name": "The Eagle", "eatType": "pub"}
