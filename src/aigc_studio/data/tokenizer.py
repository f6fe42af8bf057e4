"""Tokenizers: byte-level BPE (English, Chinese, anything in UTF-8), character level or whitespace-separated
words (symbolic formats such as the music tokens of :mod:`aigc_studio.music.tokens`), via HF ``tokenizers``.

Both kinds are plain ``tokenizer.json`` files that the Hugging Face ecosystem loads unchanged. The special
tokens of :data:`SPECIAL_TOKENS` always take ids 0..15 in that order, so every model and data set of this
project agrees on what ``<bos>``, ``<sep>`` and ``<eos>`` are (see docs/architecture.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write, require_file

PAD, BOS, EOS, SEP, UNK, MASK = "<pad>", "<bos>", "<eos>", "<sep>", "<unk>", "<mask>"
# Reserved now so that later formats (chat roles, tool calls) never shift the ids of trained models.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, SEP, UNK, MASK) + tuple(f"<|reserved_{i}|>" for i in range(10))

TokenizerKind = Literal["bpe", "char", "word"]
# CJK Unified Ideographs (with extension A and the compatibility block), kana and Hangul syllables.
CJK_CHARACTER = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]"
TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "char", "word")


class TextTokenizer:
    """A trained tokenizer with this project's special tokens; ``encode`` never adds specials itself."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        for expected_id, token in enumerate(SPECIAL_TOKENS[:5]):
            if tokenizer.token_to_id(token) != expected_id:
                raise AigcError(
                    f"tokenizer does not reserve {token!r} as id {expected_id}; "
                    "retrain it with `aigc data prepare` so it follows this project's special tokens"
                )
        self.tokenizer = tokenizer
        self.pad_id, self.bos_id, self.eos_id, self.sep_id, self.unk_id = range(5)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def kind(self) -> str:
        if not isinstance(self.tokenizer.model, models.WordLevel):
            return "bpe"
        return "word" if isinstance(self.tokenizer.pre_tokenizer, pre_tokenizers.WhitespaceSplit) else "char"

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without any special token."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts at once (parallel in Rust)."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; special tokens are dropped unless ``skip_special_tokens`` is False."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The readable text of each token on its own (for explanations and logprobs)."""
        return [self.tokenizer.decode([token_id], skip_special_tokens=False) for token_id in ids]

    def save(self, path: str | Path) -> Path:
        """Atomically write ``tokenizer.json`` to ``path``."""
        return atomic_write(path, self.tokenizer.to_str())

    @classmethod
    def from_file(cls, path: str | Path) -> TextTokenizer:
        path = require_file(path, "tokenizer file")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises a bare Exception on any parse problem
            raise AigcError(f"cannot read tokenizer {path}: {error}; it must be a Hugging Face tokenizer.json") from None
        return cls(tokenizer)


def train_tokenizer(texts: Iterable[str], kind: TokenizerKind = "bpe", vocab_size: int = 8192) -> TextTokenizer:
    """Train a tokenizer on ``texts``.

    Args:
        texts: the training corpus (sources and targets alike).
        kind: ``"bpe"`` for byte-level BPE (handles any Unicode, so Chinese and English mix freely) or
            ``"char"`` for one token per character (``vocab_size`` is then ignored: every character seen
            gets an id, anything unseen maps to ``<unk>``) or ``"word"`` for one token per whitespace-separated
            word (likewise every word seen, ``vocab_size`` ignored; decoding joins tokens with single spaces).
        vocab_size: BPE vocabulary size including the special tokens and the 256 byte tokens.

    Raises:
        AigcError: unknown ``kind`` or a ``vocab_size`` too small to hold the specials and the bytes.
    """
    if kind == "char":
        return TextTokenizer(_train_char_tokenizer(texts))
    if kind == "word":
        return TextTokenizer(_train_word_tokenizer(texts))
    if kind != "bpe":
        raise AigcError(f"unknown tokenizer kind {kind!r}; choose one of: {', '.join(TOKENIZER_KINDS)}", param="tokenizer")
    minimum = len(SPECIAL_TOKENS) + 256
    if vocab_size < minimum:
        raise AigcError(f"vocab size {vocab_size} is too small for byte-level BPE; use at least {minimum}", param="vocab_size")
    tokenizer = Tokenizer(models.BPE())
    # Each CJK character is split off before the byte-level step, so no token ever ends inside a character's
    # UTF-8 bytes: an undertrained model then cannot join halves of two characters into U+FFFD.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CJK_CHARACTER), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tokenizer)


def _train_char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    # Sorted so the same corpus always gives the same ids, whatever order it was read in.
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for character in sorted(counts):
        vocab.setdefault(character, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def _train_word_tokenizer(texts: Iterable[str]) -> Tokenizer:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text.split())
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(counts):
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No decoder: the library then joins the decoded tokens with single spaces, the inverse of the split.
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def tokenizer_languages(tokenizer: TextTokenizer) -> tuple[str, ...]:
    """The languages a tokenizer's vocabulary was learned from: ``"en"`` when it holds Latin words, ``"zh"``
    when it holds Chinese characters (a byte-level BPE can *encode* anything, but a model only writes what its
    training data had, so this is what a model trained with it can write)."""
    pieces = [tokenizer.decode([token_id]) for token_id in range(len(SPECIAL_TOKENS), tokenizer.vocab_size)]
    languages = []
    if any(re.search(r"[A-Za-z]{2}", piece) for piece in pieces):
        languages.append("en")
    if any(re.search(CJK_CHARACTER, piece) for piece in pieces):
        languages.append("zh")
    return tuple(languages)
