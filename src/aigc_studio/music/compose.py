"""Composing jingles: a music model, constrained decoding, an originality check, files with provenance.

:func:`compose` is ``aigc compose`` and the studio's compose endpoint:

1. check the request (key, mode, meter, bars, tempo, instrument, n) and load the model;
2. prompt ``<bos> mode meter style <sep>`` and sample ``n`` tunes with :class:`~aigc_studio.music.constraints.BarConstraint`,
   so every bar has the meter's length, the tune has ``bars`` bars and ends on the tonic;
3. originality: a tune sharing a run of :data:`~aigc_studio.music.originality.COPY_LIMIT` notes or more
   with a training tune is refused and sampled again with the next seed (up to ``max_attempts`` rounds);
4. transpose each tune from C major / A minor to the requested key and write ``tune-NN.mid``,
   ``tune-NN.musicxml``, ``tune-NN.wav`` (FluidSynth, -16 LUFS) and ``tune-NN.mp3`` when ffmpeg is present,
   each with its provenance (inside the audio file and as ``<file>.json``), plus ``tune-NN.json``: the
   tune's record (tokens, settings, files, originality).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aigc_studio.audio.provenance import AudioProvenance, encode_compressed, ffmpeg_available
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json
from aigc_studio.music.constraints import BarConstraint, check_bars, max_new_tokens
from aigc_studio.music.originality import COPY_LIMIT, INDEX_FILE, NGramIndex
from aigc_studio.music.render import DEFAULT_INSTRUMENT, gm_program, render_wav, write_score_files
from aigc_studio.music.tokens import Tune, check_mode, header, parse_key, parse_meter, parse_target, to_stream, transpose_shift

MAX_TUNES = 16


@dataclass
class ComposeRequest:
    """What to compose; every field is checked by :meth:`validate`."""

    key: str = "C"
    mode: str = "major"
    meter: str = "4/4"
    bars: int = 8
    tempo: float = 120.0
    instrument: str = DEFAULT_INSTRUMENT
    style: str | None = None  # None: the style the model saw most (its first known style)
    n: int = 1
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0
    formats: tuple[str, ...] = ("mid", "musicxml", "wav", "mp3")

    def validate(self) -> None:
        """Raises AigcError naming the first bad field (unknown key, meter 0/4, 10 000 bars, ...)."""
        parse_key(self.key)
        check_mode(self.mode)
        parse_meter(self.meter)
        check_bars(self.bars)
        if not 20 <= self.tempo <= 300:
            raise AigcError(f"--tempo must be 20-300 quarter notes a minute, got {self.tempo}", param="tempo")
        gm_program(self.instrument)
        if not 1 <= self.n <= MAX_TUNES:
            raise AigcError(f"--n must be 1-{MAX_TUNES}, got {self.n}", param="n")
        if self.seed < 0:
            raise AigcError(f"--seed must be >= 0, got {self.seed}", param="seed")
        if not 0 <= self.temperature <= 2:
            raise AigcError(f"--temperature must be in 0..2, got {self.temperature}", param="temperature")
        unknown = set(self.formats) - {"mid", "musicxml", "wav", "mp3", "ogg"}
        if unknown:
            raise AigcError(f"unknown output format {sorted(unknown)[0]!r}; choose from mid, musicxml, wav, mp3, ogg", param="formats")


@dataclass
class ComposedTune:
    """One tune as written: its tokens (training key), the files, and how original it is."""

    index: int
    seed: int
    tokens: str
    longest_copied_run: int | None  # None when the index holds only the refusal length
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ComposeResult:
    tunes: list[ComposedTune]
    rejected_for_copying: int
    request: ComposeRequest


class MusicModel:
    """A loaded music model with what composing needs: its tokenizer's header words and its copy index."""

    def __init__(self, name_or_dir: str | Path, *, corpus_data: str | Path | None = None) -> None:
        from aigc_studio.models.model_dir import load_pretrained, weights_sha256
        from aigc_studio.models.registry import resolve_model

        self.name = str(name_or_dir)
        self.directory = resolve_model(name_or_dir)
        self.loaded = load_pretrained(self.directory)
        self.tokenizer = self.loaded.tokenizer
        if self.tokenizer.kind != "word" or "|" not in self.tokenizer.tokenizer.get_vocab():
            raise AigcError(f"model {self.name} is not a music model (its tokenizer has no music tokens); "
                            "train one on `aigc data prepare-music` data or use the bundled `jingle`", param="model")
        self.weights_sha256 = weights_sha256(self.directory)
        vocab = self.tokenizer.tokenizer.get_vocab()
        self.styles = sorted(word for word in vocab if word.isalpha() and word not in ("major", "minor"))
        meters = [word for word in vocab if re.fullmatch(r"\d+/\d+", word)]
        self.meters = sorted(meters, key=lambda meter: tuple(int(part) for part in meter.split("/")))
        if not self.styles or not self.meters:
            raise AigcError(f"model {self.name}'s vocabulary has no style or meter words; train it on "
                            "`aigc data prepare-music` data", param="model")
        self.index = self._copy_index(corpus_data)

    def _copy_index(self, corpus_data: str | Path | None) -> NGramIndex:
        from aigc_studio.music.corpus import read_tunes, tune_from_record

        if corpus_data is not None:
            return NGramIndex([tune_from_record(row).notes() for row in read_tunes(corpus_data)])
        if (self.directory / INDEX_FILE.format(n=COPY_LIMIT)).is_file():
            return NGramIndex.load(self.directory)
        raise AigcError(f"model {self.name} has no copy index ({INDEX_FILE.format(n=COPY_LIMIT)}), so originality cannot be "
                        "checked; pass --corpus-data with the dataset it was trained on", param="corpus_data")

    def prompt(self, mode: str, meter: str, style: str) -> list[int]:
        """``<bos> mode meter style <sep>``; unknown header words are errors listing the known ones."""
        vocab = self.tokenizer.tokenizer.get_vocab()
        if meter not in vocab:
            raise AigcError(f"model {self.name} was not trained on meter {meter}; it knows: {', '.join(self.meters)}", param="meter")
        if style not in vocab or style not in self.styles:
            raise AigcError(f"model {self.name} does not know style {style!r}; it knows: {', '.join(self.styles)}", param="style")
        ids = self.tokenizer.encode(header(mode, meter, style))
        return [self.tokenizer.bos_id, *ids, self.tokenizer.sep_id]


