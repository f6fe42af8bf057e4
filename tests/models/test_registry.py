from __future__ import annotations

from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.models import registry
from aigc_studio.models.registry import bundled_models, resolve_model


@pytest.fixture
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled directory with one model (e2e-copy) and one folder that is not a model."""
    root = tmp_path / "bundled"
    (root / "e2e-copy").mkdir(parents=True)
    (root / "e2e-copy" / "config.json").write_text("{}", encoding="utf-8")
    (root / "notes").mkdir()
    monkeypatch.setattr(registry, "BUNDLED_DIRECTORY", root)
    return root


def test_an_existing_directory_wins_over_a_bundled_name(tmp_path: Path, bundled: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "e2e-copy").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("e2e-copy") == Path("e2e-copy")
    assert resolve_model(tmp_path / "e2e-copy") == tmp_path / "e2e-copy"


def test_a_bundled_name_resolves_into_the_package(bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert bundled_models() == ["e2e-copy"]
    assert resolve_model("e2e-copy") == bundled / "e2e-copy"


def test_an_unknown_name_lists_the_bundled_models(bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AigcError, match=r"model 'tiny' not found: .*\(bundled: e2e-copy\); pass a model directory") as error:
        resolve_model("tiny")
    assert error.value.param == "model"


def test_a_file_is_not_a_model_directory(tmp_path: Path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(AigcError, match="is a file, not a model directory"):
        resolve_model(tmp_path / "model.safetensors")


def test_no_bundled_folder_means_no_bundled_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(registry, "BUNDLED_DIRECTORY", tmp_path / "absent")
    assert bundled_models() == []
    with pytest.raises(AigcError, match="bundled: none installed"):
        resolve_model("e2e-copy")
