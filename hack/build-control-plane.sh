#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, etcd, helm) from the
# Go module proxy into a cache outside the repository, once. Re-running is a no-op when built.
#
#   LLMOP_CACHE  cache root (default: ~/.cache/llm-operator)
set -euo pipefail

K8S_VERSION=1.36.3          # k8s.io/kubernetes; staging modules are v0.<minor>.<patch>
ETCD_VERSION=3.6.16         # go.etcd.io/etcd/server/v3
HELM_VERSION=3.22.0         # helm.sh/helm/v3

cache=${LLMOP_CACHE:-$HOME/.cache/llm-operator}
bin="$cache/bin/k8s-$K8S_VERSION"
mkdir -p "$bin"
staging_version="v0.${K8S_VERSION#*.}"

have() { [ -x "$bin/$1" ]; }

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
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"\n\t_ "k8s.io/kubectl/pkg/cmd"\n)\n' > tools.go
    go mod tidy
  fi
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    have "$cmd" || { echo "building $cmd v$K8S_VERSION (cold: several minutes)"; go build -trimpath -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"; }
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
    go mod tidy
  fi
  echo "building etcd v$ETCD_VERSION"
  go build -trimpath -o "$bin/etcd" go.etcd.io/etcd/server/v3
}

have kube-apiserver && have kube-controller-manager && have kubectl || build_kubernetes
have etcd || build_etcd
have helm || { echo "building helm v$HELM_VERSION"; GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"; }
echo "$bin"
