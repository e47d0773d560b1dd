"""What the GPU-fit check needs to know about a model: size, attention shape, context, native dtype.

Three sources, most trusted first: the user's `spec.model.architecture` (`ModelFacts.from_spec`), a local
Hugging Face `config.json` (`read_model_config`, the only I/O here) and a table of well-known models
(`known_model`, figures from their public `config.json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel


class FactsError(ValueError):
    """Model facts that cannot be used; the message names the offending field."""


class ModelFacts(BaseModel):
    """The architecture figures of a decoder-only transformer that decide its GPU memory needs."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    parameters: int = Field(gt=0, description="Parameter count (all experts for a mixture of experts).")
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    max_position_embeddings: int | None = Field(default=None, gt=0, description="Longest context, if known.")
    dtype: str | None = Field(default=None, description="Native weight dtype (config.json torch_dtype).")
    vocab_size: int | None = Field(default=None, gt=0)
    tie_word_embeddings: bool = False
    quantization: str | None = Field(default=None, description="Quantization the checkpoint declares.")
    moe: str | None = Field(default=None, description="Mixture-of-experts note; all experts stay resident.")

    @model_validator(mode="after")
    def _grouped_query(self) -> ModelFacts:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"numAttentionHeads ({self.num_attention_heads}) must be a multiple of "
                f"numKeyValueHeads ({self.num_key_value_heads})"
            )
        return self

    @property
    def embedding_parameters(self) -> int:
        """Parameters of the token embedding and LM head (0 if the vocabulary size is unknown)."""
        if self.vocab_size is None:
            return 0
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @classmethod
    def from_spec(cls, architecture: Mapping[str, Any]) -> ModelFacts:
        """Facts from `spec.model.architecture` (camelCase keys; numKeyValueHeads and headDim optional)."""
        given = {key: value for key, value in architecture.items() if value is not None}
        heads, hidden = given.get("numAttentionHeads"), given.get("hiddenSize")
        given.setdefault("numKeyValueHeads", heads)
        if isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
            given.setdefault("headDim", hidden // heads)
        if isinstance(given.get("parameters"), float):
            given["parameters"] = round(given["parameters"])
        return _validate(given, "spec.model.architecture.")


def read_model_config(path: str | Path) -> ModelFacts:
    """Facts from a Hugging Face `config.json`.

    Config files do not state the parameter count, so it is estimated from the architecture of a
    Llama-style decoder with a gated (SwiGLU) MLP and RMS norms, biases aside:
    `layers * (hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    + experts * 3 * hidden * intermediate + router + 2 * hidden) + hidden + embeddings`
    with `router = experts * hidden` for a mixture of experts (else 0) and
    `embeddings = vocab * hidden * (1 if tied else 2)`. It is exact for Llama, Mistral and Mixtral
    and overestimates models with a two-matrix MLP (conservative).
    """
    file = Path(path)
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FactsError(f"{file}: cannot read a JSON config: {error}") from None
    if not isinstance(config, dict):
        raise FactsError(f"{file}: expected a JSON object")
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    missing = [
        k
        for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        if not isinstance(config.get(k), int)
    ]
    if missing:
        raise FactsError(f"{file}: {missing[0]}: required integer missing")
    hidden, layers, heads = config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    experts = config.get("num_local_experts") or 1
    vocab = config.get("vocab_size")
    tied = bool(config.get("tie_word_embeddings", False))
    attention = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    mlp = experts * 3 * hidden * config["intermediate_size"] + (experts * hidden if experts > 1 else 0)
    embeddings = vocab * hidden * (1 if tied else 2) if isinstance(vocab, int) else 0
    quantization = config.get("quantization_config") or {}
    facts = {
        "parameters": layers * (attention + mlp + 2 * hidden) + hidden + embeddings,
        "num_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": config.get("max_position_embeddings"),
        "dtype": config.get("torch_dtype"),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "quantization": quantization.get("quant_method") if isinstance(quantization, dict) else None,
        "moe": None if experts == 1 else f"{experts} experts, {config.get('num_experts_per_tok')} active",
    }
    return _validate(facts, f"{file}: ")


def _validate(fields: Mapping[str, Any], prefix: str) -> ModelFacts:
    try:
        return ModelFacts.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        path = prefix + ".".join(to_camel(str(part)) for part in first["loc"])
        raise FactsError(f"{path.rstrip('. :')}: {first['msg']}") from None


# From each model's public config.json (all bfloat16, untied embeddings, head_dim = hidden / heads);
# parameter counts as published: they match the formula above, plus Qwen2.5's q/k/v biases.
# (ids, parameters, layers, hidden, heads, kv heads, context, vocabulary, mixture-of-experts note)
_KNOWN_ROWS: tuple[tuple[tuple[str, ...], int, int, int, int, int, int, int, str | None], ...] = (
    (("mistralai/mistral-7b-instruct-v0.2",), 7_241_732_096, 32, 4096, 32, 8, 32768, 32000, None),
    (
        ("meta-llama/llama-3.1-8b-instruct", "meta-llama/llama-3.1-8b"),
        8_030_261_248,
        32,
        4096,
        32,
        8,
        131072,
        128256,
        None,
    ),
    (
        ("meta-llama/llama-3.1-70b-instruct", "meta-llama/llama-3.1-70b"),
        70_553_706_496,
        80,
        8192,
        64,
        8,
        131072,
        128256,
        None,
    ),
    (("qwen/qwen2.5-7b-instruct",), 7_615_616_512, 28, 3584, 28, 4, 32768, 152064, None),
    (("qwen/qwen2.5-72b-instruct",), 72_706_203_648, 80, 8192, 64, 8, 32768, 152064, None),
    (("mistralai/mixtral-8x7b-instruct-v0.1",), 46_702_792_704, 32, 4096, 32, 8, 32768, 32000, "8 experts, 2 active"),
)
_KNOWN = {
    model_id: ModelFacts(
        parameters=parameters,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=context,
        dtype="bfloat16",
        vocab_size=vocab,
        moe=moe,
    )
    for ids, parameters, layers, hidden, heads, kv_heads, context, vocab, moe in _KNOWN_ROWS
    for model_id in ids
}
# Former names of the same repositories (Meta renamed its Llama 3.1 repos).
_ALIASES = {
    "meta-llama/meta-llama-3.1-8b-instruct": "meta-llama/llama-3.1-8b-instruct",
    "meta-llama/meta-llama-3.1-8b": "meta-llama/llama-3.1-8b",
    "meta-llama/meta-llama-3.1-70b-instruct": "meta-llama/llama-3.1-70b-instruct",
    "meta-llama/meta-llama-3.1-70b": "meta-llama/llama-3.1-70b",
}


def known_model(model_id: str) -> ModelFacts | None:
    """Facts of a well-known model by its Hugging Face id (case-insensitive, exact), else None."""
    key = model_id.strip().lower()
    return _KNOWN.get(_ALIASES.get(key, key))
