"""`aigc serve --model NAME` takes the names of aigc.toml's [models.NAME] tables, like every other command."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from aigc_studio.models.registry import resolve_model
from aigc_studio.server.app import create_app
from aigc_studio.settings import load_settings


def test_a_registry_model_is_served_under_its_table_name(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'aigc.db'}",
        watermark={"key_file": tmp_path / "watermark.key"},
        models={"house-copy": {"backend": "builtin", "path": str(resolve_model("e2e-copy"))}},
    )
    with TestClient(create_app(settings, models=["house-copy"])) as client:
        listed = client.get("/v1/models").json()
        assert [model["id"] for model in listed["data"]] == ["house-copy"]
        answer = client.post("/v1/completions", json={"model": "house-copy", "prompt": "name[The Eagle], eatType[pub]",
                                                      "max_tokens": 30, "seed": 3})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "house-copy" and "The Eagle" in answer.json()["choices"][0]["text"]
        unknown = client.post("/v1/completions", json={"model": "e2e-copy", "prompt": "name[The Eagle]"})
        assert unknown.status_code == 404
