"""Rendering a tune to sound: General MIDI instruments, MIDI and MusicXML files, FluidSynth to WAV.

The synthesiser is the FluidSynth command-line program with the FluidR3 General MIDI sound font, both from
Debian's packages (``fluidsynth``, ``fluid-soundfont-gm``; ``make audio-tools`` installs them). The WAV is
normalised to -16 LUFS (:func:`aigc_studio.audio.mix.normalise_loudness`) and carries its provenance record;
ffmpeg, when present, adds an MP3 (see :mod:`aigc_studio.audio.provenance`).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from aigc_studio.audio.mix import TARGET_LUFS, normalise_loudness
from aigc_studio.audio.provenance import AudioProvenance, write_wav
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write

SOUND_FONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian package fluid-soundfont-gm
RENDER_RATE = 44100
# The 128 General MIDI program names (program number = position), as the GM 1 specification lists them.
GM_PROGRAMS: tuple[str, ...] = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano", "honky-tonk piano", "electric piano 1",
    "electric piano 2", "harpsichord", "clavinet", "celesta", "glockenspiel", "music box", "vibraphone", "marimba",
    "xylophone", "tubular bells", "dulcimer", "drawbar organ", "percussive organ", "rock organ", "church organ",
    "reed organ", "accordion", "harmonica", "tango accordion", "acoustic guitar (nylon)", "acoustic guitar (steel)",
    "electric guitar (jazz)", "electric guitar (clean)", "electric guitar (muted)", "overdriven guitar",
    "distortion guitar", "guitar harmonics", "acoustic bass", "electric bass (finger)", "electric bass (pick)",
    "fretless bass", "slap bass 1", "slap bass 2", "synth bass 1", "synth bass 2", "violin", "viola", "cello",
    "contrabass", "tremolo strings", "pizzicato strings", "orchestral harp", "timpani", "string ensemble 1",
    "string ensemble 2", "synth strings 1", "synth strings 2", "choir aahs", "voice oohs", "synth voice",
    "orchestra hit", "trumpet", "trombone", "tuba", "muted trumpet", "french horn", "brass section", "synth brass 1",
    "synth brass 2", "soprano sax", "alto sax", "tenor sax", "baritone sax", "oboe", "english horn", "bassoon",
    "clarinet", "piccolo", "flute", "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle", "ocarina",
    "lead 1 (square)", "lead 2 (sawtooth)", "lead 3 (calliope)", "lead 4 (chiff)", "lead 5 (charang)",
    "lead 6 (voice)", "lead 7 (fifths)", "lead 8 (bass + lead)", "pad 1 (new age)", "pad 2 (warm)",
    "pad 3 (polysynth)", "pad 4 (choir)", "pad 5 (bowed)", "pad 6 (metallic)", "pad 7 (halo)", "pad 8 (sweep)",
    "fx 1 (rain)", "fx 2 (soundtrack)", "fx 3 (crystal)", "fx 4 (atmosphere)", "fx 5 (brightness)", "fx 6 (goblins)",
    "fx 7 (echoes)", "fx 8 (sci-fi)", "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle bell", "agogo", "steel drums", "woodblock", "taiko drum", "melodic tom", "synth drum", "reverse cymbal",
    "guitar fret noise", "breath noise", "seashore", "bird tweet", "telephone ring", "helicopter", "applause", "gunshot",
)
DEFAULT_INSTRUMENT = "acoustic grand piano"


def _simplify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def gm_program(name: str | None) -> int:
    """The General MIDI program number (0-127) of an instrument name such as ``violin``, ``Flute`` or
    ``acoustic_grand_piano``; a unique prefix (``piano`` is not one, ``acoustic grand`` is) or a number works too.

    Raises:
        AigcError: an unknown or ambiguous name, with examples.
    """
    if name is None:
        return 0
    wanted = _simplify(str(name))
    if wanted.isdigit() and 0 <= int(wanted) <= 127:
        return int(wanted)
    names = [_simplify(program) for program in GM_PROGRAMS]
    if wanted in names:
        return names.index(wanted)
    matches = [index for index, program in enumerate(names) if program.startswith(wanted) or wanted in program.split(" ")] if wanted else []
    if len(matches) == 1:
        return matches[0]
    hint = f"it matches {', '.join(GM_PROGRAMS[i] for i in matches[:6])}" if matches else "examples: violin, flute, fiddle, acoustic grand piano, marimba, trumpet"
    raise AigcError(f"unknown instrument {name!r}; use a General MIDI name ({hint})", param="instrument")


def gm_instrument(name: str | None):  # -> music21.instrument.Instrument
    """A music21 instrument playing General MIDI program :func:`gm_program` ``(name)``."""
    from music21 import instrument

    program = gm_program(name)
    try:
        part_instrument = instrument.instrumentFromMidiProgram(program)
    except Exception:  # music21 has no class for some programs (sound effects); a generic one carries the number
        part_instrument = instrument.Instrument()
    part_instrument.midiProgram = program
    part_instrument.instrumentName = GM_PROGRAMS[program]
    return part_instrument


def midi_bytes(score) -> bytes:
    """A Standard MIDI File of a music21 score."""
    from music21 import midi

    midi_file = midi.translate.streamToMidiFile(score)
    return midi_file.writestr()


def musicxml_bytes(score) -> bytes:
    """The MusicXML of a music21 score."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(score).parse()


