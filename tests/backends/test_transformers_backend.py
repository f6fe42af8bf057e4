"""The transformers backend over a tiny random Llama and GPT-2: transformers' own greedy output, seeds, streaming,
logprobs, the watermark, the content pipeline with governance, and `aigc generate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aigc_studio.backends.transformers import TransformersBackend
from aigc_studio.cli.main import app
from aigc_studio.content.governance import Governance
from aigc_studio.content.pipeline import ContentPipeline
from aigc_studio.content.requests import make_request
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.safety.watermark import WatermarkConfig, detect_text
from aigc_studio.settings import Settings

transformers = pytest.importorskip("transformers")
runner = CliRunner()
PROMPTS = ["Write an ad for The Eagle.", "A riverside pub", "Italian food near the river, cheap and family friendly"]


@pytest.fixture(scope="module")
def llama(tiny_llama_dir: Path) -> TransformersBackend:
    return TransformersBackend.from_directory(tiny_llama_dir, name="tiny-llama")


def load(directory: Path) -> TransformersBackend:
    return TransformersBackend.from_directory(directory)


def test_greedy_batch_with_left_padding_equals_transformers_generate(tiny_hf_dir: Path):
    backend = load(tiny_hf_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_hf_dir).eval()
    results = backend.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=12))
    for prompt, result in zip(PROMPTS, results):
        ids = torch.tensor([backend.encode_prompt(prompt)])
        with torch.no_grad():
            expected = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                                   eos_token_id=2, pad_token_id=0)
        text = backend.tokenizer.decode(expected[0, ids.size(1):].tolist())
        assert result.candidates[0].text == text and result.prompt_tokens == ids.size(1)


def test_text_prompts_use_the_chat_template_when_the_tokenizer_has_one(llama: TransformersBackend, tiny_gpt2_dir: Path):
    assert llama.tokenizer.decode(llama.encode_prompt("hi"), skip_special_tokens=False) == "<bos><|reserved_0|>hi<|reserved_1|>"
    gpt2 = load(tiny_gpt2_dir)
    assert gpt2.encode_prompt("hi") == gpt2.tokenizer.encode("hi")
    assert llama.info.backend == "transformers" and llama.info.prompt_format == "text" and llama.info.context_length == 1024
    assert len(llama.info.weights_sha256) == 64


def test_each_seeded_candidate_is_reproducible_whatever_shares_its_batch(llama: TransformersBackend):
    params = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=10, n=3, seed=11)
    alone = llama.generate(PROMPTS[:1], params)[0]
    batched = llama.generate(PROMPTS, params)[0]
    assert [c.text for c in alone.candidates] == [c.text for c in batched.candidates]
    assert len({c.text for c in alone.candidates}) == 3  # three different draws
    other_seed = llama.generate(PROMPTS[:1], params.replace(seed=12))[0]
    assert [c.text for c in other_seed.candidates] != [c.text for c in alone.candidates]


def test_stream_joins_to_the_generated_text_and_ends_with_a_finish_reason(tiny_gpt2_dir: Path):
    backend = load(tiny_gpt2_dir)
    params = SamplingParams(temperature=0.8, max_tokens=15, seed=3, logprobs=2)
    chunks = list(backend.stream(PROMPTS[0], params))
    candidate = backend.generate([PROMPTS[0]], params)[0].candidates[0]
    assert "".join(chunk.text for chunk in chunks) == candidate.text
    assert [chunk.finish_reason for chunk in chunks][-1] == candidate.finish_reason == "length"
    assert [chunk.logprob.logprob for chunk in chunks] == pytest.approx([item.logprob for item in candidate.logprobs], abs=1e-5)
    with pytest.raises(AigcError, match="n=1"):
        backend.stream(PROMPTS[0], params.replace(n=2))


def test_a_stop_string_cuts_the_text_just_before_it(tiny_gpt2_dir: Path):
    backend = load(tiny_gpt2_dir)
    params = SamplingParams(temperature=0, max_tokens=30)
    full = backend.generate([PROMPTS[0]], params)[0].candidates[0].text
    stop = full[len(full) // 2:len(full) // 2 + 3]
    cut = backend.generate([PROMPTS[0]], params.replace(stop=[stop]))[0].candidates[0]
    assert cut.text == full[:full.index(stop)] and cut.finish_reason == "stop"


def test_logprobs_are_the_raw_distribution_of_the_model(llama: TransformersBackend, tiny_llama_dir: Path):
    # Greedy, so the first token is the argmax; a temperature would not change the reported (raw) values.
    candidate = llama.generate([PROMPTS[1]], SamplingParams(temperature=0, max_tokens=4, logprobs=3))[0].candidates[0]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with torch.no_grad():
        first = hf(torch.tensor([llama.encode_prompt(PROMPTS[1])])).logits[0, -1].log_softmax(-1)
    top = first.topk(3)
    assert candidate.logprobs[0].logprob == pytest.approx(top.values[0].item(), abs=1e-5)
    assert candidate.logprobs[0].token == llama.tokenizer.token_strings([int(top.indices[0])])[0]
    assert sorted(candidate.logprobs[0].top_logprobs.values(), reverse=True) == pytest.approx(top.values.tolist(), abs=1e-5)
    scored = llama.score(PROMPTS[1], candidate.text)
    assert len(scored) >= 1 and all(item.logprob <= 0 for item in scored)


def test_watermark_is_applied_and_detected_on_transformers_output(llama: TransformersBackend):
    config = WatermarkConfig(key=b"k" * 32, gamma=0.25, delta=4.0)
    params = SamplingParams(temperature=1.0, max_tokens=80, min_tokens=80, seed=5)
    marked = llama.generate([PROMPTS[0]], params.replace(watermark=config))[0].candidates[0].text
    plain = llama.generate([PROMPTS[0]], params)[0].candidates[0].text
    vocab_size = llama.model.config.vocab_size
    detected = detect_text(marked, llama.tokenizer, config, vocab_size=vocab_size)
    # A random model's token sequences are often not how BPE would split the decoded text again, which blurs the
    # count a little; the verdict (z >= 4) still holds.
    assert detected.watermarked and detected.z >= config.z_threshold
    assert not detect_text(plain, llama.tokenizer, config, vocab_size=vocab_size).watermarked


def test_the_content_pipeline_with_governance_runs_unchanged_over_both_models(tiny_hf_dir: Path, tmp_path: Path):
    backend = load(tiny_hf_dir)
    settings = Settings(watermark={"key_file": tmp_path / "watermark.key"}, vault_key_file=tmp_path / "vault.key")
    pipeline = ContentPipeline(backend, hooks=Governance(settings).pipeline_hooks(backend))
    request = make_request("ad-copy", attributes="name[The Eagle], eatType[pub], area[riverside]", keywords="riverside", n=3)
    result = pipeline.run(request, SamplingParams(temperature=1.0, max_tokens=20, seed=2))
    assert result.prompt_format == "text" and "The Eagle" in result.prompt  # the instruction prompt, not the source
    assert len(result.candidates) == 3 and [c.rank for c in result.candidates] == [1, 2, 3]
    assert all(c.scores for c in result.candidates)
    assert result.params.watermark is not None  # governance watermarks transformers backends
    assert result.provenance["watermark_key_id"] == result.params.watermark.key_id
    assert result.provenance["model_sha256"] == backend.info.weights_sha256


def test_aigc_generate_takes_a_transformers_directory(tiny_gpt2_dir: Path):
    args = ["generate", "--model", str(tiny_gpt2_dir), "--prompt", "A riverside pub", "--max-tokens", "6", "--n", "2",
            "--seed", "4", "--temperature", "1", "--json"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout.strip().splitlines()[-1])
    assert len(payload["candidates"]) == 2 and payload["usage"]["completion_tokens"] == 12
    assert first.stdout == second.stdout  # same seed, same output


def test_a_directory_without_safetensors_is_refused(tmp_path: Path, tiny_gpt2_dir: Path):
    (tmp_path / "config.json").write_text((tiny_gpt2_dir / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(AigcError, match="no \\*.safetensors weights; pickled .bin checkpoints are not loaded"):
        load(tmp_path)
    with pytest.raises(AigcError, match="not a transformers model directory"):
        load(tmp_path / "missing")


def test_a_records_model_needs_bos_and_sep(tiny_gpt2_dir: Path):
    backend = TransformersBackend.from_directory(tiny_gpt2_dir, prompt_format="records")
    assert backend.encode_prompt("name[X]")[0] == 1 and backend.encode_prompt("name[X]")[-1] == 3
    with pytest.raises(AigcError, match="unknown dtype"):
        TransformersBackend.from_directory(tiny_gpt2_dir, dtype="float8")


def test_the_serving_engine_gives_what_the_backend_gives(llama: TransformersBackend):
    from aigc_studio.generation.engine import Engine

    engine = Engine(llama)
    engine.start()
    try:
        params = SamplingParams(temperature=1.0, n=2, seed=4, max_tokens=8)
        expected = [c.text for c in llama.generate([PROMPTS[2]], params)[0].candidates]
        assert [c.text for c in engine.submit(PROMPTS[2], params).result(timeout=120).candidates] == expected
        streamed = "".join(event.text for event in engine.submit(PROMPTS[2], params.replace(n=1)).events())
        assert streamed == expected[0]
    finally:
        engine.shutdown()


def test_int8_transformers_models_score_close_to_fp32_and_generate(tiny_hf_dir: Path):
    exact = load(tiny_hf_dir)
    int8 = TransformersBackend.from_directory(tiny_hf_dir, quantize="int8")
    assert type(int8.model.hf.get_output_embeddings()).__name__ == "Int8Linear"  # Conv1D layers of GPT-2 too
    exact_logprobs = [token.logprob for token in exact.score("A riverside pub", " serving Italian food")]
    int8_logprobs = [token.logprob for token in int8.score("A riverside pub", " serving Italian food")]
    assert exact_logprobs != int8_logprobs
    assert max(abs(a - b) for a, b in zip(exact_logprobs, int8_logprobs)) < 0.05
    result = int8.generate(["A riverside pub"], SamplingParams(max_tokens=5, min_tokens=5, temperature=0))[0]
    assert result.candidates[0].num_tokens == 5
