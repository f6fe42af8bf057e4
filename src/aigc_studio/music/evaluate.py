"""``aigc eval music``: how good and how original a directory of composed tunes is.

Every metric is computed on the tunes' tokens in their training key (C major / A minor) as recorded in each
``tune-NN.json`` that :func:`aigc_studio.music.compose.compose` writes, against the prepared corpus
(``tunes.jsonl`` of ``aigc data prepare-music``):

===========================  =========  ====================================================================
metric                       direction  definition
===========================  =========  ====================================================================
parse_rate                   higher     share of tunes whose tokens parse into whole bars and whose MIDI file
                                        (when written) reads back with the same number of notes
bar_correctness              higher     share of bars whose length is the meter's, over all bars
bar_count_correct            higher     share of tunes with exactly the requested number of bars
ends_on_tonic                higher     share of tunes whose last note is the tonic
in_key                       higher     share of notes in the mode's scale (minor: natural + raised 6/7)
pitch_range                  --         mean of (highest - lowest) pitch per tune, in semitones
note_density                 --         mean notes per bar
histogram_distance           lower      total-variation distance between the pitch-class histogram of the
                                        generated tunes and of the training tunes of the same mode (0..1)
histogram_distance_shuffled  --         the same for the generated notes under random permutations of the 12
                                        pitch classes (mean of 20): what a model that ignores the key scores
histogram_distance_heldout   --         the same for the held-out (validation) tunes: what real tunes score
distinct_4grams              higher     distinct note 4-grams / all note 4-grams across the tunes (diversity)
unique_tunes                 higher     share of distinct token texts
longest_copied_run           lower      the longest run of notes copied from one corpus tune (max over tunes)
mean_longest_copied_run      lower      its mean over tunes
copied_12_or_more            lower      share of tunes with a copied run of 12 notes or more
===========================  =========  ====================================================================
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aigc_studio.errors import AigcError
from aigc_studio.music.corpus import read_tunes, tune_from_record
from aigc_studio.music.originality import COPY_LIMIT, NGramIndex
from aigc_studio.music.tokens import MODE_SCALE, MODE_TONIC, Tune, parse_meter, parse_target


@dataclass
class MusicReport:
    """The metrics of the module docstring, plus counts."""

    tunes: int
    parse_rate: float
    bar_correctness: float
    bar_count_correct: float
    ends_on_tonic: float
    in_key: float
    pitch_range: float
    note_density: float
    histogram_distance: float
    histogram_distance_shuffled: float
    histogram_distance_heldout: float | None  # None when the corpus records no held-out tune of these modes
    distinct_4grams: float
    unique_tunes: float
    longest_copied_run: int
    mean_longest_copied_run: float
    copied_12_or_more: float

    def to_dict(self) -> dict[str, Any]:
        return {key: (round(value, 4) if isinstance(value, float) else value) for key, value in asdict(self).items()}


@dataclass
class GeneratedTune:
    """A composed tune's record as read back."""

    name: str
    tokens: str
    mode: str
    meter: str
    bars: int
    midi_path: Path | None


