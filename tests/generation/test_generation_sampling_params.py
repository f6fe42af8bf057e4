from __future__ import annotations

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.generation import SamplingParams


def test_defaults_are_valid_and_sample_at_temperature_one():
    params = SamplingParams()
    assert params.validate() is params
    assert params.temperature == 1.0 and not params.greedy


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("temperature", -0.5, ">= 0"),
        ("temperature", float("nan"), ">= 0"),
        ("top_k", -1, ">= 0"),
        ("top_p", 0.0, "(0, 1]"),
        ("top_p", 1.5, "(0, 1]"),
        ("min_p", -0.1, "[0, 1]"),
        ("min_p", 1.1, "[0, 1]"),
        ("repetition_penalty", 0.0, "> 0"),
        ("presence_penalty", 2.5, "[-2, 2]"),
        ("frequency_penalty", -3.0, "[-2, 2]"),
        ("no_repeat_ngram_size", -2, ">= 0"),
        ("max_tokens", 0, ">= 1"),
        ("min_tokens", -1, ">= 0"),
        ("n", 0, ">= 1"),
        ("seed", -7, ">= 0"),
        ("num_beams", 0, ">= 1"),
        ("length_penalty", float("inf"), "finite"),
        ("logprobs", 21, "[0, 20]"),
        ("logprobs", -1, "[0, 20]"),
        ("top_k", 2.5, "integer"),
        ("temperature", "hot", ">= 0"),
        ("temperature", True, ">= 0"),
    ],
)
def test_out_of_range_value_names_the_field_its_value_and_the_range(field, value, allowed):
    with pytest.raises(AigcError) as error:
        SamplingParams(**{field: value})
    assert error.value.param == field
    message = str(error.value)
    assert field in message and repr(value) in message and allowed in message
    assert "\n" not in message


def test_validate_catches_a_field_changed_after_construction():
    params = SamplingParams()
    params.top_p = 0.0
    with pytest.raises(AigcError) as error:
        params.validate()
    assert error.value.param == "top_p"


def test_min_tokens_above_max_tokens_is_rejected():
    with pytest.raises(AigcError, match="min_tokens=10 is larger than max_tokens=5") as error:
        SamplingParams(max_tokens=5, min_tokens=10)
    assert error.value.param == "min_tokens"


def test_beam_search_cannot_return_more_candidates_than_beams():
    with pytest.raises(AigcError, match="n=3 is larger than num_beams=2") as error:
        SamplingParams(num_beams=2, n=3)
    assert error.value.param == "n"
    assert SamplingParams(num_beams=1, n=3).n == 3  # sampling may ask for any n


@pytest.mark.parametrize("stop", [[""], ["ok", 3], "", ("a", "b")])
def test_stop_must_be_non_empty_strings(stop):
    with pytest.raises(AigcError) as error:
        SamplingParams(stop=stop)
    assert error.value.param == "stop"


def test_a_single_stop_string_becomes_a_list():
    assert SamplingParams(stop="\n").stop == ["\n"]


def test_stop_token_ids_must_be_non_negative_integers():
    with pytest.raises(AigcError) as error:
        SamplingParams(stop_token_ids=[2, -1])
    assert error.value.param == "stop_token_ids"


def test_from_dict_reads_openai_names_and_keeps_defaults_for_none():
    params = SamplingParams.from_dict({"temperature": 0.7, "top_p": 0.9, "stop": "END", "seed": None, "max_tokens": None})
    assert (params.temperature, params.top_p, params.stop, params.seed) == (0.7, 0.9, ["END"], None)
    assert params.max_tokens == SamplingParams().max_tokens


def test_from_dict_rejects_an_unknown_key_and_lists_the_known_ones():
    with pytest.raises(AigcError, match="unknown sampling parameter 'temprature'.*temperature") as error:
        SamplingParams.from_dict({"temprature": 0.5})
    assert error.value.param == "temprature"


def test_to_dict_round_trips_through_from_dict():
    params = SamplingParams(temperature=0.3, top_k=40, stop=["\n\n"], seed=5, logprobs=2)
    assert SamplingParams.from_dict(params.to_dict()) == params


def test_replace_checks_the_new_values():
    params = SamplingParams(temperature=0.8)
    assert params.replace(temperature=0).greedy
    with pytest.raises(AigcError):
        params.replace(n=0)
