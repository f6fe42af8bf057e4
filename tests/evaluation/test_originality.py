from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.originality import NgramIndex, copied_ngram_share, longest_copied_span, ngram_hashes

CORPUS = [
    "The Eagle is a cheap coffee shop by the river near Burger King and it is family friendly",
    "Fitzbillies serves expensive French food in the city centre",
]


def test_ngram_hashes_are_stable_and_case_insensitive():
    first = ngram_hashes("The cat sat on the mat", 3)
    assert first.dtype == np.uint64 and len(first) == 4
    assert np.array_equal(first, ngram_hashes("the CAT sat, on the mat!", 3))
    assert len(ngram_hashes("too short", 3)) == 0


def test_longest_copied_span_counts_tokens_of_the_copied_run():
    index = NgramIndex.build(CORPUS, n=4)
    # "a cheap coffee shop by the river" (7 tokens) is copied; the rest is new.
    text = "Visit us: a cheap coffee shop by the river with jazz every night"
    assert longest_copied_span(text, index) == 7
    assert longest_copied_span("A brand new sentence about nothing at all", index) == 0


def test_copied_ngram_share_is_the_fraction_of_ngrams_found():
    index = NgramIndex.build(CORPUS, n=4)
    # 11 tokens -> 8 four-grams, of which only "in the city centre" is in the corpus.
    text = "my pub sits far away from here in the city centre"
    assert copied_ngram_share(text, index) == pytest.approx(1 / 8)
    assert copied_ngram_share(CORPUS[1], index) == pytest.approx(1.0)
    assert copied_ngram_share("short", index) == 0.0


def test_chinese_text_is_indexed_by_characters():
    index = NgramIndex.build(["这款宽松牛仔裤采用优质面料"], n=4)
    assert longest_copied_span("全新宽松牛仔裤上市", index) == 5


def test_saved_index_loads_memory_mapped_with_the_same_answers(tmp_path: Path):
    index = NgramIndex.build(CORPUS, n=4)
    index.save(tmp_path / "index")
    loaded = NgramIndex.load(tmp_path / "index")
    assert isinstance(loaded.hashes, np.memmap)
    assert (loaded.n, loaded.num_texts, len(loaded)) == (4, 2, len(index))
    text = "a cheap coffee shop by the river"
    assert longest_copied_span(text, loaded) == longest_copied_span(text, index) == 7


def test_index_hashes_are_sorted_and_unique():
    index = NgramIndex.build(CORPUS + CORPUS, n=3)
    assert np.all(index.hashes[:-1] < index.hashes[1:])


def test_n_must_match_the_index_and_be_positive():
    index = NgramIndex.build(CORPUS, n=4)
    with pytest.raises(AigcError, match="holds 4-grams, not 8-grams") as error:
        copied_ngram_share("text", index, n=8)
    assert error.value.param == "n"
    with pytest.raises(AigcError, match="at least 1"):
        NgramIndex.build(CORPUS, n=0)


def test_loading_a_missing_or_foreign_directory_says_how_to_fix_it(tmp_path: Path):
    with pytest.raises(AigcError, match="not found"):
        NgramIndex.load(tmp_path)
    NgramIndex.build(CORPUS, n=4).save(tmp_path)
    (tmp_path / "ngram_index.json").write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(AigcError, match="rebuild the index"):
        NgramIndex.load(tmp_path)
