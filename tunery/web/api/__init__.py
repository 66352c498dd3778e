"""Read-only endpoints under /v1/tunery for data the OpenAI-shaped API does not expose."""
