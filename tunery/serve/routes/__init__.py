"""One module per URL prefix under /v1: files, fine_tuning/jobs, models, chat/completions."""
