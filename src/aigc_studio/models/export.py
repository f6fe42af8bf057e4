"""Export builtin models for other runtimes: a GPT as a Hugging Face ``LlamaForCausalLM`` directory, an LSTM as
TorchScript.

::

    export_model("var/models/e2e-gpt", "var/export/e2e-gpt-hf", "hf")
    # transformers.AutoModelForCausalLM.from_pretrained("var/export/e2e-gpt-hf") gives our logits (fp32, <= 1e-4)

**hf** (GPT only). Our GPT is a Llama block for block (RMSNorm, rotary positions, SwiGLU, no biases), so the
export is a renaming (:func:`~aigc_studio.models.gpt.llama_state_dict`, :func:`~aigc_studio.models.gpt.llama_config`)
plus the files every Llama loader reads: ``config.json``, ``model.safetensors``, ``tokenizer.json`` (our
tokenizer, with a post-processor that puts ``<bos>`` in front as Llama tokenizers do), ``tokenizer_config.json``
(the special tokens; a records model also gets a chat template that renders ``<bos> source <sep>``, so a
chat endpoint of vLLM or TGI prompts it correctly), ``generation_config.json`` (transformers' names, plus our
``prompt_format``, ``sep_token_id`` and ``delexicalized_slots``, which the transformers backend reads) and
the model card. vLLM, TGI and llama.cpp's ``convert_hf_to_gguf.py`` load such a directory.

**torchscript** (LSTM; the GPT too, but hf is the better choice for it). ``model.pt`` is a traced module
``input_ids (B, T) -> logits (B, T, V)``, loaded with ``torch.jit.load`` from Python or C++ (libtorch) without
this package; the model directory's other files (config, tokenizer, generation config, card) go with it.
TorchScript rather than ONNX: it needs no extra package, and the LSTM traces to one fused ``aten::lstm`` op.
(torch 2.13 marks ``torch.jit`` deprecated in favour of ``torch.export``; its ``.pt2`` files are the successor
format once libtorch-only deployments can read them.)
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, processors
from torch import nn

from aigc_studio.data.tokenizer import BOS, EOS, MASK, PAD, SEP, UNK
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write, atomic_write_json, atomic_write_with
from aigc_studio.models.gpt import GPT, llama_config, llama_state_dict
from aigc_studio.models.lstm import LSTMLanguageModel
from aigc_studio.models.model_dir import (
    CARD_FILE,
    CONFIG_FILE,
    GENERATION_CONFIG_FILE,
    TOKENIZER_FILE,
    LoadedModel,
    load_pretrained,
)

ExportFormat = Literal["hf", "torchscript"]
EXPORT_FORMATS: tuple[str, ...] = ("hf", "torchscript")
TORCHSCRIPT_FILE = "model.pt"
# A records model's prompt is `<bos> source <sep>`: the last user message is the source.
RECORDS_CHAT_TEMPLATE = "{{ bos_token }}{{ messages[-1]['content'] }}" + SEP


def export_model(model_dir: str | Path, out: str | Path, export_format: str, *, dtype: torch.dtype | None = None) -> Path:
    """Export the model directory ``model_dir`` (written by ``aigc train``) to ``out`` in ``export_format``.

    Args:
        model_dir: a builtin model directory.
        out: the directory to write (created; files already there are replaced).
        export_format: ``"hf"`` (a GPT as ``LlamaForCausalLM``) or ``"torchscript"``.
        dtype: store hf weights in this dtype (e.g. ``torch.bfloat16``); None keeps float32.

    Returns:
        ``out``.

    Raises:
        AigcError: an unknown format, a model the format does not fit (an LSTM as hf), or ``out`` being
            the model directory itself.
    """
    if export_format not in EXPORT_FORMATS:
        raise AigcError(f"unknown export format {export_format!r}; use one of: {', '.join(EXPORT_FORMATS)}", param="format")
    out = Path(out)
    if out.resolve() == Path(model_dir).resolve():
        raise AigcError("--out is the model directory itself; export to a new directory", param="out")
    loaded = load_pretrained(model_dir)
    if export_format == "hf":
        return export_llama(loaded, out, dtype=dtype)
    return export_torchscript(loaded, out)


def export_llama(loaded: LoadedModel, out: Path, *, dtype: torch.dtype | None = None) -> Path:
    """Write ``loaded`` (a GPT) as a ``LlamaForCausalLM`` directory; see the module docstring for the files.

    Raises:
        AigcError: the model is not a GPT.
    """
    model = loaded.model
    if not isinstance(model, GPT):
        raise AigcError(f"only the GPT exports to the Hugging Face Llama format; this is {model.model_type!r}: use "
                        "--format torchscript", param="format")
    config, generation = model.config, loaded.generation_config
    tensors = {name: tensor.detach().to("cpu", dtype or torch.float32).contiguous()
               for name, tensor in llama_state_dict(model).items()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_with(out / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))

    # Llama tokenizers put <bos> in front of every encoded text; ours leaves specials to the caller.
    tokenizer = Tokenizer.from_str(loaded.tokenizer.tokenizer.to_str())  # a copy: the loaded one stays as it was
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))])
    atomic_write(out / TOKENIZER_FILE, tokenizer.to_str())
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "sep_token": SEP, "unk_token": UNK, "mask_token": MASK,
        "model_max_length": generation.max_length or config.block_size,
        "clean_up_tokenization_spaces": False,
    }
    if generation.prompt_format == "records":
        tokenizer_config["chat_template"] = RECORDS_CHAT_TEMPLATE
    atomic_write_json(out / "tokenizer_config.json", tokenizer_config)

    sampling = {"do_sample": False}
    if generation.temperature > 0 and generation.num_beams == 1:
        sampling = {"do_sample": True, "temperature": generation.temperature, "top_k": generation.top_k or None,
                    "top_p": generation.top_p}
    atomic_write_json(out / GENERATION_CONFIG_FILE, {
        "bos_token_id": generation.bos_token_id,
        "eos_token_id": generation.eos_token_id,
        "pad_token_id": generation.pad_token_id,
        **{key: value for key, value in sampling.items() if value is not None},
        "num_beams": generation.num_beams,
        "repetition_penalty": generation.repetition_penalty,
        "max_new_tokens": generation.max_tokens,
        # ours: how the transformers backend prompts the model (docs/backends.md)
        "prompt_format": generation.prompt_format,
        "sep_token_id": generation.sep_token_id,
        "delexicalized_slots": list(generation.delexicalized_slots),
    })
    _write_card(loaded, out, "Hugging Face `LlamaForCausalLM` (transformers, vLLM, TGI, llama.cpp's converter)")
    # config.json last: a directory interrupted before it is not taken for a complete model.
    atomic_write_json(out / CONFIG_FILE, {**llama_config(config), "torch_dtype": str(dtype or torch.float32).removeprefix("torch.")})
    return out


class _LogitsOnly(nn.Module):
    """``forward(input_ids) -> logits``: what a traced module can return (our forward also returns a None loss)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)[0]


