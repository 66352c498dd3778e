"""The OpenAI-compatible HTTP server: files, fine-tuning jobs, models and chat completions.

`app.create_app(settings)` builds the FastAPI app (`tunery serve` adds the dashboard of
tunery/web/ to it); `deps.server_of(request)` is what a route reads; route modules under `routes/` mirror the
URL paths (`/v1/files` → routes/files.py), wire types under `types/` mirror openai-python.
"""
