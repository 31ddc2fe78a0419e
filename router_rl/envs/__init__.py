"""router_rl.envs."""
