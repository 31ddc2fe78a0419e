"""router_rl.features."""
