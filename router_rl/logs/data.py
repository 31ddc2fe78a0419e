"""``LoggedData``: logged bandit feedback as plain, validated numpy arrays.

One row per routed decision (the ``router-rl logs join`` output, :data:`LOGGED_SCHEMA`), in the
style of Open Bandit Pipeline's ``bandit_feedback`` dict, but as a frozen dataclass whose
constructor checks every array (over 500 lines on purpose: the validation of every field with
error messages naming the column and rows is most of it, and it belongs with the fields).
Off-policy evaluation (:mod:`router_rl.ope`) and off-policy
learning read these arrays; nothing here knows about policy objects.

Semantics (``docs/traces.md``, *Logged feedback*):

* the action of row ``i`` is ``actions[i]`` (index of ``chosen_model`` in :attr:`LoggedData.models`),
  sampled with probability ``propensities[i] == logging_probs[i, actions[i]]``;
* ``quality`` / ``cost_usd`` / ``latency_s`` describe what choosing that model produced,
  fallbacks included: credit them to ``actions`` with ``propensities`` for OPE and off-policy
  learning of the routing decision;
* ``outcome_actions[i]`` is the model whose answer the outcome describes (differs from
  ``actions[i]`` after a fallback, ``-1`` when no model of the action set answered); fit a
  per-model quality model on ``outcome_actions`` (``fallback`` rows flagged), never on ``actions``;
* ``quality`` is NaN where no feedback has arrived yet (:meth:`LoggedData.labeled` keeps the
  others); a row where no model answered carries quality 0 (an error).

Why over 500 lines: one concept (the validated arrays and the one way to build them from a table);
most lines are checks whose errors name the field, the rows and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from router_rl.traces.schema import LOCATIONS, LOGGED_SCHEMA

if TYPE_CHECKING:
    from router_rl.traces.catalog import ModelCatalog

#: Columns :meth:`LoggedData.from_table` reads (the rest of :data:`LOGGED_SCHEMA` is carried along
#: by the table only).
FROM_TABLE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "features",
    "encoder_fingerprint",
    "action_models",
    "action_probs",
    "chosen_model",
    "propensity",
    "outcome_model",
    "fallback_used",
    "quality",
    "cost_usd",
    "latency_s",
)

_PROB_TOL = 1e-6
_PROPENSITY_TOL = 1e-9


class LoggedDataError(ValueError):
    """Logged data is invalid; the message names the column (field), the row(s) and what was expected."""


def _rows(idx: np.ndarray) -> str:
    idx = np.flatnonzero(idx) if idx.dtype == bool else idx
    shown = ", ".join(str(int(i)) for i in idx[:5])
    more = ", ..." if idx.size > 5 else ""
    return f"row{'s' if idx.size > 1 else ''} {shown}{more} ({idx.size} row{'s' if idx.size != 1 else ''})"


@dataclass(frozen=True, eq=False)
class LoggedData:
    """Logged bandit feedback over ``k`` models, ``n`` decisions (arrays validated on construction).

    Attributes:
        models: The action set, the column order of ``logging_probs``.
        locations: ``"local"`` / ``"cloud"`` per model.
        X: ``(n, d)`` float32 encoded features (the logging router's encoder).
        actions: ``(n,)`` int64 index of the chosen model.
        propensities: ``(n,)`` float64 probability the chosen model was sampled with, in ``(0, 1]``.
        logging_probs: ``(n, k)`` float64 full sampling distribution (rows sum to 1).
        quality: ``(n,)`` float64 label in [0, 1]; NaN = no feedback yet.
        cost_usd: ``(n,)`` float64 USD spent (>= 0; NaN = unknown).
        latency_s: ``(n,)`` float64 seconds (NaN = unknown).
        outcome_actions: ``(n,)`` int64 index of the model the outcome describes; -1 = none of
            the action set (no model answered, or a model outside the action set did).
        fallback: ``(n,)`` bool, a model other than the chosen one answered.
        request_ids: ``(n,)`` object array of unique request ids.
        encoder_fingerprint: Fingerprint of the encoder that produced ``X`` (None: unknown).
        ts: Optional ``(n,)`` ``datetime64[us]`` decision times (UTC).
        explored: Optional ``(n,)`` bool, the chosen model was not the policy's top choice.
        outcome_models: Optional ``(n,)`` object array of the outcome model's id (None: none
            answered); the only place a model outside the action set shows up.
    """

    models: tuple[str, ...]
    locations: tuple[str, ...]
    X: np.ndarray
    actions: np.ndarray
    propensities: np.ndarray
    logging_probs: np.ndarray
    quality: np.ndarray
    cost_usd: np.ndarray
    latency_s: np.ndarray
    outcome_actions: np.ndarray
    fallback: np.ndarray
    request_ids: np.ndarray
    encoder_fingerprint: str | None = None
    ts: np.ndarray | None = None
    explored: np.ndarray | None = None
    outcome_models: np.ndarray | None = None

    def __post_init__(self) -> None:
        err = LoggedDataError
        models = tuple(self.models)
        k = len(models)
        if k == 0:
            raise err("LoggedData.models: expected at least one model")
        if len(set(models)) != k:
            raise err(f"LoggedData.models: duplicate model ids in {list(models)}")
        object.__setattr__(self, "models", models)
        locs = tuple(self.locations)
        if len(locs) != k:
            raise err(f"LoggedData.locations: expected {k} entries (one per model), got {len(locs)}")
        bad = [loc for loc in locs if loc not in LOCATIONS]
        if bad:
            raise err(f"LoggedData.locations: expected each of {list(LOCATIONS)}, got {bad}")
        object.__setattr__(self, "locations", locs)

        X = np.asarray(self.X)
        if X.ndim != 2:
            raise err(f"LoggedData.X: expected a 2-D (n, d) array, got shape {X.shape}")
        n = X.shape[0]
        if X.dtype != np.float32:
            if not np.issubdtype(X.dtype, np.floating):
                raise err(f"LoggedData.X: expected float32, got {X.dtype}")
            X = X.astype(np.float32)
        nonfinite = ~np.isfinite(X).all(axis=1)
        if nonfinite.any():
            raise err(f"LoggedData.X: {_rows(nonfinite)}: expected finite features")
        object.__setattr__(self, "X", X)

        def vec(name: str, dtype: Any, *, shape: tuple[int, ...] = (n,)) -> np.ndarray:
            a = np.asarray(getattr(self, name))
            if a.shape != shape:
                raise err(f"LoggedData.{name}: expected shape {shape}, got {a.shape}")
            if dtype is bool:
                if a.dtype != np.bool_:
                    raise err(f"LoggedData.{name}: expected bool, got {a.dtype}")
            elif dtype is np.int64:
                if not np.issubdtype(a.dtype, np.integer):
                    raise err(f"LoggedData.{name}: expected integers, got {a.dtype}")
                a = a.astype(np.int64)
            elif dtype is np.float64:
                if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                    raise err(f"LoggedData.{name}: expected floats, got {a.dtype}")
                a = a.astype(np.float64)
            object.__setattr__(self, name, a)
            return a

        actions = vec("actions", np.int64)
        out_of = (actions < 0) | (actions >= k)
        if out_of.any():
            raise err(f"LoggedData.actions: {_rows(out_of)}: expected model indices in [0, {k})")
        probs = vec("logging_probs", np.float64, shape=(n, k))
        badp = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (probs > 1).any(axis=1)
        badp |= np.abs(probs.sum(axis=1) - 1.0) > _PROB_TOL
        if badp.any():
            raise err(f"LoggedData.logging_probs: {_rows(badp)}: expected probabilities in [0, 1] summing to 1")
        prop = vec("propensities", np.float64)
        badq = ~((prop > 0) & (prop <= 1))
        if badq.any():
            raise err(f"LoggedData.propensities: {_rows(badq)}: expected a probability in (0, 1]")
        mismatch = np.abs(prop - probs[np.arange(n), actions]) > _PROPENSITY_TOL
        if mismatch.any():
            raise err(f"LoggedData.propensities: {_rows(mismatch)}: differ from logging_probs of the chosen action")
        q = vec("quality", np.float64)
        badl = ~np.isnan(q) & ((q < 0) | (q > 1))
        if badl.any():
            raise err(f"LoggedData.quality: {_rows(badl)}: expected a label in [0, 1] or NaN (unlabeled)")
        c = vec("cost_usd", np.float64)
        badc = (c < 0) | np.isinf(c)
        if badc.any():
            raise err(f"LoggedData.cost_usd: {_rows(badc)}: expected USD >= 0 or NaN (unknown)")
        lat = vec("latency_s", np.float64)
        badt = (lat < 0) | np.isinf(lat)
        if badt.any():
            raise err(f"LoggedData.latency_s: {_rows(badt)}: expected seconds >= 0 or NaN (unknown)")
        oa = vec("outcome_actions", np.int64)
        bado = (oa < -1) | (oa >= k)
        if bado.any():
            raise err(f"LoggedData.outcome_actions: {_rows(bado)}: expected -1 (none) or a model index in [0, {k})")
        fb = vec("fallback", bool)
        # without outcome_models, a fallback row with outcome -1 may be a model outside the action set
        incons = (oa >= 0) & (fb != (oa != actions))
        if self.outcome_models is not None:
            om = np.asarray(self.outcome_models, dtype=object)
            if om.shape != (n,):
                raise err(f"LoggedData.outcome_models: expected shape {(n,)}, got {om.shape}")
            object.__setattr__(self, "outcome_models", om)
            answered = np.array([m is not None for m in om], dtype=bool)
            in_set = np.array([m in models for m in om], dtype=bool)
            idx = np.array([models.index(m) if m in models else -1 for m in om], dtype=np.int64)
            badm = idx != oa
            if badm.any():
                raise err(f"LoggedData.outcome_actions: {_rows(badm)}: disagree with outcome_models")
            chosen = np.asarray(models, dtype=object)[actions]
            incons = fb != (answered & ((chosen != om) | ~in_set))
        if incons.any():
            raise err(
                f"LoggedData.fallback: {_rows(incons)}: expected True exactly where another model than the "
                "chosen one answered"
            )
        rid = np.asarray(self.request_ids, dtype=object)
        if rid.shape != (n,):
            raise err(f"LoggedData.request_ids: expected shape {(n,)}, got {rid.shape}")
        if n and len(set(rid.tolist())) != n:
            _, first, counts = np.unique(rid.astype(str), return_index=True, return_counts=True)
            dup = np.sort(first[counts > 1])
            raise err(f"LoggedData.request_ids: {_rows(dup)}: request ids repeat; expected one row per decision")
        object.__setattr__(self, "request_ids", rid)
        if self.ts is not None:
            ts = np.asarray(self.ts)
            if ts.shape != (n,) or not np.issubdtype(ts.dtype, np.datetime64):
                raise err(f"LoggedData.ts: expected ({n},) datetime64, got {ts.dtype} {ts.shape}")
            object.__setattr__(self, "ts", ts.astype("datetime64[us]"))
        if self.explored is not None:
            vec("explored", bool)

    # --- views -------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of decisions (rows)."""
        return int(self.actions.shape[0])

    @property
    def k(self) -> int:
        """Number of models (actions)."""
        return len(self.models)

    @property
    def n_features(self) -> int:
        """Feature dimension ``d``."""
        return int(self.X.shape[1])

    @property
    def is_local(self) -> np.ndarray:
        """``(k,)`` bool, True for local models."""
        return np.array([loc == LOCATIONS[0] for loc in self.locations], dtype=bool)

    @property
    def labeled_mask(self) -> np.ndarray:
        """``(n,)`` bool, True where the row has a quality label."""
        return ~np.isnan(self.quality)

    @property
    def n_labeled(self) -> int:
        """Rows with a quality label."""
        return int(self.labeled_mask.sum())

    def model_index(self, model: str) -> int:
        """Index of ``model`` in :attr:`models`."""
        try:
            return self.models.index(model)
        except ValueError:
            raise KeyError(f"model {model!r} not in the logged action set {list(self.models)}") from None

    def take(self, rows: np.ndarray | Sequence[int]) -> LoggedData:
        """Rows ``rows`` (indices or a boolean mask) as new logged data."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (self.n,):
                raise LoggedDataError(f"LoggedData.take: mask has shape {idx.shape}, expected ({self.n},)")
            idx = np.flatnonzero(idx)
        per_row = {"X", "actions", "propensities", "logging_probs", "quality", "cost_usd", "latency_s",
                   "outcome_actions", "fallback", "request_ids", "ts", "explored", "outcome_models"}
        kw: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v[idx] if f.name in per_row and v is not None else v
        return LoggedData(**kw)

    def labeled(self) -> LoggedData:
        """The rows that have a quality label (feedback arrived, or no model answered: quality 0)."""
        return self.take(self.labeled_mask)

    def summary(self) -> dict[str, Any]:
        """Counts and means for reports (JSON-able)."""
        lab = self.labeled_mask
        return {
            "n": self.n,
            "k": self.k,
            "n_labeled": int(lab.sum()),
            "n_fallback": int(self.fallback.sum()),
            "n_no_outcome": int((self.outcome_actions < 0).sum()),
            "mean_quality": float(self.quality[lab].mean()) if lab.any() else None,
            "mean_cost_usd": float(np.nanmean(self.cost_usd)) if np.isfinite(self.cost_usd).any() else None,
            "local_share": float(self.is_local[self.actions].mean()) if self.n else None,
            "min_propensity": float(self.propensities.min()) if self.n else None,
            "encoder_fingerprint": self.encoder_fingerprint,
        }

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_table(
        cls,
        df: pl.DataFrame,
        *,
        locations: Mapping[str, str] | Sequence[str] | None = None,
        catalog: ModelCatalog | None = None,
        require_fingerprint: str | None = None,
        models: Sequence[str] | None = None,
        source: str | None = None,
    ) -> LoggedData:
        """Arrays from a joined table in :data:`LOGGED_SCHEMA` (``router-rl logs join`` output).

        The action set is one ordered model list for every row: ``models`` when given, else the
        ``action_models`` of row 0. Rows listing the same models in another order are re-indexed
        (their probabilities permuted); rows with another model set are refused, counted per set.

        Args:
            df: The table (one row per decision; rejected requests must already be excluded).
            locations: ``{model: "local"|"cloud"}`` or one location per model of the action set.
            catalog: Alternative to ``locations``: a catalog covering the action set.
                Without either, the table's ``action_locations`` column is used.
            require_fingerprint: When given, every row's ``encoder_fingerprint`` must equal it.
            models: The action-set order to use.
            source: Name of the table in error messages (a file path).

        Raises:
            LoggedDataError: naming the column and the rows: missing column, rejected rows, null
                features, another action set, several encoder fingerprints, inconsistent
                locations, a chosen/outcome model outside the action set, bad probabilities.
        """
        where = f"{source}: " if source else ""
        err = LoggedDataError
        missing = [c for c in FROM_TABLE_COLUMNS if c not in df.columns]
        if missing:
            raise err(f"{where}column(s) {missing} missing; expected a table in LOGGED_SCHEMA (router-rl logs join)")
        n = df.height
        if "strategy" in df.columns:
            rej = (df["strategy"] == "rejected").fill_null(False).to_numpy()
            if rej.any():
                raise err(
                    f"{where}column 'strategy': {_rows(rej)}: rejected requests (never executed) are not "
                    "logged decisions; join_logs excludes them"
                )
        for col in ("request_id", "action_models", "action_probs", "chosen_model", "propensity"):
            nulls = df[col].is_null().to_numpy()
            if nulls.any():
                raise err(f"{where}column {col!r}: {_rows(nulls)}: required, got null")
        if n == 0:
            order = tuple(models) if models is not None else None
            if order is None:
                raise err(f"{where}no rows, and no models= given: the action set is unknown")
        else:
            order = tuple(models) if models is not None else tuple(df["action_models"][0].to_list())
        k = len(order)
        if len(set(order)) != k:
            raise err(f"{where}column 'action_models': duplicate model ids in {list(order)}")

        # --- one action set for every row: re-index other orders, refuse other sets
        keys = df["action_models"].list.join("\x1f").to_numpy() if n else np.array([], dtype=object)
        probs = np.zeros((n, k), dtype=np.float64)
        other_sets: dict[tuple[str, ...], np.ndarray] = {}
        n_reindexed = 0
        plen = df["action_probs"].list.len().to_numpy() if n else np.array([], dtype=np.int64)
        mlen = df["action_models"].list.len().to_numpy() if n else np.array([], dtype=np.int64)
        badlen = plen != mlen
        if badlen.any():
            raise err(
                f"{where}column 'action_probs': {_rows(badlen)}: expected one probability per action_models entry"
            )
        for key in np.unique(keys.astype(str)) if n else []:
            mask = keys == key
            row_models = tuple(key.split("\x1f")) if key else ()
            if set(row_models) != set(order) or len(row_models) != k:
                other_sets[row_models] = mask
                continue
            raw = df.filter(pl.Series(mask))["action_probs"].list.to_array(k).to_numpy()
            perm = [row_models.index(m) for m in order]
            probs[mask] = raw[:, perm]
            if row_models != order:
                n_reindexed += int(mask.sum())
        if other_sets:
            desc = "; ".join(f"{list(s)}: {_rows(m)}" for s, m in other_sets.items())
            raise err(
                f"{where}column 'action_models': expected the action set {list(order)} (any order) on every row; "
                f"other sets: {desc}; split the log by action set (or pass models=)"
            )

        index = {m: i for i, m in enumerate(order)}
        chosen = df["chosen_model"].to_list()
        actions = np.fromiter((index.get(m, -1) for m in chosen), dtype=np.int64, count=n)
        if (actions < 0).any():
            raise err(f"{where}column 'chosen_model': {_rows(actions < 0)}: not in the action set {list(order)}")
        outcome = df["outcome_model"].to_list()
        outcome_actions = np.fromiter((index.get(m, -1) if m is not None else -1 for m in outcome),
                                      dtype=np.int64, count=n)
        answered = np.array([m is not None for m in outcome], dtype=bool)
        chosen_arr = np.asarray(chosen, dtype=object)
        outcome_arr = np.asarray(outcome, dtype=object)
        fallback = answered & (outcome_arr != chosen_arr)
        fb_col = df["fallback_used"].to_numpy()
        fb_known = ~df["fallback_used"].is_null().to_numpy()
        disagree = fb_known & (fb_col.astype(bool) != fallback)
        if disagree.any():
            raise err(
                f"{where}column 'fallback_used': {_rows(disagree)}: disagrees with chosen_model != outcome_model"
            )

        # --- features and their encoder
        null_feat = df["features"].is_null().to_numpy()
        if null_feat.any():
            raise err(
                f"{where}column 'features': {_rows(null_feat)}: null (the router logged no feature vector); "
                "filter those rows or log features"
            )
        flen = df["features"].list.len().to_numpy() if n else np.array([], dtype=np.int64)
        d = int(flen[0]) if n else 0
        if (flen != d).any():
            raise err(f"{where}column 'features': {_rows(flen != d)}: expected {d} features like row 0")
        X = df["features"].list.to_array(d).to_numpy().astype(np.float32) if n else np.zeros((0, 0), np.float32)
        fps = df["encoder_fingerprint"].to_numpy()
        fp_null = df["encoder_fingerprint"].is_null().to_numpy()
        fingerprint: str | None
        if require_fingerprint is not None:
            other = fp_null | (fps != require_fingerprint)
            if other.any():
                groups = df.filter(pl.Series(other)).group_by("encoder_fingerprint").len()
                desc = ", ".join(f"{r['encoder_fingerprint']}: {r['len']}" for r in groups.iter_rows(named=True))
                raise err(
                    f"{where}column 'encoder_fingerprint': {_rows(other)}: expected {require_fingerprint} "
                    f"(require_fingerprint), got {desc}"
                )
            fingerprint = require_fingerprint
        else:
            distinct = sorted({str(f) for f in fps[~fp_null]})
            if len(distinct) > 1 or (distinct and fp_null.any()):
                groups = df.group_by("encoder_fingerprint").len().sort("len", descending=True)
                desc = ", ".join(f"{r['encoder_fingerprint']}: {r['len']}" for r in groups.iter_rows(named=True))
                raise err(
                    f"{where}column 'encoder_fingerprint': features come from several encoders ({desc} rows); "
                    "features of different encoders cannot be stacked: pass require_fingerprint= "
                    "(and filter the other rows)"
                )
            fingerprint = distinct[0] if distinct else None

        # --- outcome arrays: a row where no model answered carries quality 0 and costs nothing
        quality = df["quality"].cast(pl.Float64).fill_null(np.nan).to_numpy().copy()
        quality[~answered & np.isnan(quality)] = 0.0
        cost = df["cost_usd"].cast(pl.Float64).fill_null(np.nan).to_numpy().copy()
        cost[~answered & np.isnan(cost)] = 0.0
        latency = df["latency_s"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        props = df["propensity"].cast(pl.Float64).to_numpy()

        locs = cls._resolve_locations(df, order, locations=locations, catalog=catalog, where=where)
        ts = df["ts"].dt.replace_time_zone(None).to_numpy() if "ts" in df.columns and not df["ts"].is_null().any() \
            else None
        explored = None
        if "explored" in df.columns and not df["explored"].is_null().any():
            explored = df["explored"].to_numpy().astype(bool)
        try:
            return cls(
                models=order,
                locations=locs,
                X=X,
                actions=actions,
                propensities=props,
                logging_probs=probs,
                quality=quality,
                cost_usd=cost,
                latency_s=latency,
                outcome_actions=outcome_actions,
                fallback=fallback,
                request_ids=np.asarray(df["request_id"].to_list(), dtype=object),
                encoder_fingerprint=fingerprint,
                ts=ts,
                explored=explored,
                outcome_models=outcome_arr,
            )
        except LoggedDataError as e:
            raise LoggedDataError(f"{where}{e}") from e

    @staticmethod
    def _resolve_locations(
        df: pl.DataFrame,
        order: tuple[str, ...],
        *,
        locations: Mapping[str, str] | Sequence[str] | None,
        catalog: ModelCatalog | None,
        where: str,
    ) -> tuple[str, ...]:
        err = LoggedDataError
        if locations is not None and catalog is not None:
            raise err("LoggedData.from_table: pass locations= or catalog=, not both")
        if isinstance(locations, Mapping):
            absent = [m for m in order if m not in locations]
            if absent:
                raise err(f"locations: no location for model(s) {absent}")
            return tuple(str(locations[m]) for m in order)
        if locations is not None:
            locs = tuple(str(x) for x in locations)
            if len(locs) != len(order):
                raise err(f"locations: expected {len(order)} entries (one per model of {list(order)}), got {len(locs)}")
            return locs
        if catalog is not None:
            absent = [m for m in order if m not in catalog]
            if absent:
                raise err(f"catalog: model(s) {absent} of the action set are not in the catalog")
            return tuple(catalog[m].location for m in order)
        if "action_locations" not in df.columns or df.height == 0 or df["action_locations"].is_null().any():
            raise err(
                f"{where}column 'action_locations': missing or null; pass locations= or catalog= "
                "(or join the log with a catalog)"
            )
        seen: dict[str, set[str]] = {m: set() for m in order}
        pairs = df.select(
            pl.col("action_models").alias("m"), pl.col("action_locations").alias("l")
        ).unique().iter_rows()
        for ms, ls in pairs:
            if len(ms) != len(ls):
                raise err(f"{where}column 'action_locations': expected one location per action_models entry")
            for m, loc in zip(ms, ls, strict=True):
                seen[m].add(loc)
        conflict = {m: sorted(s) for m, s in seen.items() if len(s) != 1}
        if conflict:
            raise err(f"{where}column 'action_locations': models with several or no locations: {conflict}")
        return tuple(next(iter(seen[m])) for m in order)


def load_logged(
    path: str | Path,
    *,
    locations: Mapping[str, str] | Sequence[str] | None = None,
    catalog: ModelCatalog | None = None,
    require_fingerprint: str | None = None,
    models: Sequence[str] | None = None,
    days: tuple[Any, Any] | None = None,
    policy_versions: Sequence[str] | None = None,
) -> LoggedData:
    """Read a ``router-rl logs join`` parquet file (or partitioned folder) into :class:`LoggedData`.

    Args:
        path: The parquet file, or a partitioned joined log (``day=.../policy_version=...``
            folders, ``router-rl logs join --partitioned``): a lazy scan that opens only the
            partitions in ``days`` / ``policy_versions`` (:func:`router_rl.logs.partition.scan_table`).
        locations / catalog / require_fingerprint / models: As in :meth:`LoggedData.from_table`.
        days: ``(first, last)`` day (``YYYY-MM-DD`` or dates, inclusive, None = open); folders only.
        policy_versions: Keep the rows of these logging-policy versions (a file: filtered after reading).

    Raises:
        FileNotFoundError: no such file or folder.
        LoggedDataError: unreadable file, a column of :data:`LOGGED_SCHEMA` with another dtype,
            or any :meth:`LoggedData.from_table` refusal (the message starts with the path).
    """
    p = Path(path)
    if p.is_dir():
        from router_rl.logs.partition import PartitionError, partition_files, scan_table

        try:
            if not partition_files(p, "logged", days=days, policy_versions=policy_versions):
                raise PartitionError(f"{p}: no partition in days={days}, policy_versions={policy_versions}")
            df = scan_table(p, "logged", days=days, policy_versions=policy_versions).collect()
        except PartitionError as e:
            raise LoggedDataError(str(e)) from e
    elif not p.is_file():
        raise FileNotFoundError(f"logged data file {p} does not exist")
    else:
        if days is not None:
            raise LoggedDataError(f"{p}: days= filters a partitioned folder; this is one file")
        try:
            df = pl.read_parquet(p)
        except Exception as e:
            raise LoggedDataError(f"{p}: unreadable parquet file ({e})") from e
        if policy_versions is not None:
            df = df.filter(pl.col("policy_version").is_in(list(policy_versions)))
    check_logged_table(df, source=str(p))
    return LoggedData.from_table(
        df, locations=locations, catalog=catalog, require_fingerprint=require_fingerprint, models=models,
        source=str(p),
    )


def check_logged_table(df: pl.DataFrame, *, source: str | None = None) -> None:
    """Raise :class:`LoggedDataError` unless ``df`` has every :data:`LOGGED_SCHEMA` column with its dtype."""
    where = f"{source}: " if source else ""
    have = dict(df.schema)
    for col, dtype in LOGGED_SCHEMA.items():
        if col not in have:
            raise LoggedDataError(f"{where}column {col!r} missing; expected a table in LOGGED_SCHEMA")
        if have[col] != dtype:
            raise LoggedDataError(f"{where}column {col!r}: expected {dtype}, got {have[col]}")