def sample_tunes(model: MusicModel, request: ComposeRequest, count: int, seed: int) -> list[tuple[Tune | None, str]]:
    """``count`` constrained samples: ``(tune, tokens)``, the tune None when the text did not finish within the context."""
    from aigc_studio.generation.sampler import generate
    from aigc_studio.generation.sampling_params import SamplingParams

    meter = parse_meter(request.meter)
    style = request.style or model.styles[0]
    prompt = model.prompt(request.mode, str(meter), style)
    budget = max_new_tokens(request.bars, meter)
    context = getattr(model.loaded.model.config, "block_size", None)
    if context is not None:
        # Generation stops at the model's context (block_size, for the LSTM too); every bar needs at least two
        # tokens (a note and the bar line), so fewer bars than this can never fit.
        if len(prompt) + 2 * request.bars + 1 > context:
            raise AigcError(f"{request.bars} bars do not fit this model's context of {context} tokens; "
                            f"use at most {(context - len(prompt) - 1) // 2} bars", param="bars")
        budget = min(budget, context - len(prompt))
    params = SamplingParams(temperature=request.temperature, top_k=request.top_k, max_tokens=budget, n=count, seed=seed)
    constraint = BarConstraint(model.tokenizer, meter, request.bars, request.mode, prompt_length=len(prompt))
    outputs = generate(model.loaded.model, model.tokenizer, [prompt], params, logits_processors=[constraint])
    results: list[tuple[Tune | None, str]] = []
    for completion in outputs[0].completions:
        text = model.tokenizer.decode(completion.token_ids)
        parsed = parse_target(text)
        finished = completion.finish_reason == "stop" and parsed.complete and len(parsed.bars) == request.bars
        tune = Tune(mode=request.mode, meter=meter, style=style, bars=parsed.bars) if finished else None
        results.append((tune, text))
    return results


