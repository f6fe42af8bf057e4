"""The keyed green-list text watermark of Kirchenbauer et al. (2023), "A Watermark for Large Language Models".

Generation (:class:`WatermarkProcessor`, a logits processor, the paper's Algorithm 2 "soft red list"):

1. the previous ``context_width`` tokens and a secret key select a *green list* of ``gamma * V`` token ids;
2. ``delta`` is added to the logits of the green tokens before the next token is sampled, so a watermarked
   text holds many more green tokens than the ``gamma`` fraction any other text holds by chance.

Detection (:func:`detect_watermark`, :func:`detect_text`) needs only the text's tokens and the key: it counts
the green tokens and runs the one-proportion z-test of the paper's section 4,
``z = (green - gamma * T) / sqrt(T * gamma * (1 - gamma))``, with the p-value from the normal tail. Repeated
(context, token) pairs are scored once (the paper's advice; it keeps repetitive human text from drifting up)
and special tokens are not scored.

How a green list is made, and why:

* each token ``t`` gets a keyed 64-bit value ``s(t)`` = the first 8 bytes of HMAC-SHA256(key, t): without
  the key nobody can tell which tokens are green, and the key never leaves the machine (:attr:`WatermarkConfig.key_id`
  is a public fingerprint that names it);
* the seed of a context of ``h`` previous tokens is ``min(s(t) for t in the context)``, the "min-hash" scheme
  of Kirchenbauer et al. (2023b, "On the Reliability of Watermarks for LLMs"): one edited context token only
  moves the seed when it held the minimum, and with ``h = 1`` it is simply the previous token's value;
* the seed orders the vocabulary by SplitMix64(seed, token id) and the first ``round(gamma * V)`` ids are
  green: plain 64-bit integer arithmetic, so the lists are the same on every machine, device and library
  version (a permutation drawn from ``torch.Generator`` or numpy's generators is not promised to stay the same
  across releases, and a key must keep detecting texts written years ago).

Green lists depend on the vocabulary size ``V``: detection must use the model's ``config.vocab_size``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aigc_studio.data.tokenizer import SPECIAL_TOKENS, TextTokenizer
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_with, read_jsonl, require_file, write_jsonl

if TYPE_CHECKING:
    from aigc_studio.settings import WatermarkSettings

KEY_BYTES = 32  # a fresh key: 256 random bits, the HMAC-SHA256 block's natural key size
MIN_KEY_BYTES = 16  # shorter keys could be guessed by trying them all against one watermarked text
KEY_ID_DOMAIN = b"aigc-watermark-key-id"
TOKEN_DOMAIN = b"aigc-watermark-token"
DEFAULT_Z_THRESHOLD = 4.0  # p ~ 3e-5 per text: the paper's choice
# Distinct contexts whose green list is kept, as bits (V / 8 bytes each: 1 KiB for V = 8192); with min-hash
# there are at most V distinct seeds, so for the project's vocabularies each list is computed once per process.
GREEN_LIST_CACHE_SIZE = 8192
# Green lists kept ready to add to logits during generation, as float32 rows (4V bytes each: 8 MiB in all for
# V = 2048, 32 MiB for 8192); the frequent previous tokens stay in it, the rest fall back to the bits above.
GREEN_BIAS_CACHE_SIZE = 1024
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class WatermarkConfig:
    """The secret key and the watermark's strength; generation and detection must use the same values.

    Attributes:
        key: the secret (at least 16 bytes; :func:`load_or_create_key` makes 32 random ones). Never printed.
        gamma: the fraction of the vocabulary that is green at each step (0 < gamma < 1).
        delta: added to the green tokens' logits; larger marks more strongly and costs more quality (>= 0).
        context_width: how many previous tokens seed the green list (min-hash over them, >= 1).
        z_threshold: the detector calls a text watermarked when its z-score reaches this (> 0).
    """

    key: bytes = field(repr=False)
    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1
    z_threshold: float = DEFAULT_Z_THRESHOLD

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) < MIN_KEY_BYTES:
            raise AigcError(f"watermark key must be at least {MIN_KEY_BYTES} bytes; make one with load_or_create_key",
                            param="key")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0 < self.gamma < 1:
            raise AigcError(f"watermark gamma={self.gamma!r} must be in (0, 1), e.g. 0.25", param="gamma")
        if isinstance(self.delta, bool) or not isinstance(self.delta, (int, float)) or not 0 <= self.delta < math.inf:
            raise AigcError(f"watermark delta={self.delta!r} must be a finite number >= 0, e.g. 2.0", param="delta")
        if isinstance(self.context_width, bool) or not isinstance(self.context_width, int) or self.context_width < 1:
            raise AigcError(f"watermark context_width={self.context_width!r} must be an integer >= 1", param="context_width")
        if isinstance(self.z_threshold, bool) or not isinstance(self.z_threshold, (int, float)) or not 0 < self.z_threshold < math.inf:
            raise AigcError(f"watermark z_threshold={self.z_threshold!r} must be a number > 0, e.g. 4.0", param="z_threshold")

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key (16 hex digits) for provenance records; it reveals nothing of the key."""
        return hashlib.sha256(KEY_ID_DOMAIN + self.key).hexdigest()[:16]

    @classmethod
    def from_key_file(cls, path: str | Path, *, create: bool = False, **values: Any) -> WatermarkConfig:
        """A config whose key is read from ``path`` (made there first when ``create`` and it is missing).

        Raises:
            AigcError: the file is missing (and ``create`` is False), unreadable or holds no valid key; or a
                bad value in ``values``.
        """
        key = load_or_create_key(path) if create else load_key(path)
        return cls(key=key, **values)

    @classmethod
    def from_settings(cls, settings: WatermarkSettings, *, create: bool = False) -> WatermarkConfig:
        """The config of an installation (``[watermark]`` in aigc.toml, ``AIGC_WATERMARK__*``)."""
        return cls.from_key_file(settings.key_file, create=create, gamma=settings.gamma, delta=settings.delta,
                                 z_threshold=settings.z_threshold)

    def describe(self) -> dict[str, Any]:
        """The public settings (key id, not key): what provenance records and ``SamplingParams.to_dict`` show."""
        return {"key_id": self.key_id, "gamma": self.gamma, "delta": self.delta, "context_width": self.context_width}


