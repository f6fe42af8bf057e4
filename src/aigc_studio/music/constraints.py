"""Constrained decoding for music: every bar exactly the meter's length, ``bars`` bars, ending on the tonic.

:class:`BarConstraint` is a logits processor (``(logits (B, V), token_ids (B, T)) -> logits``, see
:mod:`aigc_studio.generation.logits_processors`) passed as an ``extra`` processor, so it runs after the
penalties and before temperature and top-k/top-p, and the sampler can only draw what it allows. From each
row's completion so far (the columns after the prompt) it derives, with whole-tensor operations:

* ``bars_done`` = the number of ``|`` tokens; ``used`` = the units of the notes since the last ``|`` (every
  finished bar is exact, so ``used = total units - bars_done * bar_units``);
* while ``bars_done < bars``: a note or rest is allowed only if it fits the rest of the bar
  (``units <= bar_units - used``) and leaves a remainder that the vocabulary's note lengths can still fill;
  ``|`` is allowed only (and then forced) when the bar is full; in the last bar the note that fills it must
  be the tonic (any octave), a rest may not fill it, and an earlier note must leave a remainder that can
  still end on a tonic (both remainders come from a small table computed once per request);
* when ``bars_done == bars``: only ``<eos>``.

Everything else (special tokens, header words such as ``major`` or ``6/8``) is never allowed. If earlier
processors had already ruled out every allowed token of a row (say, a repetition rule on the forced ``|``),
the row falls back to a uniform choice among the allowed tokens, so decoding can never get stuck. A tune
therefore needs at most ``bars * (bar_units + 1) + 1`` new tokens (:func:`max_new_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aigc_studio.data.tokenizer import TextTokenizer
from aigc_studio.errors import AigcError
from aigc_studio.music.tokens import BAR, MODE_TONIC, Meter, check_mode, read_note_token

MAX_BARS = 64


def max_new_tokens(bars: int, meter: Meter) -> int:
    """The most tokens a constrained tune of ``bars`` bars can take: every note a sixteenth, the bar lines, ``<eos>``."""
    return bars * (meter.bar_units + 1) + 1


def check_bars(bars: int) -> int:
    """``bars``, checked to be in 1..:data:`MAX_BARS`. Raises AigcError otherwise."""
    if isinstance(bars, bool) or not isinstance(bars, int) or not 1 <= bars <= MAX_BARS:
        raise AigcError(f"--bars must be an integer from 1 to {MAX_BARS} (a jingle is 4-32 bars), got {bars}", param="bars")
    return bars


@dataclass
class BarConstraint:
    """The bar-length, bar-count and final-tonic rule for one request (see the module docstring).

    Args:
        tokenizer: the model's tokenizer (word level: one token per note, rest or bar line).
        meter: the time signature.
        bars: how many bars the tune has.
        mode: ``major`` or ``minor``: the tonic is C or A (the training keys).
        prompt_length: width of the left-padded prompt at the start of ``token_ids``.
    """

    tokenizer: TextTokenizer
    meter: Meter
    bars: int
    mode: str
    prompt_length: int
    _units: torch.Tensor = field(init=False, repr=False)  # (V,) units of each note/rest token, 0 elsewhere
    _is_event: torch.Tensor = field(init=False, repr=False)  # (V,) True for note and rest tokens
    _is_tonic: torch.Tensor = field(init=False, repr=False)  # (V,) True for notes on the tonic
    _fillable: torch.Tensor = field(init=False, repr=False)  # (bar_units + 1,) a remainder events can fill exactly
    _ends_on_tonic: torch.Tensor = field(init=False, repr=False)  # (bar_units + 1,) ... ending with a tonic note
    _bar_id: int = field(init=False)

    def __post_init__(self) -> None:
        check_bars(self.bars)
        tonic = MODE_TONIC[check_mode(self.mode)]
        vocab = self.tokenizer.tokenizer.get_vocab()
        size = self.tokenizer.vocab_size
        units, is_event, is_tonic = torch.zeros(size, dtype=torch.long), torch.zeros(size, dtype=torch.bool), torch.zeros(size, dtype=torch.bool)
        for token, token_id in vocab.items():
            event = read_note_token(token)
            if event is None:
                continue
            pitch, length = event
            units[token_id], is_event[token_id] = length, True
            is_tonic[token_id] = pitch is not None and pitch % 12 == tonic
        if BAR not in vocab or not is_event.any():
            raise AigcError("this model's tokenizer has no music tokens (notes and '|'); compose with a model trained on "
                            "`aigc data prepare-music` data", param="model")
        bar_length = self.meter.bar_units
        lengths = sorted({int(u) for u in units[is_event].tolist()})
        tonic_lengths = sorted({int(u) for u in units[is_tonic].tolist()})
        fillable = [True] + [False] * bar_length  # subset-sum table over the note lengths the model knows
        for remainder in range(1, bar_length + 1):
            fillable[remainder] = any(length <= remainder and fillable[remainder - length] for length in lengths)
        ends_on_tonic = [False] + [any(length <= remainder and fillable[remainder - length] for length in tonic_lengths)
                                   for remainder in range(1, bar_length + 1)]
        if not fillable[bar_length] or not ends_on_tonic[bar_length]:
            raise AigcError(f"this model's note lengths cannot fill a {self.meter} bar ending on the tonic; "
                            "use a meter it was trained on (see its music.json)", param="meter")
        self._units, self._is_event, self._is_tonic, self._bar_id = units, is_event, is_tonic, vocab[BAR]
        self._fillable, self._ends_on_tonic = torch.tensor(fillable), torch.tensor(ends_on_tonic)

    def allowed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(B, V) boolean: the tokens each row may take next."""
        units, is_event, is_tonic, fillable, ends_on_tonic = (
            t.to(token_ids.device) for t in (self._units, self._is_event, self._is_tonic, self._fillable, self._ends_on_tonic))
        completion = token_ids[:, self.prompt_length:]  # (B, t)
        bar_length = self.meter.bar_units
        bars_done = (completion == self._bar_id).sum(dim=1)  # (B,)
        used = units[completion].sum(dim=1) - bars_done * bar_length  # (B,) units in the open bar
        room = (bar_length - used)[:, None]  # (B, 1)
        remainder = room - units[None, :]  # (B, V): what would be left of the bar after each token
        fits = is_event[None, :] & (remainder >= 0)
        left = remainder.clamp(min=0)
        in_last_bar = (bars_done == self.bars - 1)[:, None]
        # In the last bar the token that fills it must be a tonic note, and any earlier one must leave a
        # remainder that can still end on the tonic; in other bars the remainder must just be fillable.
        last_ok = torch.where(left == 0, is_tonic[None, :].expand_as(left), ends_on_tonic[left])
        fits &= torch.where(in_last_bar, last_ok, fillable[left])
        open_bar = (bars_done < self.bars)[:, None]
        allowed = fits & open_bar & (room > 0)
        allowed[:, self._bar_id] = (room[:, 0] == 0) & open_bar[:, 0]
        allowed[:, self.tokenizer.eos_id] = bars_done >= self.bars
        return allowed

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        allowed = self.allowed(token_ids)
        constrained = logits.masked_fill(~allowed, float("-inf"))
        stuck = torch.isinf(constrained).all(dim=1, keepdim=True)  # earlier processors removed every allowed token
        fallback = torch.zeros_like(logits).masked_fill(~allowed, float("-inf"))
        return torch.where(stuck, fallback, constrained)
