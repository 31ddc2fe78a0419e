"""router-rl."""
