"""router_rl.ope."""
