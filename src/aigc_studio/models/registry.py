"""Where a model name points: a model directory the user gives, or a model bundled with the package.

Bundled models live in ``aigc_studio/bundled/NAME/`` (package data: ``config.json``, ``model.safetensors``,
``tokenizer.json``, ...). :func:`resolve_model` is the one place that turns a ``--model`` value into a
directory, so the CLI, the pipeline and the server agree on what a name means.
"""

from __future__ import annotations

from pathlib import Path

from aigc_studio.errors import AigcError

BUNDLED_DIRECTORY = Path(__file__).resolve().parent.parent / "bundled"


def bundled_models() -> list[str]:
    """Names of the bundled models (directories under ``aigc_studio/bundled/`` holding a ``config.json``), sorted."""
    if not BUNDLED_DIRECTORY.is_dir():
        return []
    return sorted(path.name for path in BUNDLED_DIRECTORY.iterdir() if (path / "config.json").is_file())


def resolve_model(name_or_dir: str | Path) -> Path:
    """The model directory for a ``--model`` value.

    An existing directory wins; otherwise the name of a bundled model.

    Args:
        name_or_dir: a model directory (written by ``aigc train``) or a bundled model's name (``e2e-copy``).

    Returns:
        The directory (its files are checked when it is loaded).

    Raises:
        AigcError: neither a directory nor a bundled model; the message lists the bundled names.
    """
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if path.exists():
        raise AigcError(f"model {str(name_or_dir)!r} is a file, not a model directory; pass the directory that holds "
                        "config.json", param="model")
    name = str(name_or_dir)
    if name in bundled_models():
        return BUNDLED_DIRECTORY / name
    available = ", ".join(bundled_models()) or "none installed"
    raise AigcError(
        f"model {name!r} not found: no such directory and no bundled model of that name (bundled: {available}); "
        "pass a model directory written by `aigc train`",
        param="model",
    )
