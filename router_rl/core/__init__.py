"""Shared, dependency-free building blocks (errors, seeding, dataset paths).

``router_rl.core`` imports nothing else from ``router_rl``.
"""

from router_rl.core.errors import ConfigError, RouterRLError
from router_rl.core.paths import datasets_dir, require_datasets_dir
from router_rl.core.seeding import as_generator

__all__ = ["ConfigError", "RouterRLError", "as_generator", "datasets_dir", "require_datasets_dir"]
