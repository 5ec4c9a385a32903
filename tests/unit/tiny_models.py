"""Tiny causal LMs built offline from a config, for tests (no download, a few ms to build).

The tokenizer is byte-level with no merges (every UTF-8 byte is one token), so any text
round-trips, plus ChatML special tokens and a ChatML chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_tokenizer(*, chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (~259 tokens) with ChatML specials; EOS is ``<|im_end|>``."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: index for index, char in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    if chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def make_tiny_causal_lm(path: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a tiny Llama (2 layers, hidden 32) and its tokenizer to ``path``; return ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tiny_tokenizer(chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        # Wide init: with the default 0.02 the frozen (tied) head keeps logits near uniform
        # and a LoRA adapter can barely move the loss in a few steps.
        initializer_range=0.2,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    # Seeded so two builds give the same weights (tests compare runs).
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_adapter(base_dir: Path, folder: Path, *, seed: int, version: str) -> Path:
    """A random (non-zero) LoRA adapter over ``base_dir``, saved as train.py saves one."""
    from peft import LoraConfig, get_peft_model

    from tuneloop.models.loading import load_model_dir, write_model_metadata

    base, tokenizer = load_model_dir(base_dir)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(folder)
    write_model_metadata(folder, str(base_dir), model_version=version)
    return folder


# Where the SageMaker training contract puts each path, relative to the job's root.
SAGEMAKER_JOB_PATHS = {
    "SM_CHANNEL_TRAIN": "input/data/train",
    "SM_CHANNEL_REPLAY": "input/data/replay",
    "SM_MODEL_DIR": "model",
    "SM_OUTPUT_DATA_DIR": "output/data",
    "SM_OUTPUT_DIR": "output",
    "SM_INPUT_CONFIG_DIR": "input/config",
}


def set_training_job_env(
    env: Any, root: Path, *, replay: bool = False, cache: bool = True, offline: bool = True
) -> None:
    """SM_* variables of a training job rooted at ``root`` (``env``: a pytest MonkeyPatch)."""
    for name, sub in SAGEMAKER_JOB_PATHS.items():
        if name != "SM_CHANNEL_REPLAY" or replay:
            env.setenv(name, str(root / sub))
    env.delenv("SM_HPS", raising=False)
    if cache:
        env.setenv("TUNELOOP_CACHE_DIR", str(root / "cache"))
    if offline:
        env.setenv("TUNELOOP_OFFLINE", "1")
