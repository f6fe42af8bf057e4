"""A decoder-only Transformer in the Llama style: RMSNorm, rotary positions, SwiGLU, no biases.

The math is exactly Hugging Face's ``LlamaForCausalLM`` (RMSNorm in fp32, rotary tables from ``rope_theta``
with the non-interleaved ``rotate_half`` layout, separate q/k/v/o and gate/up/down projections), and the
modules carry Llama's names, so :func:`llama_state_dict` and :func:`llama_config` turn a trained model into
a Llama checkpoint that ``transformers``, vLLM and llama.cpp load unchanged.

Decoding goes through :meth:`GPT.step` with a :class:`KVCache` preallocated for the whole generation and
written in place, so a decode step allocates no cache memory and builds no mask unless rows are padded.
A decode step is a handful of matrix-vector products over all the weights, so it is bound by memory traffic
and per-operation overhead rather than arithmetic: the q/k/v and gate/up projections each run as one matmul
over stacked weights (:class:`StackedWeight`; the parameters themselves stay separate), a few rows take the
GEMM arrangement MKL runs fastest (:func:`linear`), queries and keys are rotated together without
concatenating halves, and RMSNorm is ``F.rms_norm``. Any floating dtype works
(``model.to(torch.bfloat16)`` halves the weight and cache traffic; normalisation stays in fp32 as in HF Llama),
and ``set_quantization("int8")`` runs the matmuls of inference with int8 weights on the CPU
(:mod:`aigc_studio.models.quantization`).

References: Touvron et al. 2023 (Llama), Su et al. 2021 (RoFormer, rotary positions), Shazeer 2020 (GLU
variants), Zhang & Sennrich 2019 (RMSNorm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from aigc_studio.data.tokenizer import BOS, EOS, PAD, SPECIAL_TOKENS
from aigc_studio.errors import AigcError
from aigc_studio.models.quantization import Int8Weight, check_quantization


@dataclass
class GPTConfig:
    """Shape of a :class:`GPT`; the fields are the ``config.json`` of its model directory."""

    vocab_size: int = 8192
    block_size: int = 256  # context length: positions covered by the rotary tables and a KV cache
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    # SwiGLU width; None derives Llama's rule: 8/3 * n_embd rounded up to a multiple of `multiple_of`,
    # which keeps the parameter count of a 4x GELU MLP with three matrices instead of two.
    intermediate_size: int | None = None
    multiple_of: int = 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = True  # share the token embedding with the output head (fewer parameters)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "multiple_of"):
            if getattr(self, name) <= 0:
                raise AigcError(f"{name} must be a positive integer, got {getattr(self, name)}", param=name)
        if self.n_embd % self.n_head:
            raise AigcError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"use an n_embd that is a multiple of n_head, e.g. {self.n_head * max(1, round(self.n_embd / self.n_head))}",
                param="n_embd",
            )
        if self.head_dim % 2:
            raise AigcError(
                f"n_embd / n_head = {self.head_dim} must be even for rotary positions; change n_embd or n_head",
                param="n_head",
            )
        if self.intermediate_size is None:
            hidden = int(2 * 4 * self.n_embd / 3)
            self.intermediate_size = self.multiple_of * math.ceil(hidden / self.multiple_of)
        elif self.intermediate_size <= 0:
            raise AigcError(f"intermediate_size must be a positive integer or null, got {self.intermediate_size}",
                            param="intermediate_size")
        if not 0.0 <= self.dropout < 1.0:
            raise AigcError(f"dropout must be in [0, 1), got {self.dropout}", param="dropout")
        for name in ("rope_theta", "norm_eps"):
            if getattr(self, name) <= 0:
                raise AigcError(f"{name} must be a positive number, got {getattr(self, name)}", param=name)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale and no bias (Llama's ``LlamaRMSNorm``)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)  # torch's own: fewer dispatched ops
        # Normalise in fp32 and scale after casting back, as HF Llama does, so half-precision runs and the
        # exported model agree.
        return self.weight * F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).to(x.dtype)


def rotary_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables (length, head_dim) for positions 0..length-1, computed in fp32 as HF Llama does.

    Returns:
        ``(cos, signed_sin)``: ``signed_sin`` is the sine with its first half negated, the sign that Llama's
        ``rotate_half`` would apply to the rotated vector; :func:`apply_rotary` uses it that way.
    """
    inv_freq = 1.0 / (float(theta) ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))  # (hd/2,)
    angles = torch.arange(length, dtype=torch.float)[:, None] * inv_freq[None, :]  # (L, hd/2)
    angles = torch.cat((angles, angles), dim=-1)  # (L, hd): both halves share frequencies (non-interleaved)
    signed_sin = angles.sin()
    signed_sin[:, : head_dim // 2].neg_()
    return angles.cos(), signed_sin


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate vectors (..., hd) by their positions: Llama's ``x * cos + rotate_half(x) * sin``.

    ``rotate_half`` maps halves (x1, x2) to (-x2, x1); rolling by half a head gives (x2, x1) without
    negating a copy, and the sign is already in ``signed_sin`` (:func:`rotary_tables`), so the products are
    exactly Llama's (only the final addition may round differently where ``addcmul`` fuses it). ``cos`` and
    ``signed_sin`` broadcast to ``x``'s shape.
    """
    return torch.addcmul(x * cos, x.roll(x.size(-1) // 2, dims=-1), signed_sin)


# Inputs of 2 to this many rows (a batched decode step) take the weight-first matmul in `linear`.
FEW_ROWS = 64


def linear(x: torch.Tensor, weight: torch.Tensor | Int8Weight) -> torch.Tensor:
    """Bias-free ``F.linear``: ``x`` (..., in) times ``weight.T`` (in, out); an :class:`Int8Weight` runs in int8.

    On the CPU, inputs of 2 to ``FEW_ROWS`` rows are computed as ``(weight @ x.T).T``: the same products
    (equal up to float rounding), but MKL's GEMM runs that arrangement faster when one side is only a few rows
    (a decode step at batch 16 measured about 10% faster per step, torch 2.13, 1 and 2 threads). One row (no
    faster that way with 2 threads), wider inputs (prefill, training) and other devices keep ``F.linear``.
    The ``nn.Linear`` modules hold the weights under Llama's names.
    """
    if isinstance(weight, Int8Weight):
        return weight.linear(x)
    rows = x.reshape(-1, x.size(-1))  # (M, in)
    if not 1 < rows.size(0) <= FEW_ROWS or x.device.type != "cpu":
        return F.linear(x, weight)
    return torch.mm(weight, rows.t()).t().contiguous().view(*x.shape[:-1], weight.size(0))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None, *,
              dropout_p: float = 0.0, is_causal: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` (a bool ``attn_mask`` marks the keys a query may see).

    A batched decode step on the CPU (several rows, one new query each, fp32) is computed as two matmuls and
    a softmax: torch's fused CPU kernel is built for blocks of queries, and with one query per row it took
    about 15% longer per call (16 rows over 160-288 cached keys, masked, torch 2.13, 2 threads; about 3% of a
    whole batch-16 decode step). The results are equal up to float rounding. One row (where the fused kernel
    is the faster), a block of queries (prefill, training), half precision and other devices keep the fused kernel.
    """
    B, _, T, head_dim = q.shape
    if T != 1 or B == 1 or q.device.type != "cpu" or q.dtype != torch.float32 or dropout_p or is_causal:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))  # (B, nh, 1, S)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return scores.softmax(dim=-1) @ v  # (B, nh, 1, hd)


