"""router_rl.serve."""
