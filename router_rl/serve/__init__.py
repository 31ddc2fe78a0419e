"""Serving a learned policy: Ray Serve deployment (``deployment``), wire format, HTTP client.

Only ``router_rl.serve.deployment`` imports Ray (``router_rl.serve.app:build_app`` is the application builder).
"""
