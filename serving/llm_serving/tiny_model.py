"""A tiny random-weight Llama model with a locally trained tokenizer, for tests, benchmarks and demos.

No model hub is needed: the tokenizer is a byte-level BPE trained on a few paragraphs shipped here, the
weights are random (seeded). Its text is gibberish; token ids are deterministic at temperature 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Bump when the recipe changes so cached copies are rebuilt.
RECIPE_VERSION = "1"
_MARKER = ".tiny-model.json"

VOCAB_SIZE = 1024
MAX_POSITIONS = 4096

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = """\
Operators watch custom resources and drive the cluster toward the state their users declared.
A language model turns a prompt into tokens, and tokens into a probability for the next one.
Streaming responses send each new piece of text as soon as the engine produces it.
The scheduler batches requests together so that a single forward pass serves many users at once.
Paged attention keeps the key and value cache in fixed blocks, like pages of virtual memory.
Latency is measured from the moment a request is sent to the moment its first token arrives.
Throughput counts how many output tokens the server produces per second under load.
Autoscaling adds replicas when queues grow and removes them after a quiet period.
Prometheus scrapes metrics endpoints and stores time series with labels for each deployment.
Health checks tell the load balancer when a replica is ready to receive traffic.
Good error messages name the field that was wrong and the value that was expected instead.
Rivers carry sand to the sea, where waves sort it into long pale beaches.
In the morning the market fills with bread, oranges, fish, coffee and the noise of bargaining.
Mathematics offers proofs, counterexamples, conjectures and the occasional beautiful surprise.
Numbers such as 0 1 2 3 4 5 6 7 8 9 10 42 100 2048 appear in logs, configs and benchmarks.
Punctuation matters: commas, periods; colons: quotes "like this", brackets (and) {braces} [too].
"""


def _train_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    special = ["<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=MAX_POSITIONS,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.save_pretrained(str(folder))


def _save_model(folder: Path, vocab_size: int, bos_id: int, eos_id: int, pad_id: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    # A two-megabyte save needs no progress bar on every caller's terminal.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(str(folder), safe_serialization=True)


def is_built(path: str | os.PathLike[str]) -> bool:
    """True if `path` holds a tiny model built by this recipe version."""
    marker = Path(path) / _MARKER
    try:
        return bool(json.loads(marker.read_text())["recipe"] == RECIPE_VERSION)
    except (OSError, ValueError, KeyError):
        return False


def build_tiny_model(path: str | os.PathLike[str]) -> Path:
    """Build the tiny model into `path` (config, safetensors, tokenizer, chat template) unless cached.

    Built in a sibling temp folder and renamed into place, so concurrent or interrupted builds never
    leave a half-written model behind.
    """
    target = Path(path).resolve()
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)
    try:
        _train_tokenizer(staging)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(staging))
        _save_model(
            staging,
            vocab_size=len(tokenizer),
            bos_id=tokenizer.bos_token_id,
            eos_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id,
        )
        (staging / _MARKER).write_text(json.dumps({"recipe": RECIPE_VERSION}))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m llm_serving.tiny_model DIR`: build (or reuse) the tiny model in DIR."""
    parser = argparse.ArgumentParser(prog="python -m llm_serving.tiny_model", description=main.__doc__)
    parser.add_argument("dir", help="folder to build the model into")
    folder = build_tiny_model(parser.parse_args(argv).dir)
    sys.stdout.write(f"{folder}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
