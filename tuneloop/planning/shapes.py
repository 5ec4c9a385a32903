"""Model shapes: the config numbers the memory estimate needs, and where they come from.

A shape is read from a model folder's ``config.json`` (through transformers' ``AutoConfig``,
which maps family-specific names such as GPT-2's ``n_embd`` onto ``hidden_size``), or, for a
Hugging Face id, from :data:`CATALOGUE` without downloading anything. The catalogue's numbers
are those of each model card's ``config.json`` (``https://huggingface.co/<id>/blob/main/
config.json``); base and instruct variants share an architecture, so they share an entry.

Pure Python: ``cdk synth`` imports this (the stage check), and needs no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Projection:
    """A linear layer of a decoder block: its name, sizes, and which tensor it reads.

    ``reads`` is one of ``attn_in`` (the attention norm's output), ``attn_out`` (the
    attention's output), ``mlp_in`` (the MLP norm's output) and ``mlp_mid`` (the MLP's
    activation); projections that read the same tensor share its saved copy in fp32.
    """

    name: str
    in_features: int
    out_features: int
    reads: str

    @property
    def parameters(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only causal LM, as far as its training memory depends on it."""

    name: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    source: str = ""
    """Where the numbers come from (a model card's config.json, or a local folder)."""

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def gated_mlp(self) -> bool:
        """SwiGLU-style MLP (gate, up, down) rather than GPT-2's two matrices."""
        return self.model_type != "gpt2"

    @property
    def qkv_bias(self) -> bool:
        """Qwen2 has biases on q/k/v (its config says nothing about it); GPT-2 everywhere."""
        return self.model_type in ("qwen2", "gpt2")

    def projections(self) -> tuple[Projection, ...]:
        """The linear layers of one decoder block, by the names the family uses."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.q_dim, self.kv_dim
        if self.model_type == "gpt2":
            return (
                Projection("c_attn", h, 3 * h, "attn_in"),
                Projection("c_proj", h, h, "attn_out"),
                Projection("c_fc", h, i, "mlp_in"),
                Projection("c_proj", i, h, "mlp_mid"),
            )
        if self.model_type == "phi3":
            return (
                Projection("qkv_proj", h, q + 2 * kv, "attn_in"),
                Projection("o_proj", q, h, "attn_out"),
                Projection("gate_up_proj", h, 2 * i, "mlp_in"),
                Projection("down_proj", i, h, "mlp_mid"),
            )
        return (
            Projection("q_proj", h, q, "attn_in"),
            Projection("k_proj", h, kv, "attn_in"),
            Projection("v_proj", h, kv, "attn_in"),
            Projection("o_proj", q, h, "attn_out"),
            Projection("gate_proj", h, i, "mlp_in"),
            Projection("up_proj", h, i, "mlp_in"),
            Projection("down_proj", i, h, "mlp_mid"),
        )

    @property
    def layer_linear_parameters(self) -> int:
        return sum(p.parameters for p in self.projections())

    @property
    def layer_parameters(self) -> int:
        """Linear weights, q/k/v biases and the two norms' weights of one block."""
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        return self.layer_linear_parameters + bias + 2 * self.hidden_size

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def head_parameters(self) -> int:
        """The output head's own weights (0 when it is the tied input embedding)."""
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def parameters(self) -> int:
        """All parameters (a tied head counted once), as ``model.num_parameters()``."""
        return (
            self.embedding_parameters
            + self.num_layers * self.layer_parameters
            + self.hidden_size  # the final norm
            + self.head_parameters
        )

    @property
    def linear_parameters(self) -> int:
        """Parameters of the blocks' linear layers (what LoRA adapts, what QLoRA quantizes)."""
        return self.num_layers * self.layer_linear_parameters


class ShapeError(ValueError):
    """The model's config lacks a number the estimate needs; the message names it."""