def export_torchscript(loaded: LoadedModel, out: Path) -> Path:
    """Write ``loaded`` as a traced TorchScript module (``model.pt``) with its config, tokenizer and card.

    The trace is checked on a second, longer input before anything is written, so a model whose forward
    depends on the sequence length in Python is refused rather than exported wrong.

    Raises:
        AigcError: the traced module does not reproduce the model on that check.
    """
    model = loaded.model.float().eval()
    if not isinstance(model, (GPT, LSTMLanguageModel)):
        raise AigcError(f"no TorchScript export for {model.model_type!r}", param="format")
    wrapper = _LogitsOnly(model).eval()
    example = torch.tensor([[loaded.generation_config.bos_token_id] * 4])
    longer = torch.arange(2 * example.size(1) + 1).remainder(model.config.vocab_size)[None].repeat(2, 1)
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 marks torch.jit deprecated and nn.LSTM's shape checks warn while tracing; the trace is checked
        # on another input shape right below, which is what those warnings are about.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, example, check_trace=False)
        if not torch.allclose(traced(longer), wrapper(longer), atol=1e-5, rtol=0):
            raise AigcError(f"the traced {model.model_type} does not reproduce the model on a longer input; it cannot be "
                            "exported to TorchScript", param="format")
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        atomic_write_with(out / TORCHSCRIPT_FILE, lambda tmp: torch.jit.save(traced, str(tmp)))
    for name in (TOKENIZER_FILE, GENERATION_CONFIG_FILE):
        shutil.copyfile(loaded.directory / name, out / name)
    atomic_write_json(out / "export.json", {"format": "torchscript", "file": TORCHSCRIPT_FILE,
                                           "inputs": "input_ids int64 (batch, length)",
                                           "outputs": "logits float32 (batch, length, vocab_size)",
                                           "generation": asdict(loaded.generation_config)})
    _write_card(loaded, out, "TorchScript (`torch.jit.load`, Python or libtorch)")
    atomic_write_json(out / CONFIG_FILE, loaded.config_dict)
    return out


def _write_card(loaded: LoadedModel, out: Path, runtime: str) -> None:
    card_path = loaded.directory / CARD_FILE
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else f"# {loaded.directory.name}\n"
    note = (f"\n## Export\n\nExported by AIGC Studio (`aigc export`) from `{loaded.directory.name}` for {runtime}. "
            f"Prompt format: `{loaded.generation_config.prompt_format}` "
            f"({'`<bos> source <sep>`' if loaded.generation_config.prompt_format == 'records' else '`<bos> text`'}).\n")
    atomic_write(out / CARD_FILE, card.rstrip("\n") + "\n" + note)