class StackedWeight:
    """The weights of one or more bias-free linear layers stacked along their outputs, so one matmul serves all.

    Every matmul of a decoding step takes its weight from one of these. The layers keep their own parameters
    (names, ``state_dict`` and the Llama export are unchanged). Without autograd the stacked copy is built
    once and reused while every weight is the same tensor at the same version: replacing a weight (``.to()``,
    ``load_state_dict(assign=True)``) or changing it in place (an optimiser step, ``load_state_dict``,
    ``copy_``) rebuilds it on the next call. With autograd the weights are concatenated on every call, so
    gradients reach each parameter, and the copy is dropped. The copy costs the memory of the stacked
    weights once per model; a single layer's weight is used as it is.

    With ``int8`` set, calls without autograd get an :class:`Int8Weight` of the stack instead (a quarter of
    its bytes, :mod:`aigc_studio.models.quantization`); calls with autograd still get fp32.
    """

    def __init__(self, *linears: nn.Linear) -> None:
        self.linears = linears
        self.int8 = False
        self._stacked: torch.Tensor | Int8Weight | None = None
        self._key: list[tuple[int, int]] = []
        # Detached aliases of the weights the copy was built from: they keep that storage alive, so a weight
        # at the same data pointer is the same storage, and its version counter tells whether it changed.
        self._sources: list[torch.Tensor] = []

    def __call__(self) -> torch.Tensor | Int8Weight:
        """The stacked weight (sum of out_features, in_features), or its int8 form (see the class docstring)."""
        # _parameters, not .weight: nn.Module.__getattr__ costs about a microsecond, and this runs for every
        # matmul of a decode step.
        weights = [layer._parameters["weight"] for layer in self.linears]
        if torch.is_grad_enabled():
            self._stacked, self._key, self._sources = None, [], []
            return _joined(weights)
        try:
            key = [(weight.data_ptr(), weight._version) for weight in weights]
        except RuntimeError:  # inference tensors keep no version counter, so a copy of them could go stale
            return self._build(weights)  # (in int8 that quantizes on every call: load models outside inference_mode)
        if key != self._key or isinstance(self._stacked, Int8Weight) != self.int8:
            self._sources = [weight.detach() for weight in weights]
            self._stacked, self._key = self._build(self._sources), key
        return self._stacked

    def _build(self, weights: list[torch.Tensor]) -> torch.Tensor | Int8Weight:
        stacked = _joined(weights)
        return Int8Weight(stacked) if self.int8 else stacked


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary positions, optionally reading and filling a KV cache."""

    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.q_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.o_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.qkv_weight = StackedWeight(self.q_proj, self.k_proj, self.v_proj)  # (3C, C)
        self.o_weight = StackedWeight(self.o_proj)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Attend causally over whole sequences ``x`` (B, T, C) from position 0; ``cos``/``sin`` (T, 1, 1, hd)."""
        B, T, C = x.size()
        qkv = linear(x, self.qkv_weight()).view(B, T, 3, self.n_head, self.head_dim)  # one matmul for q, k, v
        return self.resid_dropout(linear(self._attend(qkv, cos, sin, None, None), self.o_weight()))

    def forward_parts(self, x: torch.Tensor, parts: Sequence[StepPart]) -> torch.Tensor:
        """Attend the new tokens (N, C) of one or more batches, each over its own KV cache (decoding).

        The projections run once over all N tokens; attention runs part by part.
        """
        qkv = linear(x, self.qkv_weight())  # (N, 3C): one matmul for q, k, v
        outputs, start = [], 0
        for part in parts:
            size = part.rows * part.tokens
            view = qkv[start:start + size].view(part.rows, part.tokens, 3, self.n_head, self.head_dim)
            outputs.append(self._attend(view, part.cos, part.sin, part.cache, part.attn_mask).view(size, -1))
            start += size
        y = _joined(outputs)  # (N, C)
        return self.resid_dropout(linear(y, self.o_weight()))

    def _attend(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None,
                attn_mask: torch.Tensor | None) -> torch.Tensor:
        """Rotate, cache and attend the projected ``qkv`` (B, T, 3, nh, hd); returns (B, T, C) before ``o_proj``."""
        B, T = qkv.shape[:2]
        q, k = apply_rotary(qkv[:, :, :2], cos, sin).permute(2, 0, 3, 1, 4)  # each (B, nh, T, hd)
        v = qkv[:, :, 2].transpose(1, 2)  # (B, nh, T, hd)
        if cache is not None:
            k, v = cache.update(self.layer_index, k, v)  # (B, nh, S, hd): every slot filled so far
        # Without an explicit mask the queries are either a whole sequence from position 0 (causal) or one
        # new token that may see every cached key; the caller passes attn_mask in every other case.
        y = attention(
            q, k, v,
            attn_mask=attn_mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=attn_mask is None and T > 1,
        )  # (B, nh, T, hd)
        return y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)


