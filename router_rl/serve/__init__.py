"""Serving a learned policy: Ray Serve deployment (``deployment``), wire format, HTTP client.

Only ``router_rl.serve.deployment`` imports Ray.
"""
