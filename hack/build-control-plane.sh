#!/usr/bin/env bash
# Builds the local lane once, from the Go module proxy, into a cache outside the repository:
#   control plane   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, helm
#   KubeRay lane    KubeRay's controller (ray-operator) and KWOK (simulated kubelets and nodes)
# and fetches the upstream files the lane reads from the module cache (never copied into the repo):
# KubeRay's and prometheus-operator's CRDs, KWOK's stage files. Re-running is a no-op when built.
#
# Prints KEY=VALUE lines last (BIN, KUBERAY_CRDS, MONITORING_CRDS, KWOK_STAGES): llm_dev.binaries reads them.
#
#   LLMOP_CACHE         cache root (default: ~/.cache/llm-operator)
#   KUBEBUILDER_ASSETS  a folder whose etcd, kube-apiserver, ... are used instead of building them
set -euo pipefail

K8S_VERSION=1.36.3          # k8s.io/kubernetes; staging modules are v0.<minor>.<patch>
ETCD_VERSION=3.6.16         # go.etcd.io/etcd/server/v3
HELM_VERSION=3.22.0         # helm.sh/helm/v3
# The newest KubeRay the Go module proxy serves (v1.7.0 is listed, but its zip is refused).
KUBERAY_VERSION=1.6.0       # github.com/ray-project/kuberay/ray-operator
PROMETHEUS_OPERATOR_VERSION=0.93.0
KWOK_VERSION=0.8.0          # sigs.k8s.io/kwok

KUBERAY_MODULE=github.com/ray-project/kuberay/ray-operator@v$KUBERAY_VERSION
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION
KWOK_MODULE=sigs.k8s.io/kwok@v$KWOK_VERSION

cache=${LLMOP_CACHE:-$HOME/.cache/llm-operator}
bin="$cache/bin/k8s-$K8S_VERSION"
mkdir -p "$bin"
staging_version="v0.${K8S_VERSION#*.}"
COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler)

# Built here, or supplied by KUBEBUILDER_ASSETS (envtest convention: etcd, kube-apiserver, kubectl).
have() { [ -x "$bin/$1" ] || { [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$1" ]; }; }
log() { echo "$*" >&2; }

write_tools() {
  {
    printf 'package tools\n\nimport (\n'
    for cmd in "${COMMANDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s/app"\n' "$cmd"; done
    printf '\t_ "k8s.io/kubectl/pkg/cmd"\n)\n'
  } > tools.go
}

build_kubernetes() {
  local mod="$cache/src/kubernetes-$K8S_VERSION"
  mkdir -p "$mod"
  cd "$mod"
  if [ ! -f go.mod ]; then
    go mod init llmop.local/controlplane >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
    # k8s.io/kubernetes replaces each staging module with a local path; point them at their releases.
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | while read -r m; do
      go mod edit -replace="$m=$m@$staging_version"
    done
  fi
  # A cache built before kube-scheduler was added gets its import now.
  if ! grep -q kube-scheduler tools.go 2>/dev/null; then
    write_tools
    go mod tidy >&2
  fi
  for cmd in "${COMMANDS[@]}" kubectl; do
    have "$cmd" || { log "building $cmd v$K8S_VERSION (cold: several minutes)"; go build -trimpath -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd" >&2; }
  done
}

build_etcd() {
  local mod="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  cd "$mod"
  if [ ! -f go.mod ]; then
    go mod init llmop.local/etcd >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n' > tools.go
    go mod tidy >&2
  fi
  log "building etcd v$ETCD_VERSION"
  go build -trimpath -o "$bin/etcd" go.etcd.io/etcd/server/v3 >&2
}

# `go install pkg@version` into $bin (modules without replace directives build this way).
install() {
  local name=$1 package=$2
  have "$name" || { log "building $name ($package, cold: a few minutes)"; (cd "$cache" && GOBIN="$bin" go install -trimpath "$package" >&2); }
}

# The folder of a module in the Go module cache (downloaded on first use).
module_dir() {
  (cd "$cache" && go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
}

for cmd in "${COMMANDS[@]}" kubectl; do have "$cmd" || { build_kubernetes; break; }; done
have etcd || build_etcd
install helm "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
install ray-operator "$KUBERAY_MODULE"
install kwok "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"

echo "BIN=$bin"
echo "KUBERAY_VERSION=$KUBERAY_VERSION"
echo "KUBERAY_CRDS=$(module_dir "$KUBERAY_MODULE")/config/crd/bases"
echo "MONITORING_CRDS=$(module_dir "$PROMETHEUS_OPERATOR_MODULE")/example/prometheus-operator-crd"
echo "KWOK_STAGES=$(module_dir "$KWOK_MODULE")/kustomize/stage"
