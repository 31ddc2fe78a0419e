"""The Ray Serve application builder of the policy endpoint (what ``serve run`` / ``serve deploy`` import).

::

    serve run router_rl.serve.app:build_app policy_path=/srv/policy
    serve deploy serve/policy.yaml -a http://127.0.0.1:8265      # import_path: router_rl.serve.app:build_app

Importing this module pulls in no Ray; :func:`build_app` imports the deployment. Replicas,
autoscaling, health checks and graceful shutdown are Serve deployment options: set them in the
config file's ``deployments`` entry named ``RoutingPolicy`` (see serve/policy.yaml and
docs/serving.md), or with :func:`build_app`'s ``options`` in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from router_rl.serve.protocol import ServeUserConfig

#: The builder's arguments (``key=value`` on ``serve run``, ``args:`` in a Serve config file).
ARGS = ("policy_path", "max_batch_size", "batch_wait_timeout_s")


class AppArgsError(ValueError):
    """The application builder got arguments it cannot use (names the argument)."""


def parse_args(args: Mapping[str, Any]) -> ServeUserConfig:
    """Validate the builder's arguments (strings from ``serve run`` are converted).

    Raises:
        AppArgsError: an unknown argument, a missing ``policy_path``, a value of the wrong type, or
            a ``policy_path`` that is not a folder on this machine.
    """
    unknown = sorted(set(args) - set(ARGS))
    if unknown:
        raise AppArgsError(f"build_app: unknown argument(s) {unknown}; expected {list(ARGS)}")
    if not args.get("policy_path"):
        raise AppArgsError("build_app: missing argument policy_path=DIR (a policy artifact folder)")
    try:
        cfg = ServeUserConfig.model_validate(dict(args))
    except ValidationError as e:
        err = e.errors()[0]
        raise AppArgsError(f"build_app: argument {err['loc'][0]}={args.get(str(err['loc'][0]))!r}: {err['msg']}") \
            from None
    assert cfg.policy_path is not None
    if not Path(cfg.policy_path).is_dir():
        raise AppArgsError(f"build_app: policy_path={cfg.policy_path!r} is not a folder (a policy artifact is)")
    return cfg


def load_serve_config(path: str | Path) -> Any:
    """Read a Serve config file and validate it with Ray's own schema, plus what that schema lets through.

    Ray's :class:`ray.serve.schema.ServeDeploySchema` accepts unknown keys (forward
    compatibility), so a misspelt deployment option would be ignored silently; here every key of a
    ``deployments`` entry, of its ``autoscaling_config`` and of this application's ``args`` must be
    known, and the ``RoutingPolicy`` entry's autoscaling config must build a Ray ``AutoscalingConfig``.

    Returns:
        The validated :class:`ray.serve.schema.ServeDeploySchema`.

    Raises:
        ValueError: the file, the application / deployment and the key that is wrong.
    """
    import yaml
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import DeploymentSchema, ServeDeploySchema

    where = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
        schema = ServeDeploySchema.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ValueError(f"{where}: not a valid Serve config: {e}") from None
    known = set(DeploymentSchema.model_fields)
    known_auto = set(AutoscalingConfig.model_fields)
    for i, app in enumerate(raw["applications"]):
        for j, dep in enumerate(app.get("deployments") or []):
            at = f"{where}: applications[{i}].deployments[{j}] ({dep.get('name')})"
            unknown = sorted(set(dep) - known)
            if unknown:
                raise ValueError(f"{at}: unknown option(s) {unknown}")
            auto = dep.get("autoscaling_config") or {}
            unknown = sorted(set(auto) - known_auto)
            if unknown:
                raise ValueError(f"{at}.autoscaling_config: unknown option(s) {unknown}")
            try:
                AutoscalingConfig(**auto)
            except (ValidationError, ValueError) as e:
                raise ValueError(f"{at}.autoscaling_config: {e}") from None
            if dep.get("user_config") is not None:
                try:
                    ServeUserConfig.model_validate(dep["user_config"])
                except ValidationError as e:
                    raise ValueError(f"{at}.user_config: {e}") from None
        if app.get("import_path") == f"{__name__}:build_app":
            unknown = sorted(set(app.get("args") or {}) - set(ARGS))
            if unknown:
                raise ValueError(
                    f"{where}: applications[{i}].args: unknown argument(s) {unknown}; expected {list(ARGS)}"
                )
    return schema


def build_app(args: Mapping[str, Any]) -> Any:
    """The application builder ``serve run`` / ``serve deploy`` call (exactly one parameter).

    Deployment options (replicas, autoscaling, health checks) come from the Serve config YAML
    (``serve/policy.yaml``); from Python, :func:`policy_app` takes them as keywords.

    Args:
        args: ``policy_path`` (required), ``max_batch_size``, ``batch_wait_timeout_s``.
    """
    return policy_app(args)


def policy_app(args: Mapping[str, Any], **options: Any) -> Any:
    """The policy application: one ``RoutingPolicy`` deployment serving ``args['policy_path']``.

    Args:
        args: ``policy_path`` (required), ``max_batch_size``, ``batch_wait_timeout_s``
            (:class:`~router_rl.serve.protocol.ServeUserConfig`).
        **options: Serve deployment options (``num_replicas``, ``autoscaling_config``,
            ``health_check_period_s``, ``graceful_shutdown_timeout_s``, ``version``...).

    Returns:
        A bound Serve application (``serve.run`` it, or let ``serve run`` / ``serve deploy`` do).

    Raises:
        AppArgsError: see :func:`parse_args`.
    """
    cfg = parse_args(args)
    from router_rl.serve.deployment import PolicyDeployment

    deployment: Any = PolicyDeployment  # a serve Deployment at runtime (mypy sees the class)
    return deployment.options(user_config=cfg.model_dump(), **options).bind(cfg.policy_path)
