"""Text models (a Llama-style GPT and an LSTM) behind one interface, and model directories to save them in.

See docs/architecture.md "Models" for the interface every model class keeps.
"""

from aigc_studio.models.gpt import GPT, GPTConfig, KVCache, llama_config, llama_state_dict
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel, LSTMState
from aigc_studio.models.model_dir import (
    MODEL_TYPES,
    GenerationConfig,
    LoadedModel,
    ModelCard,
    load_pretrained,
    save_pretrained,
    weights_sha256,
)

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTMState",
    "MODEL_TYPES",
    "GenerationConfig",
    "LoadedModel",
    "ModelCard",
    "llama_config",
    "llama_state_dict",
    "load_pretrained",
    "save_pretrained",
    "weights_sha256",
]
