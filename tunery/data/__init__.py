"""The data pipeline: formats → validate → render (tokens + loss mask) → pack → estimate."""