def read_generated(directory: str | Path) -> list[GeneratedTune]:
    """The ``tune-*.json`` records of a compose output directory.

    Raises:
        AigcError: no such directory or no tune records in it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AigcError(f"{directory} is not a directory; pass the --out of `aigc compose`", param="generated")
    tunes = []
    for path in sorted(directory.glob("tune-*.json")):
        if path.name.count(".") > 1:  # tune-01.wav.json and the like are audio sidecars
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        request = record.get("request", {})
        midi = record.get("files", {}).get("mid")
        tunes.append(GeneratedTune(name=path.stem, tokens=record.get("tokens", ""), mode=request.get("mode", "major"),
                                   meter=request.get("meter", "4/4"), bars=int(request.get("bars", 0)),
                                   midi_path=directory / midi if midi else None))
    if not tunes:
        raise AigcError(f"no tune-NN.json records in {directory}; compose into it with `aigc compose --out {directory}`",
                        param="generated")
    return tunes


def pitch_class_histogram(tunes: list[Tune]) -> np.ndarray:
    """The normalised 12-bin histogram of the tunes' note pitch classes (weighted by count, not duration)."""
    counts = np.zeros(12)
    for tune in tunes:
        for pitch, _ in tune.notes():
            counts[pitch % 12] += 1
    return counts / counts.sum() if counts.sum() else counts


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance between two distributions: 0 when equal, 1 when disjoint."""
    return float(0.5 * np.abs(p - q).sum())


def _midi_note_count(path: Path) -> int:
    import mido

    return sum(1 for message in mido.MidiFile(path) if message.type == "note_on" and message.velocity > 0)


def evaluate_music(generated_dir: str | Path, corpus_dir: str | Path, *, seed: int = 0) -> MusicReport:
    """Score the composed tunes in ``generated_dir`` against the corpus prepared in ``corpus_dir``.

    Raises:
        AigcError: no tune records, or no prepared music dataset.
    """
    generated = read_generated(generated_dir)
    corpus_records = read_tunes(corpus_dir)
    corpus = [(record.get("split", "train"), tune_from_record(record)) for record in corpus_records]
    index = NGramIndex([tune.notes() for _, tune in corpus])
    parsed_tunes: list[Tune] = []
    parsed_ok = bars_total = bars_right = count_right = tonic_end = 0
    for item in generated:
        try:
            parsed = parse_target(item.tokens)
            meter = parse_meter(item.meter)
        except AigcError:
            continue
        tune = Tune(mode=item.mode, meter=meter, style="", bars=parsed.bars)
        bars_total += len(parsed.bars)
        bars_right += sum(units == meter.bar_units for units in parsed.bar_units)
        count_right += len(parsed.bars) == item.bars
        notes = tune.notes()
        tonic_end += bool(notes) and notes[-1][0] % 12 == MODE_TONIC[item.mode]
        midi_ok = True
        if item.midi_path is not None:
            try:
                midi_ok = item.midi_path.is_file() and _midi_note_count(item.midi_path) == len(notes)
            except (OSError, EOFError, ValueError):
                midi_ok = False
        if parsed.complete and midi_ok and notes:
            parsed_ok += 1
            parsed_tunes.append(tune)
    total = len(generated)
    notes_all = [(tune.mode, pitch) for tune in parsed_tunes for pitch, _ in tune.notes()]
    in_key = np.mean([(pitch - MODE_TONIC[mode]) % 12 in MODE_SCALE[mode] for mode, pitch in notes_all]) if notes_all else 0.0
    ranges = [max(p for p, _ in tune.notes()) - min(p for p, _ in tune.notes()) for tune in parsed_tunes]
    density = [len(tune.notes()) / len(tune.bars) for tune in parsed_tunes if tune.bars]
    distance, shuffled, heldout = _histogram_distances(parsed_tunes, corpus, seed)
    grams = [tuple(tune.notes()[i:i + 4]) for tune in parsed_tunes for i in range(len(tune.notes()) - 3)]
    runs = [index.longest_run(tune.notes()) for tune in parsed_tunes]
    return MusicReport(
        tunes=total,
        parse_rate=parsed_ok / total,
        bar_correctness=bars_right / bars_total if bars_total else 0.0,
        bar_count_correct=count_right / total,
        ends_on_tonic=tonic_end / total,
        in_key=float(in_key),
        pitch_range=float(np.mean(ranges)) if ranges else 0.0,
        note_density=float(np.mean(density)) if density else 0.0,
        histogram_distance=distance,
        histogram_distance_shuffled=shuffled,
        histogram_distance_heldout=heldout,
        distinct_4grams=len(set(grams)) / len(grams) if grams else 0.0,
        unique_tunes=len({item.tokens for item in generated}) / total,
        longest_copied_run=max(runs, default=0),
        mean_longest_copied_run=float(np.mean(runs)) if runs else 0.0,
        copied_12_or_more=sum(run >= COPY_LIMIT for run in runs) / total,
    )


def _histogram_distances(generated: list[Tune], corpus: list[tuple[str, Tune]], seed: int) -> tuple[float, float, float | None]:
    """Mode-weighted distances: generated vs training tunes, shuffled generated vs training, held-out vs training."""
    rng = np.random.default_rng(seed)
    by_mode = Counter(tune.mode for tune in generated)
    distance = shuffled = 0.0
    heldout: float | None = 0.0
    for mode, count in by_mode.items():
        weight = count / len(generated)
        reference = pitch_class_histogram([tune for split, tune in corpus if split == "train" and tune.mode == mode])
        mine = pitch_class_histogram([tune for tune in generated if tune.mode == mode])
        distance += weight * total_variation(mine, reference)
        permuted = [total_variation(mine[rng.permutation(12)], reference) for _ in range(20)]
        shuffled += weight * float(np.mean(permuted))
        held = [tune for split, tune in corpus if split == "val" and tune.mode == mode]
        if not held:
            heldout = None
        elif heldout is not None:
            heldout += weight * total_variation(pitch_class_histogram(held), reference)
    return distance, shuffled, heldout
