"""router_rl.federated."""
