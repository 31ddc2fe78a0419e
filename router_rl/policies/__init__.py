"""router_rl.policies."""
