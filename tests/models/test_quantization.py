"""Int8 weights for CPU decoding (models/quantization.py): the kernel, our GPT's switch, the module swap, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.errors import AigcError
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel
from aigc_studio.models.quantization import Int8Linear, Int8Weight, quantize_linears, quantize_model
from aigc_studio.models.registry import resolve_model


def relative_error(approximate: torch.Tensor, exact: torch.Tensor) -> float:
    return ((approximate - exact).norm() / exact.norm()).item()


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=64)).eval()


def test_int8_weight_computes_the_linear_layer_up_to_rounding():
    torch.manual_seed(0)
    weight, bias, x = torch.randn(48, 32), torch.randn(48), torch.randn(5, 7, 32)
    weight[3] = 0.0  # an all-zero row still gets a usable scale
    int8 = Int8Weight(weight, bias)
    out = int8.linear(x)
    assert out.shape == (5, 7, 48)
    assert relative_error(out, F.linear(x, weight, bias)) < 0.02
    assert torch.allclose(out[..., 3], bias[3].expand(5, 7), atol=1e-5)
    assert int8.nbytes == 48 * 32


def test_the_gpt_in_int8_stays_close_to_fp32_and_switches_back_exactly():
    model = tiny_gpt()
    input_ids = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        exact = model(input_ids)[0]
        quantize_model(model, "int8")
        approximate = model(input_ids)[0]
        model.set_quantization("none")
        again = model(input_ids)[0]
    assert 0 < relative_error(approximate, exact) < 0.05  # int8 really ran, and stayed close
    assert torch.equal(again, exact)


def test_int8_decoding_with_the_cache_is_deterministic_and_close_to_the_forward_pass():
    model = tiny_gpt()
    model.set_quantization("int8")
    input_ids = torch.randint(0, 300, (2, 12))

    def decode() -> torch.Tensor:
        state = model.init_state(2, 12)
        prefill = model.step(input_ids[:, :8], state)
        return torch.cat([prefill, *(model.step(input_ids[:, i:i + 1], state) for i in range(8, 12))], dim=1)

    with torch.no_grad():
        full, decoded = model(input_ids)[0], decode()
        # Activations are scaled per call, so a token's logits depend a little on what else the call holds:
        # close to the whole-sequence pass, and identical when the same calls repeat.
        assert relative_error(decoded, full) < 0.05
        assert torch.equal(decode(), decoded)


def test_training_a_quantized_gpt_uses_fp32_and_inference_follows_the_new_weights():
    model, reference = tiny_gpt(), tiny_gpt()
    model.set_quantization("int8")
    input_ids = torch.randint(0, 300, (2, 16))
    model.train()
    logits, loss = model(input_ids, targets=input_ids)
    assert torch.equal(logits, reference.train()(input_ids)[0])  # autograd gets the fp32 weights
    loss.backward()
    assert model.layers[0].self_attn.o_proj.weight.grad is not None
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    reference.load_state_dict(model.state_dict())
    model.eval(), reference.eval()
    with torch.no_grad():
        # the int8 copies were rebuilt from the updated weights: close to the updated fp32 model, not the old one
        assert relative_error(model(input_ids)[0], reference(input_ids)[0]) < 0.05


def test_quantize_linears_swaps_every_linear_layer_of_an_lstm_head_and_a_plain_module():
    torch.manual_seed(0)
    lstm = LSTMLanguageModel(LSTMConfig(vocab_size=300, n_embd=64, hidden_size=64, n_layer=1)).eval()
    input_ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        exact = lstm(input_ids)[0]
        quantize_model(lstm, "int8")
        approximate = lstm(input_ids)[0]
    assert isinstance(lstm.lm_head, Int8Linear)
    assert 0 < relative_error(approximate, exact) < 0.05
    stack = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 4, bias=False)))
    assert quantize_linears(stack) == 2
    assert [type(layer) for layer in (stack[0], stack[2][0])] == [Int8Linear, Int8Linear]


@pytest.mark.parametrize(("quantization", "model", "message"), [
    ("int4", tiny_gpt, "unknown quantization 'int4'; use one of: none, int8"),
    ("int8", lambda: tiny_gpt().to(torch.bfloat16), "needs a float32 model, not torch.bfloat16"),
    ("int8", lambda: nn.Sequential(nn.ReLU()), "has no linear layers to quantize"),
])
def test_quantization_that_cannot_run_is_refused_with_one_line(quantization, model, message):
    with pytest.raises(AigcError, match=message):
        quantize_model(model(), quantization)


def test_the_bundled_model_in_int8_scores_the_e2e_dev_references_like_fp32(shared_data: Path):
    rows = list(csv.DictReader((shared_data / "e2e" / "devset.csv").open(encoding="utf-8")))[:40]
    exact = BuiltinBackend.from_directory(resolve_model("e2e-copy"))
    int8 = BuiltinBackend.from_directory(resolve_model("e2e-copy"), quantize="int8")

    def nll_per_token(backend: BuiltinBackend) -> float:
        logprobs = [token.logprob for row in rows for token in backend.score(row["mr"], row["ref"])]
        return -sum(logprobs) / len(logprobs)

    exact_nll, int8_nll = nll_per_token(exact), nll_per_token(int8)
    assert exact_nll != int8_nll
    assert abs(int8_nll / exact_nll - 1) < 0.01  # measured: +0.18% on 400 references (docs/benchmarks.md)
