#!/usr/bin/env bash
# Debian's Prometheus for tests/observability, which start it themselves on 127.0.0.1 with a generated
# config (no service is needed; on systemd hosts the package's own service is stopped and disabled).
# The tests look for /usr/bin/prometheus (override: LLMOP_PROMETHEUS_BIN).
set -euo pipefail

if [ -x "${LLMOP_PROMETHEUS_BIN:-/usr/bin/prometheus}" ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  $SUDO systemctl disable --now prometheus || true
fi
/usr/bin/prometheus --version | head -1
