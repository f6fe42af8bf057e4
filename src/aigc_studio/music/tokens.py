"""The symbolic music format: a monophonic tune as whitespace-separated word tokens, and back to music21.

A training record is ``{"source": header, "target": tokens}`` like every conditional text task:

* **source** (the conditioning header): ``"<mode> <meter> <style>"``, e.g. ``"major 6/8 irish"``;
* **target**: one token per note or rest, ``|`` after every bar, e.g. ``"E5_2 D5_2 C5_2 | G4_6 |"``.

A note token is ``<pitch name><octave>_<units>``; a rest is ``r_<units>``; one unit is a sixteenth note
(0.25 quarter lengths), and only the durations of :data:`DURATIONS` exist, so a tokenizer with one word per
token knows every duration and the bar constraint can read a token's length from a table.

Every tune is stored transposed to C major or A minor (the brief's "C/A-minor-relative" normalisation): a
model learns each mode's scale once, and :func:`transpose_shift` moves a composed tune to the requested key
exactly, so the key is a rendering choice rather than a conditioning token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aigc_studio.errors import AigcError

UNITS_PER_QUARTER = 4  # one unit = a sixteenth note
# Plain, dotted and doubled lengths in sixteenths; a tune with any other note length is not used.
DURATIONS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24)
BAR = "|"
REST = "r"
PITCH_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES: tuple[str, ...] = ("major", "minor")
# The training key of each mode (pitch class of the tonic): C major and A minor.
MODE_TONIC: dict[str, int] = {"major": 0, "minor": 9}
# Scale degrees (pitch classes relative to the tonic) of each mode; minor counts the harmonic/melodic
# raised 6th and 7th as in the key, since folk and chorale melodies use them constantly.
MODE_SCALE: dict[str, frozenset[int]] = {
    "major": frozenset({0, 2, 4, 5, 7, 9, 11}),
    "minor": frozenset({0, 2, 3, 5, 7, 8, 9, 10, 11}),
}
LOWEST_PITCH, HIGHEST_PITCH = 36, 96  # C2..C7: MIDI note numbers a token may name
MAX_BAR_UNITS = 48  # 12/4: the longest bar a meter may ask for
_KEY_NAMES = {"C": 0, "B#": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4, "F": 5, "E#": 5,
              "F#": 6, "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11, "CB": 11}
_NOTE_TOKEN = re.compile(r"^(?:(?P<name>[A-G]#?)(?P<octave>-?\d)|(?P<rest>r))_(?P<units>\d+)$")


@dataclass(frozen=True)
class Meter:
    """A time signature such as 6/8; ``bar_units`` is the bar's length in sixteenths."""

    numerator: int
    denominator: int

    @property
    def bar_units(self) -> int:
        return self.numerator * 16 // self.denominator

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


def parse_meter(text: str) -> Meter:
    """``"6/8"`` -> ``Meter(6, 8)``.

    Raises:
        AigcError: not ``N/D``, a zero or negative count, a denominator other than 1, 2, 4, 8 or 16, or a bar
            longer than 12/4.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise AigcError(f"meter {text!r} is not a time signature; write it as N/D, e.g. 4/4 or 6/8", param="meter")
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if denominator not in (1, 2, 4, 8, 16):
        raise AigcError(f"meter {text!r} has denominator {denominator}; use 1, 2, 4, 8 or 16", param="meter")
    if numerator < 1:
        raise AigcError(f"meter {text!r} has {numerator} beats a bar; use at least 1, e.g. 4/4", param="meter")
    meter = Meter(numerator, denominator)
    if meter.bar_units > MAX_BAR_UNITS:
        raise AigcError(f"meter {text!r} makes bars longer than 12/4; use a shorter meter", param="meter")
    return meter


def parse_key(text: str) -> int:
    """Pitch class (0 = C) of a key name such as ``D``, ``F#``, ``Bb`` or ``Eb``.

    Raises:
        AigcError: an unknown key name, listing the accepted ones.
    """
    name = str(text).strip()
    pitch_class = _KEY_NAMES.get(name[:1].upper() + name[1:].upper().replace("♯", "#").replace("♭", "B"))
    if pitch_class is None:
        raise AigcError(f"unknown key {text!r}; use a note name: C, C#, Db, D, Eb, E, F, F#, Gb, G, Ab, A, Bb, B", param="key")
    return pitch_class


def check_mode(mode: str) -> str:
    """The mode, checked. Raises AigcError for anything but ``major`` or ``minor``."""
    if mode not in MODES:
        raise AigcError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}", param="mode")
    return mode


def transpose_shift(key: int, mode: str) -> int:
    """Semitones that move a tune from its training key (C major / A minor) to tonic ``key``, in -6..+5 so
    the melody stays near its trained register."""
    return (key - MODE_TONIC[check_mode(mode)] + 6) % 12 - 6


def header(mode: str, meter: Meter | str, style: str) -> str:
    """The conditioning source of a record: ``"major 6/8 irish"``."""
    return f"{check_mode(mode)} {meter} {style}"


def note_token(pitch: int | None, units: int) -> str:
    """The token of a note (MIDI ``pitch``) or a rest (``None``) lasting ``units`` sixteenths."""
    if units not in DURATIONS:
        raise ValueError(f"duration {units} is not one of {DURATIONS}")
    if pitch is None:
        return f"{REST}_{units}"
    return f"{PITCH_NAMES[pitch % 12]}{pitch // 12 - 1}_{units}"


def read_note_token(token: str) -> tuple[int | None, int] | None:
    """``(pitch or None for a rest, units)`` of a note or rest token, or None when ``token`` is not one."""
    match = _NOTE_TOKEN.match(token)
    if not match or int(match.group("units")) not in DURATIONS:
        return None
    units = int(match.group("units"))
    if match.group("rest"):
        return None, units
    pitch = (int(match.group("octave")) + 1) * 12 + PITCH_NAMES.index(match.group("name"))
    return (pitch, units) if LOWEST_PITCH <= pitch <= HIGHEST_PITCH else None


def all_note_tokens() -> list[str]:
    """Every note and rest token the format has (the vocabulary a constraint may allow)."""
    pitches: list[int | None] = [None, *range(LOWEST_PITCH, HIGHEST_PITCH + 1)]
    return [note_token(pitch, units) for pitch in pitches for units in DURATIONS]


Event = tuple["int | None", int]  # (MIDI pitch or None for a rest, units)


@dataclass
class Tune:
    """A monophonic tune in bars of events, in its training key (C major or A minor)."""

    mode: str
    meter: Meter
    style: str
    bars: list[list[tuple[int | None, int]]] = field(default_factory=list)

    def source(self) -> str:
        return header(self.mode, self.meter, self.style)

    def target(self) -> str:
        """The token text: the events of each bar followed by ``|``."""
        return " ".join(" ".join([*(note_token(p, u) for p, u in bar), BAR]) for bar in self.bars)

    def notes(self) -> list[tuple[int, int]]:
        """The sounding notes ``(pitch, units)`` in order (rests left out)."""
        return [(pitch, units) for bar in self.bars for pitch, units in bar if pitch is not None]


@dataclass
class ParsedTarget:
    """What :func:`parse_target` read: the bars (complete or not) and each bar's length in units."""

    bars: list[list[tuple[int | None, int]]]
    bar_units: list[int]
    complete: bool  # the text ends with a bar line (no trailing events outside a bar)


def parse_target(text: str) -> ParsedTarget:
    """Read a target token text into bars.

    Raises:
        AigcError: a token that is neither a note, a rest nor a bar line (naming it and its position).
    """
    bars: list[list[tuple[int | None, int]]] = []
    current: list[tuple[int | None, int]] = []
    for position, token in enumerate(text.split()):
        if token == BAR:
            bars.append(current)
            current = []
            continue
        event = read_note_token(token)
        if event is None:
            raise AigcError(f"token {position} {token!r} is not a note, a rest or a bar line; "
                            "music tokens look like E5_2, r_4 or |", param="tokens")
        current.append(event)
    complete = not current
    if current:
        bars.append(current)
    return ParsedTarget(bars=bars, bar_units=[sum(units for _, units in bar) for bar in bars], complete=complete)


def to_stream(tune: Tune, *, shift: int = 0, tempo: float = 120.0, instrument: str | None = None,
              title: str | None = None):  # -> music21.stream.Score (imported lazily: music21 loads in ~1 s)
    """A music21 ``Score`` of ``tune`` transposed by ``shift`` semitones, with meter, key, tempo and instrument.

    Args:
        tune: the tune in its training key.
        shift: semitones to transpose (see :func:`transpose_shift`).
        tempo: quarter notes per minute.
        instrument: a General MIDI instrument name (see :func:`aigc_studio.music.render.gm_program`), or None
            for a piano.
        title: the score's title.
    """
    from music21 import key, meter, metadata, note, stream, tempo as m21tempo

    from aigc_studio.music.render import gm_instrument

    score = stream.Score()
    score.metadata = metadata.Metadata(title=title or "Untitled")
    part = stream.Part()
    part.insert(0, gm_instrument(instrument))
    tonic = PITCH_NAMES[(MODE_TONIC[tune.mode] + shift) % 12]
    for number, bar in enumerate(tune.bars, start=1):
        measure = stream.Measure(number=number)
        if number == 1:
            measure.insert(0, meter.TimeSignature(str(tune.meter)))
            measure.insert(0, key.Key(tonic, tune.mode))
            measure.insert(0, m21tempo.MetronomeMark(number=tempo, referent=1.0))
        for pitch, units in bar:
            length = units / UNITS_PER_QUARTER
            element = note.Rest(quarterLength=length) if pitch is None else note.Note(pitch + shift, quarterLength=length)
            measure.append(element)
        part.append(measure)
    score.insert(0, part)
    return score
