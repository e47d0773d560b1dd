"""llm-operator: runs LLMs on Kubernetes (LLMDeployment -> KubeRay RayService + monitors)."""