# -- keys ---------------------------------------------------------------------------------------------------


def load_key(path: str | Path) -> bytes:
    """Read a key file: the key as hexadecimal text on one line.

    Raises:
        AigcError: the file is missing or does not hold at least 16 bytes of hexadecimal key.
    """
    path = require_file(path, "watermark key file")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise AigcError(f"watermark key file {path} does not hold a hexadecimal key of at least {MIN_KEY_BYTES} bytes; "
                        "point to the key file used when generating, or delete it to make a new key", param="key_file")
    return key


def load_or_create_key(path: str | Path) -> bytes:
    """The key in ``path``; a new random 32-byte key is written there first (owner-only, 0600) when it is missing.

    Texts watermarked with a key are only detected with the same key, so keep the file (and a copy of it)
    wherever detection must run.

    Raises:
        AigcError: the file exists but holds no valid key.
    """
    path = Path(path)
    if not path.exists():
        key = secrets.token_bytes(KEY_BYTES)
        # Owner-only: whoever reads the key can both forge and strip the watermark.
        atomic_write_with(path, lambda tmp: tmp.write_text(key.hex() + "\n", encoding="ascii"), mode=0o600)
    # Read back rather than return `key`: if another process created the file at the same moment, both
    # then use the key that is on disk.
    return load_key(path)


