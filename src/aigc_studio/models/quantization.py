"""Int8 weights for decoding on the CPU: per-channel symmetric int8 weights, activations quantized per call.

Decoding a small model on a CPU reads every weight once per step and does little arithmetic on each, so
the step is bound by memory traffic and per-operation overhead (docs/benchmarks.md, "Generation speed").
Int8 weights are a quarter of fp32's bytes, and PyTorch's fbgemm kernel (``quantized::linear_dynamic``)
quantizes each call's activations on the fly and accumulates in int32, so no calibration data is needed.
On the bundled ``e2e-copy`` model the dev-set perplexity moves by about 0.2% (bench/generation_speed.py).

* :class:`Int8Weight`: one packed weight (and optional bias), called through :meth:`Int8Weight.linear`.
* :class:`Int8Linear`: a linear layer's stand-in holding an :class:`Int8Weight`.
* :func:`quantize_model`: the one entry point. Our GPT keeps its fp32 parameters and switches its decoding
  matmuls to int8 (:meth:`~aigc_studio.models.gpt.GPT.set_quantization`), so export and training still see
  fp32; any other module (the LSTM's output layer, a Hugging Face model) has its linear layers swapped for
  :class:`Int8Linear`, which frees their fp32 weights.

Activations are quantized to 7 bits (``reduce_range``): CPUs without VNNI accumulate pairs of products in
16 bits, and the full 8-bit range can saturate there. Measured on ``e2e-copy``, 7 bits cost 0.04% of
perplexity over 8 bits, so one setting serves every x86 CPU.

The kernel is the x86/ARM one behind ``torch.ao.quantization.quantize_dynamic``; the quantized-tensor
constructors it needs warn that they are deprecated (torch 2.13), and the project pins its torch.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from aigc_studio.errors import AigcError

QUANTIZATIONS: tuple[str, ...] = ("none", "int8")

# Activations in 7 bits: see the module docstring.
_REDUCE_RANGE = True


def check_quantization(quantization: str, weight: torch.Tensor | None = None) -> None:
    """Raise a one-line :class:`AigcError` unless ``quantization`` is known and can run on a model whose
    parameters are like ``weight`` (int8 needs float32 on the CPU)."""
    if quantization not in QUANTIZATIONS:
        raise AigcError(f"unknown quantization {quantization!r}; use one of: {', '.join(QUANTIZATIONS)}",
                        param="quantize")
    if quantization == "none":
        return
    if weight is not None and weight.device.type != "cpu":
        raise AigcError(f"int8 quantization runs on the CPU only, not {weight.device}; on a GPU use dtype bfloat16 "
                        "instead", param="quantize")
    if weight is not None and weight.dtype != torch.float32:
        raise AigcError(f"int8 quantization needs a float32 model, not {weight.dtype}; load it in float32",
                        param="quantize")
    if not {"fbgemm", "x86", "qnnpack"} & set(torch.backends.quantized.supported_engines):
        raise AigcError("this PyTorch build has no int8 CPU kernels (fbgemm, x86 or qnnpack); run without "
                        "quantization", param="quantize")


class Int8Weight:
    """A linear layer's weight (out, in) as per-output-channel symmetric int8, packed for the CPU kernel.

    Each output row is scaled by its largest magnitude / 127. The packed form is opaque; :meth:`linear`
    is the only way to use it.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        weight = weight.detach().float().cpu()
        self.out_features, self.in_features = weight.shape
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()  # an all-zero row still needs a scale
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # the deprecation notice of quantized tensors (module docstring)
            warnings.simplefilter("ignore")
            quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(
                quantized, None if bias is None else bias.detach().float().cpu())

    @property
    def nbytes(self) -> int:
        """Bytes of the int8 weight (what a decode step reads); scales and packing overhead not counted."""
        return self.out_features * self.in_features

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """``F.linear(x, weight, bias)`` in int8: ``x`` (..., in) fp32 → (..., out) fp32."""
        rows = x.reshape(-1, self.in_features)
        return torch.ops.quantized.linear_dynamic(rows, self._packed, _REDUCE_RANGE).view(*x.shape[:-1], self.out_features)


class Int8Linear(nn.Module):
    """Inference-only stand-in for a linear layer: the same outputs up to int8 rounding, no gradients.

    Args:
        weight: (out, in), as ``nn.Linear`` stores it.
        bias: (out,) or None.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.int8_weight = Int8Weight(weight, bias)
        self.out_features, self.in_features = self.int8_weight.out_features, self.int8_weight.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.int8_weight.linear(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_linears(module: nn.Module) -> int:
    """Replace every linear layer inside ``module`` by an :class:`Int8Linear`, in place; returns how many.

    Linear layers are ``nn.Linear`` and transformers' ``Conv1D`` (the GPT-2 family's linear layer, which
    stores its weight as (in, out)).
    """
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child.weight, child.bias))
            elif type(child).__name__ == "Conv1D" and getattr(child, "weight", None) is not None:
                setattr(parent, name, Int8Linear(child.weight.t(), getattr(child, "bias", None)))
            else:
                continue
            swapped += 1
    return swapped


def quantize_model(model: nn.Module, quantization: str) -> nn.Module:
    """Run ``model``'s linear layers in ``quantization`` ("none" leaves it as it is); returns ``model``.

    A model with ``set_quantization`` (our GPT) switches its own decoding matmuls and keeps its fp32
    parameters; any other has its linear layers swapped (:func:`quantize_linears`) and can no longer be
    trained or saved. Use the model in eval mode afterwards.

    Raises:
        AigcError: an unknown quantization, a model not on the CPU or not in float32, or a PyTorch without
            int8 kernels.
    """
    check_quantization(quantization, next(model.parameters(), None))
    set_quantization = getattr(model, "set_quantization", None)
    if callable(set_quantization):
        set_quantization(quantization)
    elif quantization == "int8" and not quantize_linears(model):
        raise AigcError(f"{type(model).__name__} has no linear layers to quantize; run it without quantization",
                        param="quantize")
    return model
