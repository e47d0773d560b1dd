"""Dev tooling for this machine, never shipped in an image: the local control plane, the KubeRay lane (KWOK
nodes, KubeRay's controller, a local Ray node per Ray pod, the cluster network, Prometheus) and the demo."""
