"""Music and sound on the command line: music data, composing jingles, voice-overs, audio ads, music evaluation.

    aigc data prepare-music --corpus ryans,oneills --out var/data/music
    aigc compose --model jingle --key D --mode major --meter 6/8 --bars 16 --tempo 120 --instrument fiddle --n 4 --seed 7 --out out/jingles
    aigc voice "Fresh bread every morning at The Eagle." --lang en --rate 1.0 --out out/voice.wav
    aigc audio-ad --copy "The Eagle: French food by the river." --jingle jingle --out out/ad.mp3
    aigc eval music --generated out/jingles --corpus-data var/data/music

``cli/main.py`` registers ``prepare_music`` (under ``aigc data``), ``compose``, ``voice``, ``audio_ad`` and
``eval_music`` (under ``aigc eval``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False)


def prepare_music(
    out: Path = typer.Option(..., "--out", "-o", help="Prepared music data set directory to write."),
    corpus: str = typer.Option("ryans,oneills", "--corpus", help="Comma-separated music21 collections: ryans, oneills, essen, bach."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Keep at most N tunes per collection (quick runs)."),
    max_bars: int = typer.Option(32, "--max-bars", help="Cut tunes after this many bars (2-64)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of tunes held out for validation."),
    seed: int = typer.Option(1337, "--seed", help="Seed of the split by tune."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a data set already prepared in --out."),
) -> None:
    """Read the music21 corpus into monophonic tunes (C major / A minor) and prepare them for `aigc train`."""
    from aigc_studio.music.corpus import parse_collections, prepare_music_dataset

    names = parse_collections(corpus)
    with console.status("reading the music21 corpus") as status:
        report = prepare_music_dataset(out, collections=names, limit=limit, max_bars=max_bars, val_fraction=val_fraction,
                                       seed=seed, overwrite=overwrite,
                                       progress=lambda name, kept: status.update(f"{name}: {kept} tunes"))
    console.print(f"{report['tunes']:,} tunes ({report['splits']['train']:,} train, {report['splits']['val']:,} val) "
                  f"in {escape(str(out))}; modes {report['per_mode']}, meters {report['per_meter']}; "
                  f"{sum(report['skipped'].values()):,} scores skipped (reasons in music.json)")


def compose(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for tune-NN.mid/.musicxml/.wav/.mp3 and their records."),
    model: str = typer.Option("jingle", "--model", help="Music model directory (from `aigc train` on music data) or a bundled name."),
    key: str = typer.Option("C", "--key", help="Tonic: C, C#, Db, D, ..., Bb, B."),
    mode: str = typer.Option("major", "--mode", help="major or minor."),
    meter: str = typer.Option("4/4", "--meter", help="Time signature N/D, one the model was trained on (2/4, 3/4, 4/4, 6/8, ...)."),
    bars: int = typer.Option(8, "--bars", help="Bars per tune (1-64)."),
    tempo: float = typer.Option(120.0, "--tempo", help="Quarter notes per minute (20-300)."),
    instrument: str = typer.Option("acoustic grand piano", "--instrument", help="General MIDI instrument: violin, flute, fiddle, marimba, ..."),
    style: Optional[str] = typer.Option(None, "--style", help="Style word the model knows (irish, folk, chorale); default its first."),
    n: int = typer.Option(1, "--n", help="How many tunes (1-16)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same tunes."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (0 = greedy)."),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k most likely tokens (0 = all)."),
    corpus_data: Optional[Path] = typer.Option(None, "--corpus-data", help="Music data set for the originality check when the model has no copy index."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Write only MIDI and MusicXML (no FluidSynth)."),
) -> None:
    """Compose jingles: constrained to whole bars ending on the tonic, checked for originality, rendered to audio."""
    from aigc_studio.music.compose import ComposeRequest, MusicModel, compose as compose_tunes

    formats = ("mid", "musicxml") if no_audio else ("mid", "musicxml", "wav", "mp3")
    request = ComposeRequest(key=key, mode=mode, meter=meter, bars=bars, tempo=tempo, instrument=instrument, style=style,
                             n=n, seed=seed, temperature=temperature, top_k=top_k, formats=formats)
    request.validate()  # before loading the model, so a typo fails at once
    result = compose_tunes(MusicModel(model, corpus_data=corpus_data), request, out)
    table = Table("tune", "files", "longest copied run", "seconds")
    for tune in result.tunes:
        copied = "n/a" if tune.longest_copied_run is None else str(tune.longest_copied_run)
        table.add_row(str(tune.index), escape(", ".join(tune.files.values())), copied, f"{tune.seconds:.2f}")
    console.print(table)
    if result.rejected_for_copying:
        console.print(f"{result.rejected_for_copying} tune(s) copied 12+ notes from the corpus and were composed again")


def voice(
    text: str = typer.Argument(..., help="The words to say."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .wav (or .mp3/.ogg with ffmpeg)."),
    lang: str = typer.Option("en", "--lang", help="en or zh."),
    voice_name: Optional[str] = typer.Option(None, "--voice", help="espeak-ng voice (en-gb, en-us+f3, cmn) or, with --engine piper, a .onnx voice file."),
    rate: float = typer.Option(1.0, "--rate", help="Speed, 0.5-2.5 (1.0 normal)."),
    engine: str = typer.Option("espeak", "--engine", help="espeak (built in) or piper (needs the piper program and a voice file)."),
) -> None:
    """Speak TEXT into an audio file with its provenance."""
    from aigc_studio.audio.tts import synthesize_to_file

    result = synthesize_to_file(text, out, lang=lang, voice=voice_name, rate=rate, engine=engine)
    console.print(f"{result.seconds:.1f} s of speech ({escape(result.engine)}) in {escape(str(out))}")


def audio_ad(
    copy: str = typer.Option(..., "--copy", help="The ad's words, or the id of a content-library item."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .wav, .mp3 or .ogg."),
    jingle: str = typer.Option("jingle", "--jingle", help="A music model (composes a jingle) or an audio file."),
    lang: str = typer.Option("en", "--lang", help="en or zh."),
    voice_name: Optional[str] = typer.Option(None, "--voice", help="Voice name (see `aigc voice --help`)."),
    rate: float = typer.Option(1.0, "--rate", help="Speech speed, 0.5-2.5."),
    key: str = typer.Option("C", "--key"),
    mode: str = typer.Option("major", "--mode"),
    meter: str = typer.Option("4/4", "--meter"),
    tempo: float = typer.Option(120.0, "--tempo"),
    instrument: str = typer.Option("acoustic grand piano", "--instrument"),
    seed: int = typer.Option(0, "--seed"),
    duck_db: float = typer.Option(12.0, "--duck-db", help="How far the music drops under the voice (dB)."),
    min_seconds: float = typer.Option(15.0, "--min-seconds", help="Shortest spot: a short voice-over gets a longer musical tail."),
) -> None:
    """Mix a voice-over of the copy over a jingle: ducking, fades, -16 LUFS."""
    from aigc_studio.audio.ad import AdRequest, make_audio_ad
    from aigc_studio.audio.mix import MixSettings

    request = AdRequest(copy=copy, jingle=jingle, lang=lang, voice=voice_name, rate=rate, key=key, mode=mode, meter=meter,
                        tempo=tempo, instrument=instrument, seed=seed, mix=MixSettings(duck_db=duck_db, min_seconds=min_seconds))
    result = make_audio_ad(request, out)
    console.print(f"{result.seconds:.1f} s ad at {result.lufs:.1f} LUFS in {escape(str(out))}")


def eval_music(
    generated: Path = typer.Option(..., "--generated", help="A folder written by `aigc compose`."),
    corpus_data: Path = typer.Option(..., "--corpus-data", help="The music data set (from `aigc data prepare-music`)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the report as JSON here."),
) -> None:
    """Score composed tunes: parse rate, bar correctness, in-key share, histogram distance, diversity, copying."""
    from aigc_studio.fileio import atomic_write_json
    from aigc_studio.music.evaluate import evaluate_music

    report = evaluate_music(generated, corpus_data).to_dict()
    table = Table("metric", "value")
    for name, value in report.items():
        table.add_row(name, str(value))
    console.print(table)
    if output is not None:
        atomic_write_json(output, report)

