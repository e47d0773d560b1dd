"""Pure builders of an LLMDeployment's children: data in, dicts out; no I/O."""