# -- green lists --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def _token_value(key: bytes, token_id: int) -> int:
    """s(t): the keyed 64-bit value of one token (HMAC-SHA256, first 8 bytes)."""
    digest = hmac.new(key, TOKEN_DOMAIN + token_id.to_bytes(8, "little"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "little")


def context_seed(key: bytes, context: Sequence[int]) -> int:
    """The green-list seed of a context of previous tokens: the smallest keyed token value (min-hash)."""
    return min(_token_value(key, int(token_id)) for token_id in context)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 values (Steele et al. 2014): a fixed bijective bit mixer."""
    with np.errstate(over="ignore"):  # multiplication modulo 2**64 is the point
        z = values
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def green_list_size(gamma: float, vocab_size: int) -> int:
    """How many ids are green: ``round(gamma * V)``, at least 1 and at most V - 1."""
    return min(max(round(gamma * vocab_size), 1), vocab_size - 1)


@functools.lru_cache(maxsize=GREEN_LIST_CACHE_SIZE)
def _green_bits(seed: int, vocab_size: int, size: int) -> np.ndarray:
    """The green list of ``seed`` packed 8 ids to a byte (np.packbits order; read-only, shared by the cache)."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        counters = np.uint64(seed) + (np.arange(1, vocab_size + 1, dtype=np.uint64) * golden)
    order = np.argsort(_splitmix64(counters), kind="stable")
    mask = np.zeros(vocab_size, dtype=bool)
    mask[order[:size]] = True
    bits = np.packbits(mask)
    bits.flags.writeable = False
    return bits


def green_mask(seed: int, vocab_size: int, size: int) -> np.ndarray:
    """(V,) bool: True on the ``size`` green ids of ``seed``."""
    return np.unpackbits(_green_bits(seed, vocab_size, size), count=vocab_size).view(bool)


@functools.lru_cache(maxsize=GREEN_BIAS_CACHE_SIZE)
def _green_bias(seed: int, vocab_size: int, size: int, delta: float) -> torch.Tensor:
    """(V,) float32: ``delta`` on the green ids of ``seed``, 0 elsewhere (shared by the cache: never write to it)."""
    return delta * torch.from_numpy(green_mask(seed, vocab_size, size)).float()


def _is_green(seed: int, token_id: int, vocab_size: int, size: int) -> bool:
    bits = _green_bits(seed, vocab_size, size)
    return bool(bits[token_id >> 3] >> (7 - (token_id & 7)) & 1)  # packbits puts the first id in the high bit


def green_list(config: WatermarkConfig, context: Sequence[int], vocab_size: int) -> np.ndarray:
    """The sorted green token ids after ``context`` (its last ``context_width`` tokens are used)."""
    if len(context) < config.context_width:
        raise AigcError(f"a context of {len(context)} tokens is shorter than context_width={config.context_width}")
    seed = context_seed(config.key, context[len(context) - config.context_width:])
    return np.flatnonzero(green_mask(seed, vocab_size, green_list_size(config.gamma, vocab_size)))


# -- generation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatermarkProcessor:
    """Adds ``delta`` to the green tokens' logits: a logits processor ``(logits (B, V), token_ids (B, T)) -> logits``.

    ``token_ids`` holds each row's tokens so far (generation/logits_processors.py), of which only the last
    ``context_width`` are read: the tokens just before the one being chosen (the prompt's last tokens at the
    first step). Run it after the penalties and before the temperature, as the paper does;
    :func:`~aigc_studio.generation.logits_processors.build_logits_processors` puts it there when
    ``SamplingParams.watermark`` is set. Two processors with the same key, strength and vocabulary are equal,
    so the batched sampler runs the rows of every request marked with one key through one call.
    """

    config: WatermarkConfig
    vocab_size: int

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise AigcError(f"vocab_size={self.vocab_size} is too small to watermark; it needs at least 2 tokens")

    @property
    def context_width(self) -> int:
        """How many of each row's last tokens seed its green list."""
        return self.config.context_width

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        if logits.size(-1) != self.vocab_size:
            raise ValueError(f"logits have {logits.size(-1)} columns but the watermark was built for {self.vocab_size}")
        width = self.config.context_width
        if token_ids.size(1) < width:  # a prompt shorter than the context: nothing to seed from yet
            return logits
        # Hashing runs on the CPU: one small copy of the contexts (B, h) in, one (B, V) bias out per step; the
        # biases themselves come from the bounded cache, so a step costs a lookup per row and one addition.
        green_size = green_list_size(self.config.gamma, self.vocab_size)
        contexts = token_ids[:, token_ids.size(1) - width:].tolist()
        biases = [_green_bias(context_seed(self.config.key, context), self.vocab_size, green_size, self.config.delta)
                  for context in contexts]
        bias = biases[0][None] if len(biases) == 1 else torch.stack(biases)  # (B, V)
        return logits + bias.to(device=logits.device, dtype=logits.dtype)


# -- detection ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatermarkDetection:
    """The detector's verdict on one text.

    Attributes:
        z: the z-score of the green count; about 0 (within +-3) for text written without the key.
        p_value: the chance that text without the watermark scores at least ``z`` (normal tail).
        num_tokens_scored: tokens counted (after the first ``context_width``, repeats and special tokens left out).
        num_green: how many of them are green.
        watermarked: ``z >= z_threshold``.
    """

    z: float
    p_value: float
    num_tokens_scored: int
    num_green: int
    watermarked: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields ``aigc watermark detect`` adds to each line."""
        return {"z": round(self.z, 4), "p_value": self.p_value, "watermarked": self.watermarked,
                "num_tokens_scored": self.num_tokens_scored, "num_green": self.num_green}


def z_score(num_green: int, num_scored: int, gamma: float) -> float:
    """The one-proportion z-test of the green count against the fraction ``gamma`` (0 when nothing is scored)."""
    if num_scored == 0:
        return 0.0
    return (num_green - gamma * num_scored) / math.sqrt(num_scored * gamma * (1 - gamma))


def p_value(z: float) -> float:
    """One-sided normal tail probability P(Z >= z)."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def detect_watermark(
    token_ids: Sequence[int],
    config: WatermarkConfig,
    vocab_size: int,
    *,
    ignore_ids: Collection[int] = range(len(SPECIAL_TOKENS)),
    threshold: float | None = None,
) -> WatermarkDetection:
    """Test whether ``token_ids`` carry the watermark of ``config.key``.

    Args:
        token_ids: the text's tokens; the first ``context_width`` only seed the next green list. Pass the
            prompt's last tokens in front to score the first generated tokens too.
        config: the key, gamma and context width used at generation (delta plays no part).
        vocab_size: the model's vocabulary size (``config.vocab_size`` of the model directory).
        ignore_ids: tokens never scored (the project's special tokens by default).
        threshold: the z-score to call the text watermarked; None uses ``config.z_threshold``.

    Returns:
        The z-score, p-value, counts and verdict; a text too short to score gets z = 0, p = 1.

    Raises:
        AigcError: a token id outside the vocabulary.
    """
    ids = [int(token_id) for token_id in token_ids]
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = next(token_id for token_id in ids if not 0 <= token_id < vocab_size)
        raise AigcError(f"token id {bad} is outside the vocabulary of {vocab_size}; tokenize with the model's own "
                        "tokenizer and pass the model's vocab_size")
    size = green_list_size(config.gamma, vocab_size)
    gamma = size / vocab_size  # the exact green fraction (equals config.gamma when gamma * V is whole)
    width = config.context_width
    seen: set[tuple[int, ...]] = set()
    scored = green = 0
    for position in range(width, len(ids)):
        token_id = ids[position]
        pair = tuple(ids[position - width:position + 1])
        if token_id in ignore_ids or pair in seen:
            continue
        seen.add(pair)
        seed = context_seed(config.key, pair[:-1])
        scored += 1
        green += _is_green(seed, token_id, vocab_size, size)
    z = z_score(green, scored, gamma)
    cutoff = config.z_threshold if threshold is None else threshold
    # Nothing scored is no evidence at all: p = 1, not the 0.5 that z = 0 would give.
    return WatermarkDetection(z=z, p_value=p_value(z) if scored else 1.0, num_tokens_scored=scored, num_green=green,
                              watermarked=scored > 0 and z >= cutoff)


