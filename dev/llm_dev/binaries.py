"""Where the lane's executables and upstream files are: built once by `hack/build-control-plane.sh`.

The script builds from the Go module proxy into `~/.cache/llm-operator` (cold: minutes; then a no-op) and
prints `KEY=VALUE` lines: the binaries' folder and the module-cache folders holding KubeRay's and
prometheus-operator's CRDs and KWOK's stage files. `KUBEBUILDER_ASSETS` (envtest convention), when set,
supplies etcd, kube-apiserver and kubectl instead of the built ones.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LLMOP_CACHE", Path.home() / ".cache" / "llm-operator"))
KUBERAY_CRDS = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_raycronjobs.yaml", "ray.io_rayservices.yaml")
MONITORING_CRDS = ("monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_podmonitors.yaml")


class AssetError(RuntimeError):
    """A binary or upstream file the lane needs is missing."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the lane's executables and of the upstream files it installs."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    kube_controller_manager: Path | None = None
    kube_scheduler: Path | None = None
    helm: Path | None = None
    ray_operator: Path | None = None
    kwok: Path | None = None
    kuberay_version: str = ""
    kuberay_crds: Path | None = None
    monitoring_crds: Path | None = None
    kwok_stages: Path | None = None

    def crd_files(self, *, kuberay: bool = True, monitoring: bool = True) -> list[Path]:
        """The upstream CRD files to install (all four KubeRay CRDs: its controller waits on each)."""
        wanted: list[tuple[Path | None, tuple[str, ...]]] = [(self.kuberay_crds, KUBERAY_CRDS)] if kuberay else []
        wanted += [(self.monitoring_crds, MONITORING_CRDS)] if monitoring else []
        files = []
        for folder, names in wanted:
            for name in names:
                if folder is None or not (folder / name).is_file():
                    raise AssetError(f"upstream CRD {name} not found in {folder}: run hack/build-control-plane.sh")
                files.append(folder / name)
        return files


def _built() -> dict[str, str]:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-control-plane.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


@functools.cache
def find_binaries() -> Binaries:
    """The built lane (building it on first use), with `KUBEBUILDER_ASSETS`' control plane if set."""
    built = _built()
    folder = Path(built["BIN"])
    assets = Path(os.environ["KUBEBUILDER_ASSETS"]) if os.environ.get("KUBEBUILDER_ASSETS") else folder

    def optional(name: str, *folders: Path) -> Path | None:
        return next((f / name for f in folders if (f / name).exists()), None)

    kubectl = optional("kubectl", assets, folder) or (Path(p) if (p := shutil.which("kubectl")) else None)
    etcd, apiserver = optional("etcd", assets), optional("kube-apiserver", assets)
    if etcd is None or apiserver is None or kubectl is None:
        raise AssetError(f"{assets} must hold etcd and kube-apiserver, and kubectl must be found")
    return Binaries(
        etcd=etcd,
        kube_apiserver=apiserver,
        kubectl=kubectl,
        kube_controller_manager=optional("kube-controller-manager", assets, folder),
        kube_scheduler=optional("kube-scheduler", assets, folder),
        helm=optional("helm", folder) or (Path(p) if (p := shutil.which("helm")) else None),
        ray_operator=optional("ray-operator", folder),
        kwok=optional("kwok", folder),
        kuberay_version=built.get("KUBERAY_VERSION", ""),
        kuberay_crds=Path(built["KUBERAY_CRDS"]) if "KUBERAY_CRDS" in built else None,
        monitoring_crds=Path(built["MONITORING_CRDS"]) if "MONITORING_CRDS" in built else None,
        kwok_stages=Path(built["KWOK_STAGES"]) if "KWOK_STAGES" in built else None,
    )
