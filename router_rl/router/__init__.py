"""router_rl.router."""