def compose(model: MusicModel, request: ComposeRequest, out_dir: str | Path, *, max_attempts: int = 5) -> ComposeResult:
    """Compose ``request.n`` original tunes into ``out_dir`` (see the module docstring).

    Raises:
        AigcError: a bad request, or fewer than ``n`` tunes passed the checks after ``max_attempts`` rounds.
    """
    request.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    accepted: list[tuple[Tune, str, int]] = []
    rejected, unfinished = 0, 0
    for attempt in range(max_attempts):
        seed = request.seed + attempt * 1_000_003  # a fresh, reproducible draw per round
        for tune, text in sample_tunes(model, request, request.n, seed):
            if len(accepted) == request.n:
                break
            if tune is None:
                unfinished += 1
            elif model.index.has_run(tune.notes(), COPY_LIMIT):
                rejected += 1
            else:
                accepted.append((tune, text, seed))
        if len(accepted) == request.n:
            break
    if len(accepted) < request.n:
        raise AigcError(f"only {len(accepted)} of {request.n} tunes passed after {max_attempts} rounds ({rejected} copied "
                        f"{COPY_LIMIT}+ notes from the training tunes, {unfinished} did not fit the context); "
                        "raise --temperature or use fewer bars", param="n")
    sampling_seconds = (time.perf_counter() - started) / request.n
    shift = transpose_shift(parse_key(request.key), request.mode)
    tunes = []
    for index, (tune, text, seed) in enumerate(accepted, start=1):
        tune_started = time.perf_counter()
        stem = out_dir / f"tune-{index:02d}"
        title = f"Jingle {index} in {request.key} {request.mode}"
        score = to_stream(tune, shift=shift, tempo=request.tempo, instrument=request.instrument, title=title)
        record = AudioProvenance(kind="jingle", model=model.name, model_sha256=model.weights_sha256, seed=seed,
                                 index=index, parameters=_parameters(request), tokens=text)
        files: dict[str, str] = {}
        if {"mid", "musicxml"} & set(request.formats):
            for path in write_score_files(score, stem):
                files[path.suffix[1:]] = path.name
        if {"wav", "mp3", "ogg"} & set(request.formats):
            wav = stem.with_suffix(".wav")
            written = render_wav(score, wav, record)
            files["wav"] = wav.name
            for compressed in ("mp3", "ogg"):
                if compressed in request.formats and ffmpeg_available():
                    files[compressed] = encode_compressed(wav, stem.with_suffix(f".{compressed}"), written).name
        longest = model.index.longest_run(tune.notes()) if model.index.can_measure else None
        composed = ComposedTune(index=index, seed=seed, tokens=text, longest_copied_run=longest, files=files,
                                seconds=round(sampling_seconds + time.perf_counter() - tune_started, 3))
        atomic_write_json(stem.with_suffix(".json"), {
            "kind": "jingle", **asdict(composed), "request": _parameters(request), "model": model.name,
            "model_sha256": model.weights_sha256, "originality": {"copy_limit": COPY_LIMIT, "passed": True},
            "transpose_semitones": shift})
        tunes.append(composed)
    return ComposeResult(tunes=tunes, rejected_for_copying=rejected, request=request)


def _parameters(request: ComposeRequest) -> dict[str, Any]:
    values = asdict(request)
    values["formats"] = list(request.formats)
    return values
