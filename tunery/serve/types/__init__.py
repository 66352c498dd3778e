"""Wire types: pydantic models mirroring openai-python's `types/`, with `Literal` statuses."""
