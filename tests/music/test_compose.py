"""aigc compose: a tiny trained model writes valid MIDI, MusicXML and audio with provenance; originality; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mido
import pytest
import soundfile as sf
from typer.testing import CliRunner

from aigc_studio.audio.mix import loudness
from aigc_studio.audio.provenance import verify_wav
from aigc_studio.cli.main import app
from aigc_studio.errors import AigcError
from aigc_studio.music.compose import ComposeRequest, MusicModel, compose
from aigc_studio.music.evaluate import evaluate_music
from aigc_studio.music.originality import NGramIndex
from aigc_studio.music.tokens import parse_target

from .conftest import needs_fluidsynth


def test_a_tiny_model_composes_valid_midi(music_model: Path, tmp_path: Path) -> None:
    model = MusicModel(music_model)
    request = ComposeRequest(key="D", mode="major", meter="2/4", bars=4, n=3, seed=5, formats=("mid", "musicxml"))
    result = compose(model, request, tmp_path)
    assert len(result.tunes) == 3
    for tune in result.tunes:
        parsed = parse_target(tune.tokens)
        assert parsed.bar_units == [8, 8, 8, 8]
        midi = mido.MidiFile(tmp_path / tune.files["mid"])
        notes = [m.note for m in midi if m.type == "note_on" and m.velocity > 0]
        assert len(notes) == sum(pitch is not None for bar in parsed.bars for pitch, _ in bar)
        assert notes[-1] % 12 == 2  # the tonic of D major
        record = json.loads((tmp_path / f"tune-{tune.index:02d}.json").read_text())
        assert record["originality"]["passed"] and record["model_sha256"]


def test_same_seed_same_tunes(music_model: Path, tmp_path: Path) -> None:
    model = MusicModel(music_model)
    request = ComposeRequest(meter="2/4", bars=2, n=2, seed=11, formats=("mid",))
    first = [t.tokens for t in compose(model, request, tmp_path / "a").tunes]
    assert first == [t.tokens for t in compose(model, request, tmp_path / "b").tunes]


def test_copied_tunes_are_refused(music_model: Path, tmp_path: Path) -> None:
    model = MusicModel(music_model)
    request = ComposeRequest(meter="2/4", bars=8, n=1, seed=3, temperature=0.0, formats=("mid",))
    tune = compose(model, request, tmp_path / "first").tunes[0]
    # An index holding this very tune: greedy decoding can only produce it again, so every round is refused.
    model.index = NGramIndex([[(p, u) for bar in parse_target(tune.tokens).bars for p, u in bar if p is not None]])
    if len(model.index.table(12)) == 0:
        pytest.skip("the greedy tune is shorter than 12 notes")
    with pytest.raises(AigcError, match=r"only 0 of 1 tunes passed after 2 rounds \(2 copied 12\+ notes"):
        compose(model, request, tmp_path / "second", max_attempts=2)


@needs_fluidsynth
def test_rendered_audio_has_the_expected_length_loudness_and_provenance(music_model: Path, music_dataset: Path,
                                                                       tmp_path: Path) -> None:
    model = MusicModel(music_model)
    request = ComposeRequest(key="G", mode="major", meter="4/4", bars=4, tempo=120, instrument="flute", n=1, seed=2)
    tune = compose(model, request, tmp_path).tunes[0]
    samples, rate = sf.read(tmp_path / tune.files["wav"])
    # 4 bars of 4/4 at 120 beats a minute are 8 s; the synthesiser's release adds a short tail.
    assert 8.0 <= len(samples) / rate <= 10.5
    assert abs(loudness(samples, rate) - (-16.0)) < 0.5
    check = verify_wav(tmp_path / tune.files["wav"])
    assert check.valid and check.record is not None and check.record.tokens == tune.tokens
    if shutil.which("ffmpeg"):
        assert (tmp_path / tune.files["mp3"]).stat().st_size > 1000
    report = evaluate_music(tmp_path, music_dataset)
    assert report.parse_rate == 1.0 and report.bar_correctness == 1.0 and report.ends_on_tonic == 1.0
    assert report.histogram_distance_shuffled > 0 and report.longest_copied_run >= 1


@pytest.mark.parametrize("flags, message", [
    (["--key", "H"], "unknown key 'H'"),
    (["--meter", "0/4"], "meter '0/4' has 0 beats a bar"),
    (["--bars", "10000"], "--bars must be an integer from 1 to 64"),
    (["--instrument", "kazooo"], "unknown instrument 'kazooo'"),
    (["--meter", "5/4"], "was not trained on meter 5/4"),
])
def test_bad_compose_input_is_one_clear_line(music_model: Path, tmp_path: Path, flags: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["compose", "--model", str(music_model), "--out", str(tmp_path), *flags])
    assert result.exit_code != 0
    assert isinstance(result.exception, AigcError) and message in str(result.exception)
