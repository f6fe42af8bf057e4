"""`aigc data prepare-images`, `aigc sketch`, `aigc eval images`, `aigc provenance verify` from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from aigc_studio.cli.main import app, main
from aigc_studio.images.provenance import c2pa_available

runner = CliRunner()


def invoke(*arguments: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in arguments])


def test_sketch_then_verify_then_eval(trained_models: dict[str, Path], fashion_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "sketches"
    result = invoke("sketch", "--model", trained_models["diffusion"], "--label", "sneaker", "--n", 3, "--seed", 5,
                    "--steps", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "002.png", "contact-sheet.png"]
    verified = invoke("provenance", "verify", out / "001.png")
    assert verified.exit_code == 0 and "verified" in verified.output and "sneaker" in verified.output
    report = tmp_path / "report.html"
    evaluated = invoke("eval", "images", "--generated", out, "--real", fashion_dataset,
                       "--classifier", trained_models["classifier"], "--report", report)
    assert evaluated.exit_code == 0, evaluated.output
    assert report.is_file() and report.with_suffix(".json").is_file() and "class_accuracy" in evaluated.output


def test_verify_fails_with_exit_1_for_an_edited_sketch(trained_models: dict[str, Path], tmp_path: Path) -> None:
    assert invoke("sketch", "--model", trained_models["gan"], "--label", "bag", "--n", 1, "--out", tmp_path).exit_code == 0
    with Image.open(tmp_path / "000.png") as image:
        image.load()
        info = image.info
        edited = image.point(lambda value: 255 - value)
    from PIL import PngImagePlugin

    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_itxt("aigc:provenance", info["aigc:provenance"])
    edited.save(tmp_path / "000.png", pnginfo=pnginfo)
    result = invoke("provenance", "verify", tmp_path / "000.png")
    assert result.exit_code == 1 and "modified" in result.output


def test_interpolate_and_variations_from_the_cli(trained_models: dict[str, Path], tmp_path: Path) -> None:
    walk = invoke("sketch", "--model", trained_models["vae"], "--label", "dress", "--interpolate", 1, 2, "--n", 4,
                  "--out", tmp_path / "walk")
    assert walk.exit_code == 0, walk.output and len(list((tmp_path / "walk").glob("0*.png"))) == 4
    varied = invoke("sketch", "--model", trained_models["vae"], "--label", "dress", "--from", tmp_path / "walk" / "000.png",
                    "--strength", 0.3, "--n", 2, "--out", tmp_path / "var")
    assert varied.exit_code == 0, varied.output


def test_prepare_images_from_a_user_folder(tmp_path: Path) -> None:
    for name in ("mug", "lamp"):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (30, 20), (i * 40, 10, 200)).save(tmp_path / "src" / name / f"{i}.png")
    result = invoke("data", "prepare-images", tmp_path / "src", "--out", tmp_path / "ds", "--size", 16, "--channels", 3,
                    "--val-fraction", 0.2)
    assert result.exit_code == 0, result.output
    assert "8 training and 2 validation images" in result.output and "lamp, mug" in result.output


@pytest.mark.skipif(not c2pa_available(), reason="c2pa-python is not installed (optional extra)")
def test_sketch_with_c2pa_signs_with_the_configured_local_certificate(
    trained_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGC_C2PA_DIRECTORY", str(tmp_path / "c2pa"))
    result = invoke("sketch", "--model", trained_models["vae"], "--label", "coat", "--n", 1, "--c2pa", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c2pa" / "signer.pem").is_file()
    verified = invoke("provenance", "verify", tmp_path / "out" / "000.png")
    assert verified.exit_code == 0 and "C2PA Valid" in verified.output


def test_eval_without_a_classifier_says_how_to_train_one(
    tmp_path: Path, fashion_dataset: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gen").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "gen" / "a.png")
    monkeypatch.setattr(sys, "argv", ["aigc", "eval", "images", "--generated", str(tmp_path / "gen"), "--real",
                                      str(fashion_dataset), "--classifier", str(tmp_path / "no-such-classifier")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and stderr.startswith("error: ") and "recipes/fashion-classifier.toml" in stderr