class SwiGLU(nn.Module):
    """Gated feed-forward layer: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self.gate_up_weight = StackedWeight(self.gate_proj, self.up_proj)  # (2I, C)
        self.down_weight = StackedWeight(self.down_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = linear(x, self.gate_up_weight()).chunk(2, dim=-1)  # one matmul, (B, T, I) each
        return self.dropout(linear(F.silu(gate) * up, self.down_weight()))


class Block(nn.Module):
    """Pre-norm residual block: attention then SwiGLU, each behind an RMSNorm."""

    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = Attention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))

    def forward_parts(self, x: torch.Tensor, parts: Sequence[StepPart]) -> torch.Tensor:
        """:meth:`forward` for the new tokens (N, C) of one or more batches, each with its own KV cache."""
        x = x + self.self_attn.forward_parts(self.input_layernorm(x), parts)
        return x + self.mlp(self.post_attention_layernorm(x))


class KVCache:
    """Decoding state of a :class:`GPT`: keys and values per layer, preallocated and written in place.

    ``length`` slots are filled, the same number for every row (a padding token fills a slot too). While
    no padding has been seen, a token's rotary position is its slot; once a padded batch arrives,
    ``key_mask`` (B, max_length) marks the slots that hold real tokens and ``positions`` (B,) holds each
    row's next position, so every row counts its own real tokens.

    Between steps rows can leave (:meth:`reorder`) and join (:meth:`extend`, right-aligned with left padding).
    Continuous batching does both all the time, so neither copies the whole cache: the buffers keep room for
    more rows than the batch holds, the gaps rows leave are filled in place (by the last rows, when the
    index says so, else by moving up the rows after them), and a newcomer is written into the free rows.
    Leading slots that departed rows leave as padding are dropped (:meth:`compact`) once they are a quarter of
    the live ones or room runs out, not on every departure: a copy of the whole cache to drop a slot or two
    costs more than the masked attention over them.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_length: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        # Slots are written before they are read (prefill, then one per step), so the buffers start empty;
        # slots a joining row does not fill are zeroed when it joins.
        shape = (batch_size, n_head, max_length, head_dim)
        self._keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self._values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.rows = batch_size  # the batch: the first ``rows`` rows of the buffers
        self.max_length = max_length
        self.length = 0
        self.key_mask: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.rows

    @property
    def keys(self) -> list[torch.Tensor]:
        """Per layer, the batch rows' keys (B, nh, max_length, hd); slots from ``length`` on are unspecified."""
        return [buffer[:self.rows] for buffer in self._keys]

    @property
    def values(self) -> list[torch.Tensor]:
        """Per layer, the batch rows' values, like :attr:`keys`."""
        return [buffer[:self.rows] for buffer in self._values]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new keys/values (B, nh, T, hd) after the filled slots; return views of all filled slots."""
        end = self.length + k.size(2)
        keys, values = self._keys[layer][:self.rows], self._values[layer][:self.rows]
        keys[:, :, self.length:end] = k
        values[:, :, self.length:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def track_padding(self) -> None:
        """Start per-row bookkeeping: every slot filled so far held a real token."""
        device = self._keys[0].device
        self.key_mask = torch.zeros(self.rows, self.max_length, dtype=torch.bool, device=device)
        self.key_mask[:, :self.length] = True
        self.positions = torch.full((self.rows,), self.length, dtype=torch.long, device=device)

    def reorder(self, index: torch.Tensor) -> None:
        """Select rows of the batch (beam search, finished rows leaving); ``index`` (B',) may repeat or drop rows."""
        order = index.tolist()
        kept = len(order)
        moves = [(new, old) for new, old in enumerate(order) if new != old]
        rows_only_leave = bool(order) and 0 <= min(order) and max(order) < self.rows and len(set(order)) == kept
        fill_from_the_end = all(old >= kept for _, old in moves)
        if rows_only_leave and fill_from_the_end:
            # Rows from past the new end fill the gaps: each moves once (see DecodeBatch: departures).
            for buffer in self._keys + self._values:
                for new, old in moves:
                    buffer[new, :, :self.length] = buffer[old, :, :self.length]
        elif rows_only_leave and all(a < b for a, b in zip(order, order[1:])):
            # The order is kept: the rows after the first gap move up.
            first = moves[0][0]
            for buffer in self._keys + self._values:
                buffer[first:kept, :, :self.length] = buffer[:, :, :self.length].index_select(0, index[first:])
        else:
            self._keys = [buffer[:self.rows].index_select(0, index) for buffer in self._keys]
            self._values = [buffer[:self.rows].index_select(0, index) for buffer in self._values]
        self.rows = kept
        if self.key_mask is not None:
            self.key_mask = self.key_mask.index_select(0, index)
            self.positions = self.positions.index_select(0, index)
            dead = self._leading_padding()
            if dead and 4 * dead >= self.length - dead:
                self.compact()

    def extend(self, other: KVCache) -> None:
        """Append the rows of ``other`` (a cache of the same model), both aligned on their last filled slot.

        The shorter cache is left-padded: its rows move right and the slots before them are masked out, so
        every row keeps its positions and its logits (continuous batching merges a newcomer this way).
        """
        length = max(self.length, other.length)
        rows = self.rows + other.rows
        if self.key_mask is not None or other.key_mask is not None or self.length != other.length:
            for cache in (self, other):
                if cache.key_mask is None:
                    cache.track_padding()
        if rows > self._keys[0].size(0) or length > self.max_length:
            # Room for twice the rows, so a batch that fills up one request at a time reallocates rarely.
            self._reallocate(max(rows, 2 * self.rows), max(self.max_length, length))
        if self.length < length:
            self._shift_right(length - self.length)
        start = length - other.length
        for mine, theirs in zip(self._keys + self._values, other._keys + other._values):
            newcomer = mine[self.rows:rows]
            newcomer[:, :, :start].zero_()  # unused slots must hold finite values: masked weights are 0, 0 * NaN is not
            newcomer[:, :, start:length] = theirs[:other.rows, :, :other.length]
        if self.key_mask is not None:
            joining = self.key_mask.new_zeros(other.rows, self.max_length)
            joining[:, start:length] = other.key_mask[:, :other.length]
            self.key_mask = torch.cat([self.key_mask, joining])
            self.positions = torch.cat([self.positions, other.positions])
        self.rows = rows

    def compact(self) -> None:
        """Drop the leading slots that are padding in every row (left behind by rows that were removed)."""
        dead = self._leading_padding()
        if dead == 0:
            return
        live = self.length - dead
        for buffer in self._keys + self._values:
            view = buffer[:self.rows]
            view[:, :, :live] = view[:, :, dead:self.length].clone()  # the ranges overlap: copy first
        self.key_mask[:, :live] = self.key_mask[:, dead:self.length].clone()
        self.key_mask[:, live:] = False
        self.length = live

    def reserve(self, new_tokens: int) -> None:
        """Make room for ``new_tokens`` more slots: drop leading padding first, allocate more only if still short."""
        if self.length + new_tokens <= self.max_length:
            return
        self.compact()
        if self.length + new_tokens <= self.max_length:
            return
        # Half as much again, so a caller that keeps running short does not copy the cache every step.
        self._reallocate(self._keys[0].size(0), max(self.length + new_tokens, self.max_length * 3 // 2))

    def _leading_padding(self) -> int:
        """How many leading filled slots are padding in every row."""
        if self.key_mask is None:
            return 0
        used = self.key_mask[:, :self.length].any(0)  # (S,)
        return int(used.int().argmax()) if bool(used.any()) else self.length

    def _reallocate(self, capacity: int, max_length: int) -> None:
        """New buffers of ``capacity`` rows and ``max_length`` slots holding the filled slots of the batch."""
        def moved(buffer: torch.Tensor) -> torch.Tensor:
            shape = list(buffer.shape)
            shape[0], shape[2] = capacity, max_length
            out = buffer.new_zeros(shape)
            out[:self.rows, :, :self.length] = buffer[:self.rows, :, :self.length]
            return out

        self._keys = [moved(k) for k in self._keys]
        self._values = [moved(v) for v in self._values]
        if self.key_mask is not None and max_length > self.max_length:
            self.key_mask = torch.cat([self.key_mask, self.key_mask.new_zeros(self.rows, max_length - self.max_length)], 1)
        self.max_length = max_length

    def _shift_right(self, slots: int) -> None:
        """Move every row's filled slots ``slots`` to the right behind masked zero padding (a longer row joins)."""
        end = self.length + slots
        for buffer in self._keys + self._values:
            view = buffer[:self.rows]
            view[:, :, slots:end] = view[:, :, :self.length].clone()  # the ranges overlap: copy first
            view[:, :, :slots].zero_()
        self.key_mask[:, slots:end] = self.key_mask[:, :self.length].clone()
        self.key_mask[:, :slots] = False
        self.length = end


@dataclass(frozen=True)
class StepPart:
    """One call's share of a :meth:`GPT.step_many` pass: the shape of its new tokens (``rows`` x ``tokens``),
    their rotary tables and attention mask, its cache, and the cache length once they are in."""

    rows: int
    tokens: int
    cos: torch.Tensor
    sin: torch.Tensor
    cache: KVCache
    attn_mask: torch.Tensor | None
    end: int


def _joined(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(tensors)``, without the copy when there is one (a plain :meth:`GPT.step` is one part)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


class GPT(nn.Module):
    """The decoder-only language model; see the module docstring and docs/architecture.md "Models"."""

    model_type: ClassVar[str] = "aigc-gpt"

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(Block(config, index) for index in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.lm_head_weight = StackedWeight(self.lm_head)
        # Precomputed once so a decode step only slices them; not saved (they follow from the config).
        # They follow the model's dtype (.to(torch.bfloat16) casts them like HF Llama casts its tables).
        rope_cos, rope_sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
        self.register_buffer("rope_cos", rope_cos, persistent=False)  # (block_size, hd)
        self.register_buffer("rope_sin", rope_sin, persistent=False)  # (block_size, hd), signed (rotary_tables)
        self.apply(self._init_weights)
        # GPT-2's scaled init: each residual branch adds to the stream, so shrink the projections into it.
        for name, parameter in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied embedding counts once)."""
        return sum(parameter.numel() for parameter in self.parameters())

    def set_quantization(self, quantization: str) -> None:
        """Run the matmuls of inference (no autograd) in ``"int8"``, or back in the parameters' dtype (``"none"``).

        The fp32 parameters stay as they are, so training, ``state_dict`` and the export are unaffected, and
        the int8 copies (a quarter of the weights' bytes) follow any change to them. See
        :mod:`aigc_studio.models.quantization`.

        Raises:
            AigcError: an unknown quantization, or int8 for a model that is not fp32 on the CPU.
        """
        check_quantization(quantization, self.embed_tokens.weight)
        for stacked in self._stacked_weights():
            stacked.int8 = quantization == "int8"

    def _stacked_weights(self) -> list[StackedWeight]:
        weights = [self.lm_head_weight]
        for layer in self.layers:
            weights += [layer.self_attn.qkv_weight, layer.self_attn.o_weight, layer.mlp.gate_up_weight, layer.mlp.down_weight]
        return weights

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) for every position of ``input_ids`` (B, T), and the mean cross-entropy over
        ``targets`` != -100 when targets are given (else None).

        Raises:
            AigcError: the sequence is longer than ``block_size``.
        """
        B, T = input_ids.size()
        if T > self.config.block_size:
            raise AigcError(f"sequence of {T} tokens is longer than block_size={self.config.block_size}; use shorter inputs",
                            param="block_size")
        x = self.dropout(self.embed_tokens(input_ids))  # (B, T, C)
        cos, sin = self.rope_cos[:T, None, None], self.rope_sin[:T, None, None]  # (T, 1, 1, hd)
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = linear(self.norm(x), self.lm_head_weight())  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T), ignore_index=-100)
        return logits, loss

    def init_state(self, batch_size: int, max_length: int, device: torch.device | str | None = None) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` rows of up to ``max_length`` tokens (prompt included).

        Raises:
            AigcError: ``max_length`` is not in 1..block_size.
        """
        if not 0 < max_length <= self.config.block_size:
            raise AigcError(
                f"max_length={max_length} is outside 1..{self.config.block_size} (the model's block_size); "
                "shorten the prompt or max_tokens",
                param="max_length",
            )
        weight = self.embed_tokens.weight
        return KVCache(self.config.n_layer, batch_size, self.config.n_head, max_length, self.config.head_dim,
                       device=weight.device if device is None else torch.device(device), dtype=weight.dtype)

    @torch.no_grad()
    def step(self, input_ids: torch.Tensor, state: KVCache, attention_mask: torch.Tensor | None = None, *,
             last_only: bool = False) -> torch.Tensor:
        """Consume new tokens (B, T) after those already in ``state``, update it in place, return logits (B, T, V).

        Args:
            input_ids: the prompt at prefill (left-padded for a batch), then one token per row.
            state: the cache from :meth:`init_state`.
            attention_mask: (B, T), 1 for real tokens and 0 for padding; None means all real.
            last_only: return the last position's logits only, (B, 1, V): a prefill that only samples what
                comes next skips the output layer for the rest of the prompt.

        Raises:
            AigcError: the new tokens do not fit in the cache.
        """
        return self.step_many([(input_ids, state, attention_mask)], last_only=last_only)[0]

    @torch.no_grad()
    def step_many(self, steps: Sequence[tuple[torch.Tensor, KVCache, torch.Tensor | None]], *,
                  last_only: bool = False) -> list[torch.Tensor]:
        """Several :meth:`step` calls, each ``(input_ids, state, attention_mask)``, in one pass through the model.

        Every layer's projections and feed-forward run once over the new tokens of all of them, and attention
        runs for each against its own state: a batch's decode step and a newcomer's prefill cost one pass,
        about the price of the longer one alone, instead of two (continuous batching admits requests this
        way). Each result equals its own :meth:`step` up to float rounding.

        Returns:
            The logits of each call, in order, as :meth:`step` returns them.

        Raises:
            AigcError: new tokens that do not fit in their state.
        """
        parts = [self._step_part(input_ids, state, attention_mask) for input_ids, state, attention_mask in steps]
        x = self.embed_tokens(_joined([input_ids.reshape(-1) for input_ids, _, _ in steps]))  # (N, C)
        for layer in self.layers:
            x = layer.forward_parts(x, parts)
        kept, start = [], 0
        for part in parts:
            part.cache.length = part.end
            tokens = x[start:start + part.rows * part.tokens].view(part.rows, part.tokens, -1)
            kept.append(tokens[:, -1:] if last_only else tokens)
            start += part.rows * part.tokens
        logits = linear(self.norm(_joined([tokens.reshape(-1, tokens.size(-1)) for tokens in kept])),
                        self.lm_head_weight())  # (sum of kept tokens, V)
        sizes = [tokens.size(0) * tokens.size(1) for tokens in kept]
        return [chunk.view(tokens.size(0), tokens.size(1), -1) for chunk, tokens in zip(logits.split(sizes), kept)]

    def _step_part(self, input_ids: torch.Tensor, state: KVCache, attention_mask: torch.Tensor | None) -> StepPart:
        """Check that the tokens fit, record their padding in ``state``, and make their rotary tables and mask."""
        B, T = input_ids.size()
        start, end = state.length, state.length + T
        if end > state.max_length:
            raise AigcError(f"decoding past max_length={state.max_length} of the state; start it with a larger max_length",
                            param="max_length")
        if attention_mask is not None and state.key_mask is None and not bool(attention_mask.all()):
            state.track_padding()
        device = input_ids.device
        if state.key_mask is None:
            # Every slot holds a real token: positions are slot numbers, shared by all rows.
            cos, sin = self.rope_cos[start:end, None, None], self.rope_sin[start:end, None, None]  # (T, 1, 1, hd)
            attn_mask = None if start == 0 or T == 1 else self._causal_mask(start, end, device)[None, None]
        else:
            real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
            state.key_mask[:, start:end] = real
            positions = (state.positions[:, None] + real.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
            state.positions += real.sum(1)
            cos, sin = self.rope_cos[positions][:, :, None, None], self.rope_sin[positions][:, :, None, None]  # (B, T, 1, 1, hd)
            # A query sees earlier real tokens, and always its own slot so a padding query never has an
            # all-masked row: some attention kernels (and older PyTorch) return NaN there, and NaN in a
            # padding slot's cached values would leak into real rows through 0 * NaN.
            own_slot = torch.arange(end, device=device)[None, :] == torch.arange(start, end, device=device)[:, None]
            attn_mask = (self._causal_mask(start, end, device) & state.key_mask[:, None, :end]) | own_slot  # (B, T, S)
            attn_mask = attn_mask.unsqueeze(1)  # (B, 1, T, S)
        return StepPart(B, T, cos, sin, state, attn_mask, end)

    @staticmethod
    def _causal_mask(start: int, end: int, device: torch.device) -> torch.Tensor:
        """(T, S) bool: query slot start+i may see key slots 0..start+i."""
        return torch.ones(end - start, end, dtype=torch.bool, device=device).tril(diagonal=start)


def llama_config(config: GPTConfig) -> dict[str, Any]:
    """The Hugging Face ``LlamaForCausalLM`` ``config.json`` equivalent to ``config``.

    Both the legacy ``rope_theta`` key and transformers 5's ``rope_parameters`` are written, so old and new
    loaders read the same rotary base.
    """
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_head,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": float(config.rope_theta),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(config.rope_theta)},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": config.tie_embeddings,
        "pad_token_id": SPECIAL_TOKENS.index(PAD),
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": SPECIAL_TOKENS.index(EOS),
    }


def llama_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The weights of ``model`` under ``LlamaForCausalLM`` names.

    Our modules already carry Llama's names, so the body moves under ``model.`` and ``lm_head`` stays; a
    tied head is left out because Llama re-ties it to ``model.embed_tokens.weight`` when it loads.
    """
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("lm_head."):
            if not model.config.tie_embeddings:
                tensors[name] = tensor
        else:
            tensors[f"model.{name}"] = tensor
    return tensors
