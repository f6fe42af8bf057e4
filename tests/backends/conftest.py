"""Tiny random transformers models (a Llama with a chat template, a GPT-2 without) saved to temporary folders.

Both share a byte-level BPE tokenizer trained here with this project's special tokens, wrapped as a
``PreTrainedTokenizerFast``: ids 0..15 are the specials, so the watermark detector skips the same ids as for
our own models.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aigc_studio.data.tokenizer import train_tokenizer

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "The Eagle is a riverside pub that serves French food at moderate prices.",
    "A family friendly coffee shop near the city centre, rated five out of five.",
    "Write a short, upbeat ad for a cheap Italian restaurant by the river.",
    "name: Aromi | food: Italian | area: city centre | near: The Bakers",
]
CONTEXT = 1024  # room for the tasks' instruction prompts, a few hundred tokens with this small vocabulary
# A chat template in Llama's spirit, with two of our reserved tokens as the role markers.
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|reserved_0|>{{ message['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}<|reserved_1|>{% endif %}")


def hf_tokenizer(chat_template: str | None = None):
    """Our BPE tokenizer as a transformers fast tokenizer with <bos>/<eos>/<pad>/<sep>."""
    ours = train_tokenizer(SENTENCES, kind="bpe", vocab_size=300)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=ours.tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", sep_token="<sep>",
        unk_token="<unk>", clean_up_tokenization_spaces=False)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def save_model(model, tokenizer, directory: Path) -> Path:
    model.generation_config.bos_token_id, model.generation_config.eos_token_id = 1, 2
    model.generation_config.pad_token_id = 0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random ``LlamaForCausalLM`` whose tokenizer has a chat template."""
    tokenizer = hf_tokenizer(CHAT_TEMPLATE)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return save_model(transformers.LlamaForCausalLM(config).eval(), tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random ``GPT2LMHeadModel`` (learned absolute positions, no chat template)."""
    tokenizer = hf_tokenizer()
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return save_model(transformers.GPT2LMHeadModel(config).eval(), tokenizer, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(params=["llama", "gpt2"])
def tiny_hf_dir(request: pytest.FixtureRequest) -> Path:
    """Each tiny transformers model in turn."""
    return request.getfixturevalue(f"tiny_{request.param}_dir")
