"""router_rl.providers."""
