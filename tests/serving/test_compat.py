"""The /vllm route's request model and output budget (pure: no app started)."""

from __future__ import annotations

import pytest

from llm_serving.compat import BlueprintRequest, output_budget

pytestmark = pytest.mark.serving


def test_blueprint_defaults() -> None:
    body = BlueprintRequest(prompt="x")
    assert (body.stream, body.max_tokens, body.temperature, body.top_p, body.top_k, body.stop) == (
        False,
        8192,
        0.7,
        0.9,
        50,
        None,
    )
    assert body.context_length == 8192


def test_context_length_is_8192_or_32768_like_the_blueprints() -> None:
    assert BlueprintRequest(prompt="x", context_length=32768).context_length == 32768
    for other in (4096, 65536, "32768", None):
        assert BlueprintRequest(prompt="x", context_length=other).context_length == 8192


def test_unknown_keys_are_kept_aside_not_refused() -> None:
    body = BlueprintRequest.model_validate({"prompt": "x", "n": 2, "model": "m"})
    assert body.model_extra == {"n": 2, "model": "m"}


def test_output_takes_what_the_prompt_leaves_of_the_window_at_most_max_tokens() -> None:
    default = BlueprintRequest(prompt="x")
    assert output_budget(default, prompt_tokens=100, max_model_len=32768) == 8092  # context_length 8192 binds
    assert output_budget(default, prompt_tokens=100, max_model_len=4096) == 3996  # max_model_len binds
    long = BlueprintRequest(prompt="x", context_length=32768, max_tokens=50_000)
    assert output_budget(long, prompt_tokens=100, max_model_len=32768) == 32668
    assert output_budget(BlueprintRequest(prompt="x", max_tokens=512), prompt_tokens=100, max_model_len=4096) == 512
    # A prompt that fills the window still goes to vLLM (1 token), which refuses it if it is too long.
    assert output_budget(default, prompt_tokens=5000, max_model_len=4096) == 1
