"""The music token format: round trips through text, music21, MIDI and MusicXML; meters and keys checked."""

from __future__ import annotations

import io

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.music.render import midi_bytes, musicxml_bytes
from aigc_studio.music.tokens import (
    Meter,
    Tune,
    all_note_tokens,
    note_token,
    parse_key,
    parse_meter,
    parse_target,
    read_note_token,
    to_stream,
    transpose_shift,
)

TUNE = Tune(mode="major", meter=Meter(6, 8), style="irish", bars=[
    [(72, 2), (74, 2), (76, 2), (79, 6)],
    [(None, 2), (77, 4), (76, 3), (74, 1), (72, 2)],
    [(67, 12)],
])


def test_text_round_trip() -> None:
    text = TUNE.target()
    assert text == "C5_2 D5_2 E5_2 G5_6 | r_2 F5_4 E5_3 D5_1 C5_2 | G4_12 |"
    parsed = parse_target(text)
    assert parsed.bars == TUNE.bars and parsed.complete and parsed.bar_units == [12, 12, 12]
    assert all(read_note_token(token) is not None for token in all_note_tokens())
    assert read_note_token(note_token(61, 3)) == (61, 3)


def test_music21_midi_and_musicxml_round_trip_in_the_requested_key() -> None:
    from music21 import converter

    shift = transpose_shift(parse_key("D"), "major")
    assert shift == 2
    score = to_stream(TUNE, shift=shift, tempo=100, instrument="fiddle", title="t")
    for data, fmt in ((midi_bytes(score), "midi"), (musicxml_bytes(score), "musicxml")):
        back = converter.parseData(data, format=fmt) if fmt == "musicxml" else converter.parse(io.BytesIO(data).read(), format="midi")
        notes = [(n.pitch.midi, n.quarterLength) for n in back.flatten().notes]
        assert notes == [(pitch + 2, units / 4) for pitch, units in TUNE.notes()]


@pytest.mark.parametrize("text, message", [
    ("0/4", "0 beats a bar"), ("4/3", "denominator 3"), ("four", "not a time signature"), ("16/4", "longer than 12/4"),
])
def test_bad_meters_are_named(text: str, message: str) -> None:
    with pytest.raises(AigcError, match=message):
        parse_meter(text)


def test_keys_and_transposition() -> None:
    assert [parse_key(k) for k in ("C", "f#", "Bb", "Eb", "B")] == [0, 6, 10, 3, 11]
    with pytest.raises(AigcError, match="unknown key 'H'"):
        parse_key("H")
    assert all(-6 <= transpose_shift(key, mode) <= 5 for key in range(12) for mode in ("major", "minor"))
    assert transpose_shift(parse_key("E"), "minor") == -5  # A minor down a fourth


def test_unknown_token_is_named() -> None:
    with pytest.raises(AigcError, match="token 1 'X9' is not a note"):
        parse_target("C5_2 X9 |")


def test_word_tokenizer_gives_one_id_per_music_token(tmp_path) -> None:
    from aigc_studio.data.tokenizer import TextTokenizer, train_tokenizer

    tokenizer = train_tokenizer(["major 6/8 irish", TUNE.target()], kind="word")
    ids = tokenizer.encode(TUNE.target())
    assert len(ids) == len(TUNE.target().split()) and tokenizer.decode(ids) == TUNE.target()
    tokenizer.save(tmp_path / "tokenizer.json")
    assert TextTokenizer.from_file(tmp_path / "tokenizer.json").kind == "word"
    assert train_tokenizer(["ab"], kind="char").kind == "char"
