"""Hybrid search: BM25 (``bm25s``) and dense cosine similarity, fused by reciprocal rank.

::

    index = HybridIndex.open("var/support/index", embedder=load_embedder("minilm"))
    index.upsert([Document(id="a1", text="How do I reset my PIN?", content_hash="...")])
    index.save()
    hits = index.search("forgot my pin", k=5)                # mode="hybrid" | "bm25" | "dense"

Words: English is lower-cased, stop words dropped and Snowball-stemmed (``arrived`` and ``arrival`` meet);
Chinese runs of characters become jieba words plus character bigrams, so a query still matches when jieba
segments it differently from the document.

Reciprocal-rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009) scores each document by
``sum over rankers of 1 / (k + rank)`` with ``k = 60``: it needs no score calibration between BM25's
unbounded scores and cosine similarities, and a document that both rankers like rises to the top.

On disk an index is a folder: ``index.json`` (ids, content hashes, BM25 tokens, the embedder's name) and
``embeddings.safetensors`` (one row per document). Updates are incremental: :meth:`HybridIndex.upsert`
embeds only documents whose content hash is new, :meth:`HybridIndex.remove` drops rows; the BM25 matrix
is rebuilt from the stored tokens, which takes milliseconds for thousands of entries. Nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json, atomic_write_with
from aigc_studio.support.embeddings import Embedder

SearchMode = Literal["hybrid", "bm25", "dense"]
SEARCH_MODES: tuple[str, ...] = ("hybrid", "bm25", "dense")
RRF_K = 60  # the constant of Cormack et al. 2009
CANDIDATES = 50  # how deep each ranker's list goes into the fusion
INDEX_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
FORMAT_VERSION = 1

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[a-z0-9]+(?:'[a-z]+)?")


@lru_cache(maxsize=1)
def _stemmer():  # noqa: ANN202 - nltk has no types
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    # Negations change a support question's meaning ("card not working"): keep them.
    return frozenset(STOPWORDS_EN_PLUS) - {"not", "no", "nor", "never"}


@lru_cache(maxsize=1)
def _jieba():  # noqa: ANN202 - jieba has no types
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs "Building prefix dict..." at INFO on first use
    return jieba


def tokenize(text: str) -> list[str]:
    """BM25 terms of ``text``: stemmed English words without stop words; jieba words and bigrams for Chinese."""
    jieba = _jieba()

    terms: list[str] = []
    stem, stop = _stemmer().stem, _stopwords()
    for match in _TOKEN.finditer(text.lower()):
        token = match.group()
        if re.match(rf"[{_CJK}]", token):
            terms.extend(word for word in jieba.lcut(token) if word.strip())
            terms.extend(token[i : i + 2] for i in range(len(token) - 1))
            if len(token) == 1:
                terms.append(token)
        elif token not in stop:
            terms.append(stem(token.replace("'", "")))
    return terms


@dataclass(frozen=True)
class Document:
    """What the index holds per entry: its id, the text searched and the hash that says when it changed."""

    id: str
    text: str
    content_hash: str


@dataclass(frozen=True)
class SearchHit:
    """One result: the entry id, its fused score, and its 1-based rank in each ranker (None: not in top 50)."""

    id: str
    score: float
    bm25_rank: int | None
    dense_rank: int | None


class HybridIndex:
    """A BM25 + dense index over documents, persisted to a folder and updated incrementally.

    Args:
        path: the folder it is saved to.
        embedder: computes the dense vectors; an index saved with another embedder is re-embedded on
            :meth:`open` (the stored texts make that possible).
    """

    def __init__(self, path: str | Path, embedder: Embedder) -> None:
        self.path = Path(path)
        self.embedder = embedder
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.hashes: list[str] = []
        self.tokens: list[list[str]] = []
        self.vectors = np.zeros((0, embedder.dim), dtype=np.float32)
        self._bm25 = None  # built lazily from self.tokens

    # ---------------------------------------------------------------------------------------------- disk

    @classmethod
    def open(cls, path: str | Path, embedder: Embedder) -> HybridIndex:
        """The index saved in ``path``, or an empty one if the folder holds none yet.

        Raises:
            AigcError: the folder holds a damaged or unknown index; the message says to rebuild it.
        """
        index = cls(path, embedder)
        meta_path = index.path / INDEX_FILE
        if not meta_path.exists():
            return index
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format')!r}")
            docs = meta["documents"]
            index.ids = [doc["id"] for doc in docs]
            index.texts = [doc["text"] for doc in docs]
            index.hashes = [doc["content_hash"] for doc in docs]
            index.tokens = [doc["tokens"] for doc in docs]
            vectors = _load_vectors(index.path / EMBEDDINGS_FILE) if docs else None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise AigcError(
                f"the search index in {index.path} is damaged ({error}); delete the folder and run `aigc support kb add` again"
            ) from None
        if meta.get("embedder") == embedder.name and vectors is not None and vectors.shape == (len(docs), embedder.dim):
            index.vectors = vectors
        else:  # saved by another embedder (or not at all): the texts are here, embed them again
            index.vectors = embedder.embed_passages(index.texts)
        return index

    def save(self) -> Path:
        """Write the index to its folder atomically (two files; the JSON last, so it never names missing rows)."""
        from safetensors.numpy import save_file

        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_with(
            self.path / EMBEDDINGS_FILE,
            lambda tmp: save_file({"vectors": np.ascontiguousarray(self.vectors)}, str(tmp), metadata={"embedder": self.embedder.name}),
        )
        documents = [
            {"id": i, "content_hash": h, "text": t, "tokens": tok}
            for i, h, t, tok in zip(self.ids, self.hashes, self.texts, self.tokens)
        ]
        atomic_write_json(
            self.path / INDEX_FILE,
            {"format": FORMAT_VERSION, "embedder": self.embedder.name, "dim": self.embedder.dim, "documents": documents},
        )
        return self.path

    # ------------------------------------------------------------------------------------------- updates

    def __len__(self) -> int:
        return len(self.ids)

    def upsert(self, documents: Iterable[Document]) -> int:
        """Add new documents and replace changed ones (same id, new content hash); returns how many were embedded."""
        position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        changed = [doc for doc in documents if doc.id not in position or self.hashes[position[doc.id]] != doc.content_hash]
        if not changed:
            return 0
        vectors = self.embedder.embed_passages([doc.text for doc in changed])
        appended = []
        for doc, vector in zip(changed, vectors):
            if doc.id in position:
                row = position[doc.id]
                self.texts[row], self.hashes[row], self.tokens[row] = doc.text, doc.content_hash, tokenize(doc.text)
                self.vectors[row] = vector
            else:
                position[doc.id] = len(self.ids)
                self.ids.append(doc.id)
                self.texts.append(doc.text)
                self.hashes.append(doc.content_hash)
                self.tokens.append(tokenize(doc.text))
                appended.append(vector)
        if appended:
            self.vectors = np.vstack([self.vectors, np.stack(appended)]).astype(np.float32)
        self._bm25 = None
        return len(changed)

    def remove(self, ids: Iterable[str]) -> int:
        """Drop the documents with these ids; returns how many were there."""
        drop = set(ids)
        keep = [i for i, doc_id in enumerate(self.ids) if doc_id not in drop]
        removed = len(self.ids) - len(keep)
        if removed:
            self.ids = [self.ids[i] for i in keep]
            self.texts = [self.texts[i] for i in keep]
            self.hashes = [self.hashes[i] for i in keep]
            self.tokens = [self.tokens[i] for i in keep]
            self.vectors = self.vectors[keep]
            self._bm25 = None
        return removed

    # -------------------------------------------------------------------------------------------- search

    def bm25_scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (zeros when no query term is in the index)."""
        if not self.ids:
            return np.zeros(0, dtype=np.float32)
        if self._bm25 is None:
            import bm25s

            self._bm25 = bm25s.BM25()
            # An empty document still needs a row; "" is bm25s's empty token.
            self._bm25.index([tokens or [""] for tokens in self.tokens], show_progress=False)
        terms = [term for term in tokenize(query) if term in self._bm25.vocab_dict]
        if not terms:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(terms), dtype=np.float32)

    def dense_scores(self, query: str, query_vector: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of every document to ``query`` (``query_vector``: its embedding by this index's
        embedder, when the caller already has it)."""
        if not self.ids:
            return np.zeros(0, dtype=np.float32)
        return self.vectors @ (self.embedder.embed_queries([query])[0] if query_vector is None else query_vector)

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid",
               query_vector: np.ndarray | None = None) -> list[SearchHit]:
        """The ``k`` best documents for ``query``.

        Args:
            query: the question, any language the embedder reads.
            k: how many hits to return (at most the index size).
            mode: ``"hybrid"`` (reciprocal-rank fusion of both), ``"bm25"`` or ``"dense"``.
            query_vector: the query's embedding by this index's embedder, when already computed (the
                assistant's router embeds each message with the same model).

        Raises:
            AigcError: an empty query, ``k < 1`` or an unknown mode.
        """
        if mode not in SEARCH_MODES:
            raise AigcError(f"unknown search mode {mode!r}; use one of: {', '.join(SEARCH_MODES)}", param="mode")
        if not query or not query.strip():
            raise AigcError("the search query is empty; give a question to search for", param="query")
        if k < 1:
            raise AigcError(f"k must be at least 1, got {k}", param="k")
        if not self.ids:
            return []
        bm25_ranks = _ranks(self.bm25_scores(query), positive_only=True) if mode != "dense" else {}
        dense_ranks = _ranks(self.dense_scores(query, query_vector)) if mode != "bm25" else {}
        if mode == "bm25":
            fused = {row: 1.0 / (RRF_K + rank) for row, rank in bm25_ranks.items()}
        elif mode == "dense":
            fused = {row: 1.0 / (RRF_K + rank) for row, rank in dense_ranks.items()}
        else:
            fused = reciprocal_rank_fusion([bm25_ranks, dense_ranks])
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        return [SearchHit(self.ids[row], score, bm25_ranks.get(row), dense_ranks.get(row)) for row, score in best]


def reciprocal_rank_fusion(rankings: Sequence[dict[int, int]], k: int = RRF_K) -> dict[int, float]:
    """Fuse rankings (item -> 1-based rank) into item -> ``sum 1 / (k + rank)`` (Cormack et al. 2009)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for item, rank in ranking.items():
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def _ranks(scores: np.ndarray, *, positive_only: bool = False, depth: int = CANDIDATES) -> dict[int, int]:
    """Row -> 1-based rank of the ``depth`` best scores (BM25: only documents sharing a term with the query)."""
    order = np.argsort(-scores, kind="stable")[:depth]
    if positive_only:
        order = [row for row in order if scores[row] > 0]
    return {int(row): rank for rank, row in enumerate(order, start=1)}


def _load_vectors(path: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(path))["vectors"]
