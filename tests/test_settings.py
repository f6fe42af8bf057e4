"""Settings: defaults, then aigc.toml, then AIGC_* environment variables, then explicit overrides."""

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ("AIGC_CONFIG", "AIGC_DATABASE_URL", "AIGC_SERVER__PORT", "AIGC_DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_local_and_safe():
    settings = load_settings()
    assert settings.database_url == "sqlite:///var/aigc.db"
    assert settings.server.host == "127.0.0.1"
    assert settings.server.cors_origins == []
    assert settings.watermark.enabled


def test_file_then_environment_then_overrides(tmp_path, monkeypatch):
    (tmp_path / "aigc.toml").write_text('database_url = "sqlite:///file.db"\n[server]\nport = 9000\n')
    assert load_settings().server.port == 9000
    assert load_settings().database_url == "sqlite:///file.db"
    monkeypatch.setenv("AIGC_SERVER__PORT", "9100")
    monkeypatch.setenv("AIGC_DATABASE_URL", "sqlite:///env.db")
    settings = load_settings()
    assert (settings.server.port, settings.database_url) == (9100, "sqlite:///env.db")
    assert load_settings(database_url="sqlite:///flag.db").database_url == "sqlite:///flag.db"


def test_named_config_file(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text('default_model = "my-model"\n')
    assert load_settings(path).default_model == "my-model"


def test_bad_settings_name_the_key(tmp_path):
    (tmp_path / "bad.toml").write_text("[server]\nprot = 1\n")
    with pytest.raises(AigcError, match="server.prot"):
        load_settings(tmp_path / "bad.toml")
    (tmp_path / "range.toml").write_text("[server]\nport = 70000\n")
    with pytest.raises(AigcError, match="server.port"):
        load_settings(tmp_path / "range.toml")
    with pytest.raises(AigcError, match="not found"):
        load_settings(tmp_path / "missing.toml")
