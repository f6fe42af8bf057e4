import pytest

from aigc_studio.data.tokenizer import SPECIAL_TOKENS, TextTokenizer, train_tokenizer
from aigc_studio.errors import AigcError

CHINESE = ["简约而不简单的牛仔外套，白色的衣身十分百搭。", "这款针织两件套连衣裙，复古又文艺。"] * 30
ENGLISH = ["The Eagle is a riverside pub near Burger King.\n", "Cheap Italian food in the city centre."] * 30


def test_special_tokens_take_the_first_ids_in_both_kinds():
    for kind in ("bpe", "char"):
        tokenizer = train_tokenizer(CHINESE + ENGLISH, kind, 400)
        assert [tokenizer.tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_round_trip_of_mixed_chinese_and_english(kind, tmp_path):
    tokenizer = train_tokenizer(CHINESE + ENGLISH, kind, 400)
    text = "白色的牛仔外套，near the riverside.\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    tokenizer.save(tmp_path / "tokenizer.json")
    assert TextTokenizer.from_file(tmp_path / "tokenizer.json").encode(text) == tokenizer.encode(text)


def test_bpe_tokens_never_span_two_chinese_characters():
    tokenizer = train_tokenizer(CHINESE, "bpe", 600)
    for text in CHINESE[:2]:
        pieces = tokenizer.token_strings(tokenizer.encode(text))
        # every token is a whole character (or part of one): none decodes to two CJK characters
        assert all(sum("\u4e00" <= ch <= "\u9fff" for ch in piece) <= 1 for piece in pieces)
        assert len(pieces) == len(text)  # seen characters are one token each


def test_bad_tokenizer_settings_are_user_errors(tmp_path):
    with pytest.raises(AigcError, match="unknown tokenizer kind"):
        train_tokenizer(ENGLISH, "wordpiece")  # type: ignore[arg-type]
    with pytest.raises(AigcError, match="too small"):
        train_tokenizer(ENGLISH, "bpe", 100)
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(AigcError, match="cannot read tokenizer"):
        TextTokenizer.from_file(broken)