def shape_from_config(config: Any, *, name: str = "", source: str = "") -> ModelShape:
    """A shape from a transformers config object or a ``config.json`` mapping."""

    def get(*keys: str, default: Any = None) -> Any:
        for key in keys:
            value = config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)
            if value is not None:
                return value
        return default

    text = get("text_config")  # multimodal configs (Gemma 3) hold the decoder's numbers here
    if text is not None and get("hidden_size", "n_embd") is None:
        return shape_from_config(text, name=name, source=source)
    hidden = get("hidden_size", "n_embd", "d_model")
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    heads = get("num_attention_heads", "n_head")
    vocab = get("vocab_size")
    missing = [
        label
        for label, value in (
            ("hidden_size", hidden),
            ("num_hidden_layers", layers),
            ("num_attention_heads", heads),
            ("vocab_size", vocab),
        )
        if not isinstance(value, int) or value < 1
    ]
    if missing:
        raise ShapeError(f"model config {name or source!r} has no {', '.join(missing)}")
    model_type = str(get("model_type", default=""))
    intermediate = get("intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    return ModelShape(
        name=name or str(get("_name_or_path", default="") or model_type),
        model_type=model_type,
        hidden_size=int(hidden),
        intermediate_size=int(intermediate),
        num_layers=int(layers),
        num_heads=int(heads),
        num_kv_heads=int(get("num_key_value_heads", default=heads)),
        head_dim=int(get("head_dim", default=hidden // heads)),
        vocab_size=int(vocab),
        tie_word_embeddings=bool(get("tie_word_embeddings", default=True)),
        source=source,
    )


def _card(model_id: str) -> str:
    return f"https://huggingface.co/{model_id}/blob/main/config.json"


def _llama_like(
    model_id: str,
    model_type: str,
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    vocab: int,
    tied: bool,
) -> ModelShape:
    return ModelShape(
        name=model_id,
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=hidden // heads,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        source=_card(model_id),
    )


_SMOLLM2_135M = _llama_like(
    "HuggingFaceTB/SmolLM2-135M-Instruct", "llama",
    hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, tied=True,
)  # fmt: skip
_SMOLLM2_360M = _llama_like(
    "HuggingFaceTB/SmolLM2-360M-Instruct", "llama",
    hidden=960, intermediate=2560, layers=32, heads=15, kv_heads=5, vocab=49152, tied=True,
)  # fmt: skip
_SMOLLM2_1_7B = _llama_like(
    "HuggingFaceTB/SmolLM2-1.7B-Instruct", "llama",
    hidden=2048, intermediate=8192, layers=24, heads=32, kv_heads=32, vocab=49152, tied=True,
)  # fmt: skip
_LLAMA_3_1_8B = _llama_like(
    "meta-llama/Llama-3.1-8B-Instruct", "llama",
    hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=128256, tied=False,
)  # fmt: skip
_LLAMA_3_1_70B = _llama_like(
    "meta-llama/Llama-3.1-70B-Instruct", "llama",
    hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8, vocab=128256, tied=False,
)  # fmt: skip
_QWEN2_5_7B = _llama_like(
    "Qwen/Qwen2.5-7B-Instruct", "qwen2",
    hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4, vocab=152064, tied=False,
)  # fmt: skip
_MISTRAL_7B_V03 = _llama_like(
    "mistralai/Mistral-7B-Instruct-v0.3", "mistral",
    hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=32768, tied=False,
)  # fmt: skip
_MISTRAL_7B_V01 = _llama_like(
    "mistralai/Mistral-7B-v0.1", "mistral",
    hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=32000, tied=False,
)  # fmt: skip

CATALOGUE: dict[str, ModelShape] = {
    key.lower(): shape
    for shape, keys in (
        (_SMOLLM2_135M, ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M")),
        (_SMOLLM2_360M, ("HuggingFaceTB/SmolLM2-360M",)),
        (_SMOLLM2_1_7B, ("HuggingFaceTB/SmolLM2-1.7B",)),
        (_LLAMA_3_1_8B, ("meta-llama/Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-8B")),
        (_LLAMA_3_1_70B, ("meta-llama/Llama-3.1-70B", "meta-llama/Meta-Llama-3.1-70B")),
        (_QWEN2_5_7B, ("Qwen/Qwen2.5-7B",)),
        (_MISTRAL_7B_V03, ("mistralai/Mistral-7B-v0.3",)),
        (_MISTRAL_7B_V01, ("mistralai/Mistral-7B-Instruct-v0.1",)),
    )
    for key in (shape.name, *keys)
}
"""Known base models by Hugging Face id (lower case) and TuneLoop's demo reference."""


def catalogue_shape(ref: str) -> ModelShape | None:
    """The catalogue's shape for ``ref`` (``hf://<id>``, a bare id or the demo reference)."""
    return CATALOGUE.get(ref.strip().removeprefix("hf://").strip("/").lower())


def shape_for(ref: str) -> tuple[ModelShape | None, str]:
    """``(shape, "")`` for a base-model reference, or ``(None, why it is unknown)``.

    Nothing is downloaded: a Hugging Face id must be in the catalogue, a folder must hold a
    ``config.json`` (an adapter folder's base is followed); an ``s3://`` model's size is
    unknown until it is fetched.
    """
    known = catalogue_shape(ref)
    if known is not None:
        return known, ""
    if ref.startswith("s3://"):
        return None, f"{ref} is read from S3 at run time; its config is not known here"
    if ref.startswith("hf://"):
        return None, (
            f"{ref} is not in the planner's catalogue (tuneloop/planning/shapes.py); "
            "pass a local folder holding its config.json"
        )
    path = Path(ref.removeprefix("file://")).expanduser()
    if not path.is_dir():
        return None, f"{ref!r} is not a known model id nor a local folder"
    meta_path = path / "tuneloop_model.json"
    if meta_path.is_file():  # an adapter folder: its base decides the shape
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            meta = {}
        if isinstance(meta, dict) and meta.get("adapter") and meta.get("base_model"):
            return shape_for(str(meta["base_model"]))
    if not (path / "config.json").is_file():
        return None, f"{ref!r} has no config.json"
    try:
        return shape_from_config(_auto_config(path), name=path.name, source=str(path)), ""
    except (ShapeError, OSError, ValueError) as exc:
        return None, f"{ref!r}: {exc}"


def _auto_config(path: Path) -> Any:
    """transformers' config for ``path`` (its attribute aliases), or the plain JSON."""
    try:
        from transformers import AutoConfig
    except ImportError:  # the planner itself needs no transformers
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    return AutoConfig.from_pretrained(path)
