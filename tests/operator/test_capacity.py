"""The GPU-fit check: model facts and capacity plans, with each expected figure derived by hand.

Shared hand figures:
- A10G: CUDA reports 23028 MiB = 24_146_608_128 B (22.49 GiB). At gpuMemoryUtilization 0.9, less the
  2 GiB runtime reserve, vLLM's budget per GPU is 0.9 * 24_146_608_128 - 2 * 2**30 = 19_584_463_667 B
  (18.24 GiB).
- A100-80GB: 80 GiB; budget 0.9 * 80 - 2 = 70 GiB.
- Mistral-7B: 7_241_732_096 parameters, 32 layers, 8 KV heads of 128: KV per token 2*32*8*128*2 = 128 KiB.
- Llama-3.1-70B: 70_553_706_496 parameters, 80 layers, 8 KV heads of 128, context 131072.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_operator.capacity import (
    CapacityPlan,
    FactsError,
    ModelFacts,
    Verdict,
    format_table,
    known_model,
    plan,
    read_model_config,
)
from llm_operator.capacity.disk import DiskPlan, checkpoint_gib, disk_plan
from llm_operator.capacity_check import check_capacity
from llm_operator.catalog import Catalog
from llm_operator.models import parse_spec

CATALOG = Catalog.default()
GIB = 2**30
MISTRAL = known_model("mistralai/Mistral-7B-Instruct-v0.2")
LLAMA_8B = known_model("meta-llama/Llama-3.1-8B-Instruct")
LLAMA_70B = known_model("meta-llama/Llama-3.1-70B-Instruct")

MISTRAL_CONFIG: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}


def on(accelerator: str, gpus: int, facts: ModelFacts | None, **settings: Any) -> CapacityPlan:
    instance = CATALOG.instance_for(accelerator, gpus)
    return plan(facts, catalog=CATALOG, instance=instance, gpus=gpus, **settings)


def test_known_models_are_self_consistent() -> None:
    for model_id in (
        "mistralai/Mistral-7B-Instruct-v0.2",
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen/Qwen2.5-72B-Instruct",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "meta-llama/Llama-3.1-70B",
    ):
        facts = known_model(model_id)
        assert facts is not None
        assert facts.head_dim * facts.num_attention_heads == facts.hidden_size
        assert facts.num_attention_heads % facts.num_key_value_heads == 0


def test_known_model_lookup_is_exact_but_case_insensitive_with_aliases() -> None:
    assert known_model("MISTRALAI/mistral-7b-instruct-v0.2") == MISTRAL
    assert known_model("meta-llama/Meta-Llama-3.1-8B-Instruct") == LLAMA_8B  # the repository's former name
    assert known_model("meta-llama/Llama-3.1-8B") == LLAMA_8B  # base and instruct share the architecture
    assert known_model("mistralai/Mistral-7B-v0.2") is None
    assert known_model("s3://bucket/my-model") is None


def test_mistral_7b_fits_on_one_a10g() -> None:
    # Weights: 7_241_732_096 * 2 B = 14_483_464_192 B = 13.49 GiB.
    # KV cache: 19_584_463_667 - 14_483_464_192 = 5_100_999_475 B = 4.75 GiB -> / 131_072 B = 38_917 tokens,
    # 38_917 // 8192 = 4 concurrent full-length sequences.
    result = on("A10G", 1, MISTRAL, max_model_len=8192)
    assert result.verdict is Verdict.FITS
    assert result.instance.name == "g5.xlarge"
    assert result.to_status() == {
        "verdict": "fits",
        "instanceType": "g5.xlarge",
        "maxModelLen": 8192,
        "weightsGiBPerGPU": 13.49,
        "kvCacheGiBPerGPU": 4.75,
        "kvCacheTokens": 38917,
        "maxConcurrentSequences": 4,
        "costPerHourMin": 1.01,
        "costPerHourMax": 1.01,
        "messages": [],
    }


def test_llama_70b_does_not_fit_on_one_a10g() -> None:
    # Weights: 70_553_706_496 * 2 B = 141_107_412_992 B = 131.42 GiB, far above the 18.24 GiB budget.
    # At maxModelLen 8192 the fewest A10Gs that hold it are 8 (see the next tests): g5.48xlarge.
    result = on("A10G", 1, LLAMA_70B, max_model_len=8192)
    assert result.verdict is Verdict.DOES_NOT_FIT
    assert result.weights_gib_per_gpu == pytest.approx(131.42, abs=0.01)
    assert result.kv_cache_tokens is None
    assert len(result.messages) == 1
    assert result.messages[0].startswith("spec.accelerator.count: the weights take 131.4 GiB per GPU on 1xA10G")
    assert result.messages[0].endswith("needs ≥ 8xA10G: set spec.accelerator.count: 8 (g5.48xlarge)")


def test_llama_70b_does_not_fit_on_four_a10g() -> None:
    # Tensor parallel over 4: 131.42 / 4 = 32.85 GiB per GPU > 18.24 GiB.
    result = on("A10G", 4, LLAMA_70B, max_model_len=8192)
    assert result.verdict is Verdict.DOES_NOT_FIT
    assert result.weights_gib_per_gpu == pytest.approx(32.85, abs=0.01)


def test_llama_70b_fits_on_eight_a10g_at_a_short_context() -> None:
    # 131.42 / 8 = 16.43 GiB per GPU; 18.24 - 16.43 = 1.81 GiB of KV cache. One KV head per GPU:
    # 2*80*1*128*2 = 40 KiB per token -> 1.81 GiB / 40 KiB = 47_510 tokens = 5 sequences of 8192.
    result = on("A10G", 8, LLAMA_70B, max_model_len=8192)
    assert result.verdict is Verdict.FITS
    assert result.kv_cache_tokens == pytest.approx(47_510, abs=2)
    assert result.max_concurrent_sequences == 5


def test_llama_70b_fits_on_eight_a100_80gb() -> None:
    # 70 - 16.43 = 53.57 GiB of KV cache at 40 KiB per token = 1_404_382 tokens:
    # 10 full 131072-token sequences.
    result = on("A100-80GB", 8, LLAMA_70B)
    assert result.verdict is Verdict.FITS
    assert result.instance.name == "p4de.24xlarge"
    assert result.max_model_len == 131072  # unset: the model's context
    assert result.kv_cache_gib_per_gpu == pytest.approx(53.57, abs=0.01)
    assert result.max_concurrent_sequences == 10


def test_unreachable_max_num_seqs_is_a_warning() -> None:
    # Mistral on 1xA10G holds 38_917 tokens: 4 sequences of 8192, not 256.
    result = on("A10G", 1, MISTRAL, max_model_len=8192, max_num_seqs=256)
    assert result.verdict is Verdict.FITS_WITH_WARNINGS
    assert result.messages == (
        "spec.engine.maxNumSeqs: 256 sequences of 8192 tokens need 2097152 tokens of KV cache, "
        "it holds 38917 (4 such sequences) and vLLM queues or preempts beyond that; "
        "lower spec.engine.maxNumSeqs to 4 or add GPUs",
    )
    assert on("A10G", 1, MISTRAL, max_model_len=8192, max_num_seqs=4).verdict is Verdict.FITS


def test_max_model_len_beyond_the_models_context_does_not_fit() -> None:
    result = on("A10G", 1, MISTRAL, max_model_len=65536)
    assert result.verdict is Verdict.DOES_NOT_FIT
    assert result.messages[0] == (
        "spec.engine.maxModelLen: 65536 exceeds the model's context of 32768 tokens; "
        "vLLM refuses to start: lower it to at most 32768"
    )


def test_default_context_too_long_suggests_a_shorter_one_or_more_gpus() -> None:
    # Llama-3.1-8B: 8_030_261_248 * 2 B = 16_060_522_496 B of weights; 19_584_463_667 - 16_060_522_496 =
    # 3_523_941_171 B = 3.28 GiB -> 26_885 tokens at 128 KiB. Its 131072-token context needs 16 GiB:
    # the largest power of two below 26_885 is 16384. On 2 GPUs (g5.12xlarge, the cheapest with >= 2):
    # 7.48 GiB weights, 10.76 GiB KV at 64 KiB per token per GPU = 176k tokens >= 131072.
    result = on("A10G", 1, LLAMA_8B)
    assert result.verdict is Verdict.DOES_NOT_FIT
    assert result.kv_cache_tokens == 26_885
    assert result.max_concurrent_sequences == 0
    assert result.messages == (
        "spec.engine.maxModelLen: unset, so vLLM uses the model's context of 131072 tokens; one 131072-token "
        "sequence needs 16.00 GiB of KV cache per GPU, 3.28 GiB (26885 tokens) is left after the weights; "
        "lower spec.engine.maxModelLen to 16384; or, at 131072 tokens, "
        "needs ≥ 2xA10G: set spec.accelerator.count: 2 (g5.12xlarge)",
    )


def test_suggests_another_accelerator_when_no_instance_of_this_one_holds_the_model() -> None:
    # Llama-70B at its full 131072 context: 8xA10G leaves 47_510 tokens (too few), likewise 8xL4. Fewest GPUs
    # that hold one such sequence: 8xL40S (44.99 GiB * 0.9 - 2 = 38.49 GiB; 4 GPUs leave 5.64 GiB at 80 KiB
    # per token = 74k tokens) on g6e.48xlarge $30.13; 8xA100 on p4d $32.77; 4xA100-80GB on p4de $40.97;
    # 4xH100 on p5 $98.32. Cheapest: L40S.
    result = on("A10G", 8, LLAMA_70B)
    assert result.verdict is Verdict.DOES_NOT_FIT
    assert result.messages[0].endswith(
        "lower spec.engine.maxModelLen to 32768; or, at 131072 tokens, no A10G instance holds it; "
        "cheapest that does: spec.accelerator.type: L40S, spec.accelerator.count: 8 (g6e.48xlarge)"
    )


def test_tensor_parallel_size_must_split_the_heads() -> None:
    # Qwen2.5-7B: 28 heads, 4 KV heads -> 8 GPUs do not divide 28; 1, 2 and 4 split both.
    result = on("A10G", 8, known_model("Qwen/Qwen2.5-7B-Instruct"))
    assert result.verdict is Verdict.DOES_NOT_FIT
    assert result.messages == (
        "spec.accelerator.count: 8 GPUs cannot split the model's 28 attention heads and 4 key/value heads "
        "evenly; use one of 1, 2, 4",
    )


def test_quantized_weights() -> None:
    # AWQ: the 262_144_000 embedding + LM-head parameters stay 16-bit (524_288_000 B), the other
    # 6_979_588_096 take 4.5 bits: 3_926_018_304 B. Total 4_450_306_304 B = 4.14 GiB.
    result = on("A10G", 1, MISTRAL, max_model_len=8192, quantization="awq")
    assert result.weights_gib_per_gpu == pytest.approx(4.145, abs=0.001)
    assert result.verdict is Verdict.FITS


def test_unknown_model_or_quantization_never_blocks() -> None:
    unknown = on("A10G", 1, None, min_replicas=1, max_replicas=2)
    assert unknown.verdict is Verdict.UNKNOWN
    assert unknown.messages[0].startswith("spec.model.architecture: the model is not in the operator's catalog")
    assert unknown.to_status()["costPerHourMax"] == 2.01  # 2 * $1.006
    assert "weightsGiBPerGPU" not in unknown.to_status()
    compressed = on("A10G", 1, MISTRAL, quantization="compressed-tensors")
    assert compressed.verdict is Verdict.UNKNOWN
    assert compressed.messages == (
        "spec.engine.quantization: no memory rule for 'compressed-tensors'; capacity not checked",
    )


@pytest.mark.parametrize(
    ("accelerator", "gpus", "replicas", "cost_min", "cost_max"),
    [
        ("A10G", 1, (1, 4), 1.006, 4 * 1.006),  # one g5.xlarge per replica
        ("A10G", 1, (0, 1), 0.0, 1.006),  # scaled to zero costs nothing
        ("A10G", 2, (1, 3), 5.672, 2 * 5.672),  # two 2-GPU replicas share a 4-GPU g5.12xlarge
    ],
)
def test_cost(accelerator: str, gpus: int, replicas: tuple[int, int], cost_min: float, cost_max: float) -> None:
    result = on(accelerator, gpus, MISTRAL, max_model_len=8192, min_replicas=replicas[0], max_replicas=replicas[1])
    assert result.cost_per_hour_min == pytest.approx(cost_min)
    assert result.cost_per_hour_max == pytest.approx(cost_max)


def test_facts_from_a_config_json(tmp_path: Path) -> None:
    # The architecture formula reproduces the published parameter count exactly.
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MISTRAL_CONFIG))
    assert read_model_config(path) == MISTRAL
    mixtral = {**MISTRAL_CONFIG, "num_local_experts": 8, "num_experts_per_tok": 2}
    path.write_text(json.dumps(mixtral))
    assert read_model_config(path) == known_model("mistralai/Mixtral-8x7B-Instruct-v0.1")


def test_config_json_of_a_quantized_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**MISTRAL_CONFIG, "quantization_config": {"quant_method": "awq", "bits": 4}}))
    facts = read_model_config(path)
    assert facts.quantization == "awq"
    assert on("A10G", 1, facts, max_model_len=8192).weights_gib_per_gpu == pytest.approx(4.145, abs=0.001)


def test_config_json_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    with pytest.raises(FactsError, match="cannot read a JSON config"):
        read_model_config(path)
    path.write_text(json.dumps({"hidden_size": 4096}))
    with pytest.raises(FactsError, match="num_hidden_layers: required integer missing"):
        read_model_config(path)


def test_facts_from_the_spec() -> None:
    facts = ModelFacts.from_spec(
        {
            "parameters": 7.24e9,
            "numLayers": 32,
            "hiddenSize": 4096,
            "numAttentionHeads": 32,
            "numKeyValueHeads": None,
            "headDim": None,
            "maxPositionEmbeddings": 32768,
            "dtype": "bfloat16",
        }
    )
    assert facts.parameters == 7_240_000_000
    assert facts.num_key_value_heads == 32  # unset: multi-head attention
    assert facts.head_dim == 128  # 4096 / 32
    with pytest.raises(FactsError, match=r"^spec\.model\.architecture\.numLayers: Field required"):
        ModelFacts.from_spec({"parameters": 7e9, "hiddenSize": 4096, "numAttentionHeads": 32})
    with pytest.raises(FactsError, match=r"^spec\.model\.architecture: .*must be a multiple of numKeyValueHeads"):
        ModelFacts.from_spec(
            {
                "parameters": 7e9,
                "numLayers": 32,
                "hiddenSize": 4096,
                "numAttentionHeads": 32,
                "numKeyValueHeads": 5,
            }
        )


def test_unknown_context_is_a_warning() -> None:
    facts = ModelFacts.from_spec({"parameters": 7e9, "numLayers": 32, "hiddenSize": 4096, "numAttentionHeads": 32})
    result = on("A10G", 1, facts)
    assert result.verdict is Verdict.FITS_WITH_WARNINGS
    assert result.messages[0].startswith("spec.engine.maxModelLen: unset and the model's context is unknown")


def test_format_table() -> None:
    table = format_table(on("A10G", 1, MISTRAL, max_model_len=8192, max_num_seqs=256, max_replicas=4))
    lines = table.splitlines()
    assert lines[0] == "Verdict               fits-with-warnings"
    assert "Concurrent sequences  4 at maxModelLen 8192" in lines
    assert "$1.01 to $4.02 for 1 to 4 replicas" in table
    assert lines[-1].startswith("- spec.engine.maxNumSeqs: 256 sequences")


def test_checkpoint_size_matches_the_published_files() -> None:
    """Mistral-7B-Instruct-v0.2's safetensors are 14.48 GB (bf16); Llama-3.1-70B's 141.1 GB."""
    assert checkpoint_gib(MISTRAL) * GIB == pytest.approx(14.48e9, rel=0.01)
    assert checkpoint_gib(LLAMA_70B) * GIB == pytest.approx(141.1e9, rel=0.01)


def test_a_worker_too_big_for_the_nodes_disk_is_a_warning_naming_the_cache() -> None:
    spec = parse_spec({"model": {"id": "mistralai/Mistral-7B-Instruct-v0.2"}, "engine": {"maxModelLen": 8192}})
    roomy = check_capacity(spec, CATALOG, node_gib=100)
    assert roomy.condition.reason == "Fits" and roomy.plan is not None
    assert (roomy.plan["weightCacheGiB"], roomy.plan["ephemeralStorageGiB"]) == (16, 36)
    small = check_capacity(spec, CATALOG, node_gib=20)  # EKS's default root volume
    assert small.condition.reason == "FitsWithWarnings" and small.blocked is None
    assert "spec.model.cache: the weights (16 GiB) and the image" in small.condition.message
    assert "more than the 20 GiB" in small.condition.message
    shared = parse_spec({**spec.model_dump(by_alias=True), "model": {"id": spec.model.id, "cache": {"claimName": "c"}}})
    assert check_capacity(shared, CATALOG, node_gib=20).condition.reason == "Fits"
    assert disk_plan(MISTRAL, claim=True, size_gib=None, node_gib=None) == DiskPlan(None, 20)
