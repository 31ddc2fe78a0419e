"""Support check: where a target policy leaves the logging policy's support.

Two masses of the target's decisions, overall and for the worst contexts:

* **unsupported**: on actions whose logging propensity is below a threshold (exactly 0 always
  counts). IPS, SNIPS and DR are biased there whatever the sample size: no logged row can speak
  for those decisions (DM extrapolates its reward model into them).
* **never tried**: on models the logger never chose for *similar tasks* (the same group key, e.g.
  category and complexity; per row without groups, where it equals the unsupported mass). Small
  groups can leave a supported model untried by chance; a large mass here means the estimates
  for those contexts rest on very few rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from router_rl.ope.validation import OPEInputError, check_actions, check_distribution

#: Default propensity under which an action counts as unsupported by the logger.
DEFAULT_SUPPORT_THRESHOLD = 1e-3
#: How many of the worst contexts a support check lists.
WORST_CONTEXTS = 5


@dataclass(frozen=True)
class SupportContext:
    """One context (group of similar tasks, or one row) of a support check.

    Attributes:
        context: Group key (``category=...,complexity=...``) or ``row <i>``.
        n_rows: Logged rows in it.
        unsupported_mass: Mean target mass on actions with logging propensity below the threshold.
        never_tried_mass: Mean target mass on models the logger never chose in this context.
        never_tried: Those models (with target mass > 0).
    """

    context: str
    n_rows: int
    unsupported_mass: float
    never_tried_mass: float
    never_tried: tuple[str, ...]


@dataclass(frozen=True)
class SupportCheck:
    """Where a target policy leaves the logging policy's support.

    Attributes:
        threshold: Propensity under which an action counts as unsupported.
        unsupported_mass: ``mean_i sum_a pi(a|x_i) [pi_0(a|x_i) < threshold]``: the share of the
            target's decisions the log cannot speak for; > 0 biases IPS / SNIPS / DR.
        rows_unsupported: Rows where that mass is > 0.
        never_tried_mass: Mean target mass on models never chosen for similar tasks (the row's
            group, or the row itself when no groups are given).
        group_by: The grouping used (empty: per row).
        worst: Up to :data:`WORST_CONTEXTS` contexts with the largest mass, largest first.
        violated: ``unsupported_mass > 0``.
    """

    threshold: float
    unsupported_mass: float
    rows_unsupported: int
    never_tried_mass: float
    group_by: tuple[str, ...]
    worst: list[SupportContext]
    violated: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["group_by"] = list(self.group_by)
        for w in d["worst"]:
            w["never_tried"] = list(w["never_tried"])
        return d


def support_check(
    target: object,
    logging_probs: object,
    actions: object,
    models: Sequence[str],
    *,
    groups: Sequence[str] | np.ndarray | None = None,
    group_by: Sequence[str] = (),
    threshold: float = DEFAULT_SUPPORT_THRESHOLD,
    row_labels: Sequence[str] | None = None,
) -> SupportCheck:
    """Target mass outside the logger's support, overall and in the worst contexts.

    Args:
        target: ``(n, k)`` target distribution.
        logging_probs: ``(n, k)`` logging distribution of every row.
        actions: ``(n,)`` logged actions.
        models: ``k`` model names (for the report).
        groups: ``(n,)`` group key per row ("similar tasks"); None = each row is its own context.
        group_by: Names of the columns the keys were built from (for the report).
        threshold: Propensity under which an action counts as unsupported (>= 0; an exact 0 is
            always unsupported).
        row_labels: ``(n,)`` labels of rows in per-row contexts (request ids); default ``row i``.
    """
    tgt = check_distribution(target, name="target")
    n, k = tgt.shape
    p0 = check_distribution(logging_probs, n=n, n_actions=k, name="logging_probs")
    a = check_actions(actions, k, n=n)
    if len(models) != k:
        raise OPEInputError("models", f"expected {k} names, got {len(models)}")
    if not (isinstance(threshold, int | float) and 0 <= threshold < 1):
        raise OPEInputError("threshold", f"expected a number in [0, 1), got {threshold!r}")
    unsupported = (p0 < threshold) | (p0 <= 0)
    row_mass = np.where(unsupported, tgt, 0.0).sum(axis=1)
    if groups is None:
        tried = ~unsupported  # per row, the logger's own distribution is what it "tried"
        keys = np.arange(n)
        labels = [f"row {i}" for i in range(n)] if row_labels is None else [str(s) for s in row_labels]
        never_mass_rows = row_mass
        group_tried = tried
        inverse = keys
        uniq_labels = labels
    else:
        g = np.asarray(groups).astype(str)
        if g.shape != (n,):
            raise OPEInputError("groups", f"expected {n} group keys, got shape {g.shape}")
        uniq, inverse = np.unique(g, return_inverse=True)
        group_tried = np.zeros((uniq.size, k), dtype=bool)
        group_tried[inverse, a] = True
        never_mass_rows = np.where(group_tried[inverse], 0.0, tgt).sum(axis=1)
        uniq_labels = [str(u) for u in uniq]
    n_ctx = len(uniq_labels)
    cnt = np.bincount(inverse, minlength=n_ctx)
    ctx_unsup = np.bincount(inverse, weights=row_mass, minlength=n_ctx) / np.maximum(cnt, 1)
    ctx_never = np.bincount(inverse, weights=never_mass_rows, minlength=n_ctx) / np.maximum(cnt, 1)
    score = np.maximum(ctx_unsup, ctx_never)
    order = [int(i) for i in np.lexsort((np.arange(n_ctx), -score)) if score[i] > 0][:WORST_CONTEXTS]
    worst = []
    for i in order:
        rows = np.flatnonzero(inverse == i)
        mass_per_model = tgt[rows].sum(axis=0)
        never = tuple(models[j] for j in range(k) if not group_tried[i, j] and mass_per_model[j] > 0)
        worst.append(
            SupportContext(
                context=uniq_labels[i],
                n_rows=int(cnt[i]),
                unsupported_mass=float(ctx_unsup[i]),
                never_tried_mass=float(ctx_never[i]),
                never_tried=never,
            )
        )
    mass = float(row_mass.mean())
    return SupportCheck(
        threshold=float(threshold),
        unsupported_mass=mass,
        rows_unsupported=int((row_mass > 0).sum()),
        never_tried_mass=float(never_mass_rows.mean()),
        group_by=tuple(group_by) if groups is not None else (),
        worst=worst,
        violated=mass > 0,
    )