def detect_text(
    text: str,
    tokenizer: TextTokenizer,
    config: WatermarkConfig,
    *,
    vocab_size: int | None = None,
    threshold: float | None = None,
) -> WatermarkDetection:
    """Tokenize ``text`` with the model's tokenizer and run :func:`detect_watermark` on it.

    Args:
        vocab_size: the model's vocabulary size; None uses the tokenizer's (the same for models trained here).

    Raises:
        AigcError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise AigcError(f"text to check must be a string, got {type(text).__name__}", param="text")
    return detect_watermark(tokenizer.encode(text), config, vocab_size or tokenizer.vocab_size, threshold=threshold)


@dataclass(frozen=True)
class WatermarkFileReport:
    """Counts from :func:`detect_jsonl`."""

    rows: int
    watermarked: int
    output: Path


def detect_jsonl(
    input_path: str | Path,
    output_path: str | Path,
    tokenizer: TextTokenizer,
    config: WatermarkConfig,
    *,
    vocab_size: int | None = None,
    threshold: float | None = None,
) -> WatermarkFileReport:
    """Check every ``{"id", "text"}`` line of a JSON Lines file and write the lines back with the verdict.

    Each output line is the input object plus ``"z"``, ``"p_value"``, ``"watermarked"``, ``"num_tokens_scored"``
    and ``"num_green"``; the output is written atomically, and only once every line has been read.

    Raises:
        AigcError: the input is missing or malformed, or a line has no string ``"text"`` (with its line number).
    """
    rows = []
    for line_number, row in read_jsonl(input_path):
        if not isinstance(row.get("text"), str):
            raise AigcError(f'{input_path}:{line_number}: no string field "text"; each line must look like '
                            '{"id": 1, "text": "..."}')
        rows.append(row)
    results = [detect_text(row["text"], tokenizer, config, vocab_size=vocab_size, threshold=threshold) for row in rows]
    output = write_jsonl(output_path, [{**row, **result.to_dict()} for row, result in zip(rows, results)])
    return WatermarkFileReport(rows=len(rows), watermarked=sum(result.watermarked for result in results), output=output)
