"""Serve app for llm-operator: Ray Serve hosting a vLLM engine behind the OpenAI API."""
