"""The lane's weight cache: the tiny model, built locally, under a Hugging Face model id in an `HF_HOME`.

No model hub is reachable here, so an LLMDeployment names `TINY_MODEL_ID` and the lane's Ray nodes find
its weights the way a worker with a warm weight cache does: `HF_HOME/hub/models--<org>--<name>/snapshots/
<revision>/`, `refs/main` naming that revision, `HF_HUB_OFFLINE=1`. vLLM resolves the id as on a pod.
"""

from __future__ import annotations

from pathlib import Path

from llm_serving.tiny_model import build_tiny_model

TINY_MODEL_ID = "llmops-dev/tiny-llama"
REVISION = "0" * 40


def cached(hf_home: Path | None, model_id: str) -> bool:
    """Whether a node with this `HF_HOME` has the model's weights (a local folder counts as present)."""
    if Path(model_id).is_absolute():
        return Path(model_id).is_dir()
    if hf_home is None or "://" in model_id:
        return False
    return (hf_home / "hub" / f"models--{model_id.replace('/', '--')}" / "refs" / "main").is_file()


def seed(hf_home: Path, model_id: str = TINY_MODEL_ID) -> Path:
    """Build the tiny model into `hf_home`'s hub cache as `model_id` (reused when built); its folder."""
    repo = hf_home / "hub" / f"models--{model_id.replace('/', '--')}"
    snapshot = build_tiny_model(repo / "snapshots" / REVISION)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot
