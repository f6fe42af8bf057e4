"""The keyed green-list watermark: green lists, the logits processor in sampling and beam search, the detector
on watermarked samples of the bundled model and on human text (E2E references, Tiny Shakespeare), and keys."""

from __future__ import annotations

import csv
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.errors import AigcError
from aigc_studio.generation.logits_processors import MinTokens, Temperature, build_logits_processors
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.registry import resolve_model
from aigc_studio.safety.watermark import (
    WatermarkConfig,
    WatermarkProcessor,
    detect_text,
    detect_watermark,
    green_list,
    load_key,
    load_or_create_key,
    p_value,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
VOCAB = 2048


@pytest.fixture(scope="module")
def backend() -> BuiltinBackend:
    return BuiltinBackend.from_directory(resolve_model("e2e-copy"))


@pytest.fixture(scope="module")
def config() -> WatermarkConfig:
    return WatermarkConfig(key=KEY)


@pytest.fixture(scope="module")
def dev_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "e2e" / "devset.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def watermarked(backend: BuiltinBackend, config: WatermarkConfig, dev_rows) -> list[str]:
    """One 90-token watermarked description for each of 30 E2E dev meaning representations."""
    prompts = list(dict.fromkeys(row["mr"] for row in dev_rows))[:30]
    params = SamplingParams(seed=0, min_tokens=90, max_tokens=90, watermark=config)
    return [result.candidates[0].text for result in backend.generate(prompts, params)]


# -- green lists --------------------------------------------------------------------------------------------


def test_green_list_is_deterministic_and_gamma_of_the_vocabulary(config: WatermarkConfig) -> None:
    first = green_list(config, [17], VOCAB)
    assert np.array_equal(first, green_list(WatermarkConfig(key=KEY), [17], VOCAB))
    assert len(first) == VOCAB // 4 and len(set(first.tolist())) == len(first)
    assert len(green_list(WatermarkConfig(key=KEY, gamma=0.5), [17], 1000)) == 500


def test_green_list_changes_with_key_and_context(config: WatermarkConfig) -> None:
    lists = [green_list(config, [17], VOCAB), green_list(config, [18], VOCAB), green_list(WatermarkConfig(key=OTHER_KEY), [17], VOCAB)]
    for a in range(3):
        for b in range(a + 1, 3):
            overlap = len(np.intersect1d(lists[a], lists[b])) / len(lists[a])
            assert overlap < 0.4  # independent lists share about gamma = 25% of their ids


def test_green_list_is_pinned_for_a_known_key() -> None:
    # A key must keep detecting old texts: any change to the hashing would orphan every deployed key.
    assert green_list(WatermarkConfig(key=b"\x00" * 32), [1], 64).tolist() == [2, 4, 7, 12, 14, 15, 18, 32, 38, 43, 45, 47, 49, 50, 54, 58]


def test_context_width_two_uses_min_hash_of_both_tokens() -> None:
    wide = WatermarkConfig(key=KEY, context_width=2)
    pair = green_list(wide, [5, 9], VOCAB)
    assert any(np.array_equal(pair, green_list(wide, [token, token], VOCAB)) for token in (5, 9))
    assert np.array_equal(green_list(wide, [5, 9], VOCAB), green_list(wide, [9, 5], VOCAB))


def test_key_id_is_a_public_fingerprint(config: WatermarkConfig) -> None:
    assert len(config.key_id) == 16 and config.key_id != WatermarkConfig(key=OTHER_KEY).key_id
    assert KEY.hex() not in repr(config) and "key=" not in repr(config)
    assert "key" not in str(config.describe()).replace("key_id", "")


@pytest.mark.parametrize(("values", "param"), [
    ({"key": b"short"}, "key"),
    ({"key": KEY, "gamma": 1.0}, "gamma"),
    ({"key": KEY, "delta": -1.0}, "delta"),
    ({"key": KEY, "context_width": 0}, "context_width"),
    ({"key": KEY, "z_threshold": 0.0}, "z_threshold"),
])  # fmt: skip
def test_bad_config_names_the_field(values: dict, param: str) -> None:
    with pytest.raises(AigcError) as error:
        WatermarkConfig(**values)
    assert error.value.param == param and param in str(error.value)


# -- the logits processor -----------------------------------------------------------------------------------


def test_processor_adds_delta_to_the_green_list_of_each_rows_last_token(config: WatermarkConfig) -> None:
    processor = WatermarkProcessor(config, VOCAB)
    logits = torch.randn(2, VOCAB)
    # The sampler's layout: left-padded prompts (pad id 0), then the generated tokens; the last column decides.
    token_ids = torch.tensor([[0, 0, 1, 40, 41], [1, 70, 71, 72, 99]])
    out = processor(logits, token_ids)
    for row, last in enumerate((41, 99)):
        green = torch.zeros(VOCAB, dtype=torch.bool)
        green[torch.from_numpy(green_list(config, [last], VOCAB))] = True
        assert torch.allclose(out[row][green], logits[row][green] + config.delta)
        assert torch.equal(out[row][~green], logits[row][~green])


def test_processors_of_one_key_are_equal_so_the_sampler_runs_their_rows_together(config: WatermarkConfig) -> None:
    processor = WatermarkProcessor(config, VOCAB)
    assert processor == WatermarkProcessor(config, VOCAB)
    assert processor != WatermarkProcessor(WatermarkConfig(key=b"another key of 16+ bytes"), VOCAB)
    assert processor != WatermarkProcessor(config, VOCAB + 1)
    # it reads only the last context_width tokens: a row's earlier tokens do not change its bias
    assert processor.context_width == config.context_width == 1
    logits = torch.randn(1, VOCAB)
    assert torch.equal(processor(logits, torch.tensor([[1, 5, 41]])), processor(logits, torch.tensor([[41]])))
    with pytest.raises(AigcError, match="too small to watermark"):
        WatermarkProcessor(config, 1)


def test_processor_runs_after_penalties_and_before_temperature(config: WatermarkConfig) -> None:
    params = SamplingParams(temperature=0.7, min_tokens=3, watermark=config)
    processors = build_logits_processors(params, prompt_length=4, eos_token_ids=[2], vocab_size=VOCAB)
    assert [type(p) for p in processors] == [MinTokens, WatermarkProcessor, Temperature]
    with pytest.raises(ValueError, match="vocab_size"):
        build_logits_processors(params, prompt_length=4, eos_token_ids=[2])


def test_sampling_params_keep_the_key_out_of_to_dict(config: WatermarkConfig) -> None:
    values = SamplingParams(watermark=config).to_dict()
    assert values["watermark"] == {"key_id": config.key_id, "gamma": 0.25, "delta": 2.0, "context_width": 1}
    with pytest.raises(AigcError) as error:
        SamplingParams(watermark={"key": "secret"})  # type: ignore[arg-type]
    assert error.value.param == "watermark"


def test_delta_zero_leaves_sampling_unchanged(backend: BuiltinBackend) -> None:
    prompt = ["name[The Eagle], eatType[pub], food[French]"]
    plain = backend.generate(prompt, SamplingParams(seed=3, n=3))[0]
    marked = backend.generate(prompt, SamplingParams(seed=3, n=3, watermark=WatermarkConfig(key=KEY, delta=0.0)))[0]
    assert [c.text for c in plain.candidates] == [c.text for c in marked.candidates]


def test_beam_search_is_watermarked_too(backend: BuiltinBackend, config: WatermarkConfig) -> None:
    prompt = ["name[The Eagle], eatType[pub], food[French], area[riverside]"]
    params = SamplingParams(num_beams=2, min_tokens=60, max_tokens=60)
    plain = backend.generate(prompt, params)[0].candidates[0].text
    strong = WatermarkConfig(key=KEY, delta=6.0)
    marked = backend.generate(prompt, params.replace(watermark=strong))[0].candidates[0].text
    assert detect_text(marked, backend.tokenizer, strong).z > detect_text(plain, backend.tokenizer, strong).z + 3


# -- detection ----------------------------------------------------------------------------------------------


def test_watermarked_samples_are_detected(backend: BuiltinBackend, config: WatermarkConfig, watermarked: list[str]) -> None:
    detections = [detect_text(text, backend.tokenizer, config) for text in watermarked]
    assert all(d.num_tokens_scored >= 40 for d in detections)
    # The bundled model is a low-entropy records model, so a few 90-token samples stay below z = 4.
    assert sum(d.watermarked for d in detections) >= 0.8 * len(detections)
    assert sum(d.z for d in detections) / len(detections) > 5


def test_wrong_key_does_not_detect(backend: BuiltinBackend, watermarked: list[str]) -> None:
    means = []
    for wrong_key in (OTHER_KEY, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32):
        detections = [detect_text(text, backend.tokenizer, WatermarkConfig(key=wrong_key)) for text in watermarked]
        assert not any(d.watermarked for d in detections)
        means.append(sum(d.z for d in detections) / len(detections))
    # The 30 samples share many word pairs, so one key's mean z wanders (sd ~0.4 over keys); several keys' does not.
    assert abs(sum(means) / len(means)) < 0.75


def test_unwatermarked_samples_are_not_detected(backend: BuiltinBackend, config: WatermarkConfig, dev_rows) -> None:
    prompts = list(dict.fromkeys(row["mr"] for row in dev_rows))[:30]
    results = backend.generate(prompts, SamplingParams(seed=0, min_tokens=90, max_tokens=90))
    assert not any(detect_text(r.candidates[0].text, backend.tokenizer, config).watermarked for r in results)


def _windows(ids: list[int], length: int, count: int) -> list[list[int]]:
    return [ids[start:start + length] for start in range(0, min(len(ids) - length, count * length), length)]


def test_human_text_is_not_detected(backend: BuiltinBackend, config: WatermarkConfig, dev_rows, shared_data: Path) -> None:
    references = backend.tokenizer.encode(" ".join(row["ref"] for row in dev_rows))
    shakespeare = backend.tokenizer.encode((shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:200_000])
    for source in (references, shakespeare):
        windows = _windows(source, 100, 400)
        assert len(windows) == 400
        scores = [detect_watermark(window, config, VOCAB) for window in windows]
        assert not any(score.watermarked for score in scores)
        assert abs(sum(score.z for score in scores) / len(scores)) < 0.6


def test_repeated_context_token_pairs_count_once(config: WatermarkConfig) -> None:
    token = next(int(t) for t in green_list(config, [100], VOCAB) if t >= 16)  # 0..15 are special tokens
    green_pair_repeated = [100, token] * 50
    detection = detect_watermark(green_pair_repeated, config, VOCAB)
    # Two distinct pairs, (100, token) and (token, 100), however often they repeat.
    assert detection.num_tokens_scored == 2 and not detection.watermarked


def test_special_tokens_are_not_scored(config: WatermarkConfig) -> None:
    assert detect_watermark([1, 2, 3, 0, 2], config, VOCAB).num_tokens_scored == 0
    assert detect_watermark([20, 2, 21, 22], config, VOCAB).num_tokens_scored == 2


def test_z_and_p_value_follow_the_normal_test(config: WatermarkConfig) -> None:
    ids = [50 + i for i in range(200)]
    detection = detect_watermark(ids, config, VOCAB)
    expected = (detection.num_green - 0.25 * detection.num_tokens_scored) / math.sqrt(detection.num_tokens_scored * 0.25 * 0.75)
    assert detection.z == pytest.approx(expected)
    assert detection.p_value == pytest.approx(p_value(expected)) and p_value(0.0) == pytest.approx(0.5)
    assert p_value(4.0) == pytest.approx(3.167e-5, rel=1e-3)
    empty = detect_watermark([], config, VOCAB)
    assert (empty.z, empty.p_value, empty.watermarked) == (0.0, 1.0, False)


def test_bad_detector_input(backend: BuiltinBackend, config: WatermarkConfig) -> None:
    with pytest.raises(AigcError, match="outside the vocabulary of 2048"):
        detect_watermark([5, 4096], config, VOCAB)
    with pytest.raises(AigcError, match="must be a string"):
        detect_text(None, backend.tokenizer, config)  # type: ignore[arg-type]


# -- keys ---------------------------------------------------------------------------------------------------


def test_key_is_created_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "watermark.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path) == key == load_key(path)
    assert WatermarkConfig.from_key_file(path).key_id == WatermarkConfig(key=key).key_id


def test_missing_or_bad_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="not found"):
        load_key(tmp_path / "missing.key")
    assert not (tmp_path / "missing.key").exists()
    bad = tmp_path / "bad.key"
    bad.write_text("not hex at all\n")
    with pytest.raises(AigcError, match="does not hold a hexadecimal key"):
        load_or_create_key(bad)
