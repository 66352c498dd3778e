"""One module per URL prefix under /v1: files, fine_tuning/jobs, fine_tuning/alpha/graders, models, chat/completions."""
