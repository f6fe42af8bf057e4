"""Music data: the corpus that ``music21`` ships, read into monophonic tunes and prepared for training.

Collections (``--corpus``):

=========  ==========================================  ==========  =========================
name       music21 corpus folder                        style       files
=========  ==========================================  ==========  =========================
ryans      ``ryansMammoth`` (Ryan's Mammoth Collection)  ``irish``   one ABC tune per file
oneills    ``oneills1850`` (O'Neill's 1850 tunes)       ``irish``   ABC, ~50 tunes per file
essen      ``essenFolksong`` (Essen folk songs)         ``folk``    ABC, hundreds per file
bach       ``bach`` (chorales: the soprano line)        ``chorale`` MusicXML / MusicXML-compressed
=========  ==========================================  ==========  =========================

:func:`tune_from_score` normalises one score: the top line (highest note of a chord, grace notes
dropped), one meter for the whole tune, major or minor only (modal tunes are skipped), every note length
one of :data:`~aigc_studio.music.tokens.DURATIONS` (tuplets are skipped), whole bars only (the pickup and
the short closing bar, and the half bars around repeat signs, are joined when they add up to a bar and
dropped otherwise), transposed to C major / A minor by at most a tritone, at most ``max_bars`` bars.
Every skipped tune is counted with its reason in ``music.json``.

:func:`prepare_music_dataset` (``aigc data prepare-music``) writes the tunes as records
``{"source": "major 6/8 irish", "target": "E5_2 ... |", "tune": id}`` and sends them through
:func:`aigc_studio.data.prepare.prepare_dataset` with the word tokenizer and ``group_column="tune"``, so the
validation split holds whole tunes. It adds ``tunes.jsonl`` (the records, with titles) and the copy index.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc_studio.data.cleaning import RecordCleaner
from aigc_studio.data.prepare import DATASET_INFO_FILE, PrepareConfig, prepare_dataset, split_records_by_source
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json, read_jsonl, require_file, write_jsonl
from aigc_studio.music.originality import NGramIndex
from aigc_studio.music.tokens import (
    DURATIONS,
    HIGHEST_PITCH,
    LOWEST_PITCH,
    MODE_TONIC,
    Tune,
    parse_meter,
    parse_target,
)

COLLECTIONS: dict[str, tuple[str, str]] = {  # name -> (music21 corpus folder, style)
    "ryans": ("ryansMammoth", "irish"),
    "oneills": ("oneills1850", "irish"),
    "essen": ("essenFolksong", "folk"),
    "bach": ("bach", "chorale"),
}
TUNES_FILE = "tunes.jsonl"
MUSIC_INFO_FILE = "music.json"


class SkipTune(Exception):
    """A score that does not become a tune; the message is the reason counted in the report."""


@dataclass
class CorpusTune:
    """A normalised tune and where it came from."""

    tune_id: str
    title: str
    collection: str
    original_key: str
    tune: Tune

    def record(self) -> dict[str, str]:
        return {"source": self.tune.source(), "target": self.tune.target(), "tune": self.tune_id,
                "title": self.title, "collection": self.collection, "original_key": self.original_key}


def parse_collections(text: str | Sequence[str]) -> list[str]:
    """``"ryans,bach"`` -> ``["ryans", "bach"]``. Raises AigcError for an unknown name, listing the known ones."""
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text) if name.strip()]
    unknown = [name for name in names if name not in COLLECTIONS]
    if unknown or not names:
        raise AigcError(f"unknown corpus {', '.join(unknown) or '(none)'}; choose from: {', '.join(COLLECTIONS)}", param="corpus")
    return names


def corpus_files(collection: str) -> list[Path]:
    """The music21 corpus files of a collection, sorted (Bach: chorales only, i.e. four-part scores)."""
    from music21 import corpus

    folder, _ = COLLECTIONS[collection]
    paths = sorted(Path(path) for path in corpus.getPaths() if f"/{folder}/" in str(path).replace("\\", "/"))
    if collection == "bach":
        # The chorales are the numbered bwv files; the few cantatas and instrumental works are left out.
        paths = [path for path in paths if path.name.startswith("bwv") and path.suffix in (".mxl", ".xml", ".musicxml")]
    return paths


def tune_from_score(score: Any, style: str, *, max_bars: int = 32) -> tuple[Tune, str]:
    """Normalise one music21 score into a :class:`Tune` in C major / A minor (see the module docstring).

    Returns:
        ``(tune, original key name)``.

    Raises:
        SkipTune: the score cannot be normalised; the message is the reason.
    """
    from music21 import chord, key, meter

    parts = list(getattr(score, "parts", []))
    line = parts[0] if parts else score
    signatures = {ts.ratioString for ts in line.recurse().getElementsByClass(meter.TimeSignature)}
    if len(signatures) != 1:
        raise SkipTune("no meter" if not signatures else "meter changes")
    try:
        time_signature = parse_meter(signatures.pop())
    except AigcError:
        raise SkipTune("unusual meter") from None
    found_key = next(iter(line.recurse().getElementsByClass(key.Key)), None)
    if found_key is None:
        found_key = line.analyze("key")  # MusicXML chorales carry only a key signature
    if found_key.mode not in MODE_TONIC:
        raise SkipTune(f"mode {found_key.mode}")
    shift = (MODE_TONIC[found_key.mode] - found_key.tonic.pitchClass + 6) % 12 - 6
    measures = list(line.getElementsByClass("Measure"))
    if not measures:
        raise SkipTune("no bars")
    bar_units = time_signature.bar_units
    bars: list[list[tuple[int | None, int]]] = []
    pending: list[tuple[int | None, int]] = []
    for measure in measures:
        events: list[tuple[int | None, int]] = []
        for element in measure.flatten().notesAndRests:
            length = float(element.quarterLength)
            if length == 0 or element.duration.isGrace:
                continue
            units = length * 4
            if units != int(units) or int(units) not in DURATIONS:
                raise SkipTune("tuplet or odd note length")
            if element.isRest:
                events.append((None, int(units)))
                continue
            pitch = max(p.midi for p in element.pitches) if isinstance(element, chord.Chord) else element.pitch.midi
            pitch += shift
            if not LOWEST_PITCH <= pitch <= HIGHEST_PITCH:
                raise SkipTune("pitch out of range")
            events.append((pitch, int(units)))
        total = sum(units for _, units in events)
        if total == bar_units:
            pending = []  # a stray part-bar before a whole one (a pickup) is dropped
            bars.append(events)
        elif total > bar_units:
            raise SkipTune("overfull bar")
        elif total > 0:
            pending = pending + events
            pending_units = sum(units for _, units in pending)
            if pending_units == bar_units:
                bars.append(pending)
                pending = []
            elif pending_units > bar_units:
                pending = events
        if len(bars) == max_bars:
            break
    if len(bars) < 2:
        raise SkipTune("fewer than 2 whole bars")
    if not any(pitch is not None for bar in bars for pitch, _ in bar):
        raise SkipTune("no notes")
    key_name = f"{found_key.tonic.name} {found_key.mode}"
    return Tune(mode=found_key.mode, meter=time_signature, style=style, bars=bars), key_name


def load_corpus(collections: Sequence[str], *, limit: int | None = None, max_bars: int = 32,
                skipped: Counter[str] | None = None, progress: Callable[[str, int], None] | None = None) -> Iterator[CorpusTune]:
    """Yield the normalised tunes of ``collections``, at most ``limit`` per collection.

    Args:
        collections: names from :data:`COLLECTIONS`.
        limit: most tunes kept per collection (None: all); files are read only until it is reached.
        max_bars: tunes are cut after this many bars.
        skipped: a counter that receives ``"<collection>: <reason>"`` for every score left out.
        progress: called with ``(collection, tunes kept so far)`` after every file.
    """
    from music21 import converter, stream

    skipped = skipped if skipped is not None else Counter()
    for collection in parse_collections(list(collections)):
        _, style = COLLECTIONS[collection]
        kept = 0
        for path in corpus_files(collection):
            if limit is not None and kept >= limit:
                break
            try:
                parsed = converter.parse(path, forceSource=True)  # no pickled cache: only the source files are read
            except Exception as error:  # music21 raises many types on a malformed file
                skipped[f"{collection}: unreadable file ({type(error).__name__})"] += 1
                continue
            scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
            for number, score in enumerate(scores):
                if limit is not None and kept >= limit:
                    break
                try:
                    tune, key_name = tune_from_score(score, style, max_bars=max_bars)
                except SkipTune as reason:
                    skipped[f"{collection}: {reason}"] += 1
                    continue
                except Exception as error:  # a score music21 reads but cannot analyse
                    skipped[f"{collection}: unreadable score ({type(error).__name__})"] += 1
                    continue
                title = (score.metadata.title if score.metadata is not None else None) or path.stem
                yield CorpusTune(tune_id=f"{collection}/{path.stem}#{number}", title=str(title), collection=collection,
                                 original_key=key_name, tune=tune)
                kept += 1
            if progress is not None:
                progress(collection, kept)


def prepare_music_dataset(out_dir: str | Path, *, collections: Sequence[str] = ("ryans", "oneills"),
                          limit: int | None = None, max_bars: int = 32, val_fraction: float = 0.1, seed: int = 1337,
                          overwrite: bool = False,
                          progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """``aigc data prepare-music``: read the corpus, write a records dataset split by tune.

    Args:
        out_dir: the dataset directory (the layout of docs/architecture.md, plus ``tunes.jsonl``,
            ``music.json`` and ``copy-index-12.npy``).
        collections: names from :data:`COLLECTIONS`.
        limit: most tunes per collection.
        max_bars: tunes are cut after this many bars.
        val_fraction: share of tunes held out for validation.
        seed: the split's seed.
        overwrite: replace a dataset prepared there before.
        progress: see :func:`load_corpus`.

    Returns:
        The content of ``music.json``: counts per collection, mode and meter, and every skip reason.

    Raises:
        AigcError: an unknown collection, ``limit`` < 2, no usable tune, or what
            :func:`~aigc_studio.data.prepare.prepare_dataset` refuses (e.g. a non-empty ``out_dir``).
    """
    names = parse_collections(list(collections))
    if limit is not None and limit < 2:
        raise AigcError(f"--limit {limit} leaves too few tunes to split; use at least 2", param="limit")
    if not 2 <= max_bars <= 64:
        raise AigcError(f"--max-bars must be in 2..64, got {max_bars}", param="max_bars")
    out_dir = Path(out_dir)
    skipped: Counter[str] = Counter()
    tunes = list(load_corpus(names, limit=limit, max_bars=max_bars, skipped=skipped, progress=progress))
    if len(tunes) < 2:
        raise AigcError(f"only {len(tunes)} usable tune(s) in {', '.join(names)}; raise --limit or add a collection")
    config = PrepareConfig(source_column="source", target_column="target", group_column="tune", tokenizer="word",
                           val_fraction=val_fraction, seed=seed, overwrite=overwrite)
    # Clean (de-duplicate) here with the pipeline's own cleaner, so prepare_dataset drops nothing more and the
    # split it makes from the tune ids can be recorded in tunes.jsonl (evaluation needs to know held-out tunes).
    cleaner = RecordCleaner(config.cleaning_config())
    records = [record for record in (tune.record() for tune in tunes)
               if cleaner.clean((record["source"], record["target"])) is not None]
    is_val = split_records_by_source([record["tune"] for record in records], val_fraction, seed)
    for record, held_out in zip(records, is_val):
        record["split"] = "val" if held_out else "train"
    with tempfile.TemporaryDirectory(prefix="aigc-music-") as scratch:
        records_path = write_jsonl(Path(scratch) / TUNES_FILE, records)
        info = prepare_dataset([records_path], out_dir, config)
        write_jsonl(out_dir / TUNES_FILE, records)
    assert info["splits"]["val"]["records"] == int(is_val.sum()), "prepare_dataset split the tunes as recorded"
    # dataset.json names the records file as it was prepared; point it at the copy kept in the dataset.
    info["inputs"][0]["path"] = TUNES_FILE
    atomic_write_json(out_dir / DATASET_INFO_FILE, info)
    # Every corpus tune, held-out ones too: copying any known tune is what the originality check refuses.
    NGramIndex([tune.tune.notes() for tune in tunes]).save(out_dir)
    report = {
        "collections": names,
        "limit": limit,
        "max_bars": max_bars,
        "tunes": len(records),
        "duplicates_dropped": len(tunes) - len(records),
        "per_collection": dict(Counter(tune.collection for tune in tunes)),
        "per_mode": dict(Counter(tune.tune.mode for tune in tunes)),
        "per_meter": dict(Counter(str(tune.tune.meter) for tune in tunes)),
        "skipped": dict(sorted(skipped.items())),
        "splits": {split: info["splits"][split]["records"] for split in ("train", "val")},
    }
    atomic_write_json(out_dir / MUSIC_INFO_FILE, report)
    return report


def read_tunes(data_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a prepared music dataset (``tunes.jsonl``).

    Raises:
        AigcError: the directory holds no ``tunes.jsonl`` (it was not made by ``aigc data prepare-music``).
    """
    path = require_file(Path(data_dir) / TUNES_FILE, "music dataset (tunes.jsonl from `aigc data prepare-music`)")
    return [row for _, row in read_jsonl(path)]


def tune_from_record(record: dict[str, Any]) -> Tune:
    """The :class:`Tune` of a ``tunes.jsonl`` record."""
    mode, meter_text, style = record["source"].split()
    parsed = parse_target(record["target"])
    return Tune(mode=mode, meter=parse_meter(meter_text), style=style, bars=parsed.bars)

