"""Replay backend: an OpenAI/Anthropic/Ollama-compatible server answering from recorded outcomes.

Import :mod:`router_rl.replay.server` (FastAPI/uvicorn) and :mod:`router_rl.replay.faults`
directly; nothing is imported here so ``import router_rl`` stays fast.
"""
