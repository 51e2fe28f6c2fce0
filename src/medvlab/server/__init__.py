"""The lab server (FastAPI): OpenAI-compatible API, REST routes, health, and the mounted web UI."""