def write_score_files(score, stem: str | Path) -> list[Path]:
    """Atomically write ``<stem>.mid`` and ``<stem>.musicxml``."""
    stem = Path(stem)
    return [atomic_write(stem.with_suffix(".mid"), midi_bytes(score)),
            atomic_write(stem.with_suffix(".musicxml"), musicxml_bytes(score))]


def synthesize(midi: bytes, *, sample_rate: int = RENDER_RATE, gain: float = 0.6) -> np.ndarray:
    """Render MIDI bytes with FluidSynth and the GM sound font; returns mono float samples.

    Raises:
        AigcError: FluidSynth or the sound font is missing (``make audio-tools`` installs both), or it fails.
    """
    if shutil.which("fluidsynth") is None:
        raise AigcError("fluidsynth is not installed, so tunes cannot be rendered to audio; run `make audio-tools` "
                        "(Debian packages fluidsynth and fluid-soundfont-gm)")
    if not SOUND_FONT.is_file():
        raise AigcError(f"sound font {SOUND_FONT} not found; run `make audio-tools` (package fluid-soundfont-gm)")
    with tempfile.TemporaryDirectory(prefix="aigc-render-") as scratch:
        midi_path, wav_path = Path(scratch) / "in.mid", Path(scratch) / "out.wav"
        midi_path.write_bytes(midi)
        # -n no MIDI input, -i no shell, -q quiet; -F renders the file faster than real time; chorus and
        # reverb stay on (the sound font's defaults), so the release tail is part of the file.
        command = ["fluidsynth", "-niq", "-g", str(gain), "-r", str(sample_rate), "-T", "wav", "-F", str(wav_path),
                   str(SOUND_FONT), str(midi_path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not wav_path.is_file():
            raise AigcError(f"fluidsynth failed: {(result.stderr or result.stdout).strip()[-300:]}")
        samples, _ = sf.read(io.BytesIO(wav_path.read_bytes()), dtype="float64")
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def render_wav(score, path: str | Path, record: AudioProvenance, *, target_lufs: float = TARGET_LUFS) -> AudioProvenance:
    """Render ``score`` to a WAV at ``target_lufs`` carrying ``record``; trailing silence after the release is cut.

    Returns:
        The record as written (with the samples' hash).
    """
    samples = synthesize(midi_bytes(score))
    audible = np.flatnonzero(np.abs(samples) > 1e-4)
    if len(audible) == 0:
        raise AigcError("the rendered tune is silent; check the instrument and the notes")
    samples = samples[: audible[-1] + 1]
    samples = normalise_loudness(samples, RENDER_RATE, target_lufs)
    return write_wav(path, samples, RENDER_RATE, record)
