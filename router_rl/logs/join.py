"""``join_logs``: decision log + feedback -> one labeled row per decision (:data:`LOGGED_SCHEMA`).

The label rule (``docs/traces.md``, *Logged feedback*):

1. feedback rows repeating a ``feedback_id`` (the idempotency key) are stored once: the first
   received is kept, the others counted;
2. per (request, source) the newest feedback wins (by ``ts``, then ``received_ts``); older rows
   of the same source are counted as superseded;
3. sources are combined by ``label_rule``:

   * ``"mean"`` (default): the mean over sources of their newest quality;
   * ``"newest"``: the newest feedback across all sources;
   * ``"priority"``: the first source of ``source_priority`` that has feedback; feedback from
     sources outside the list is not used (counted).

Rejected requests (``strategy == "rejected"``: never executed) are excluded and counted; a
request no model answered (``outcome_model`` null) carries quality 0 whatever its feedback
(counted). Rows without feedback keep quality null (counted). Feedback for request ids the log
does not hold is counted as orphans. Nothing is dropped without a count in :class:`JoinReport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from router_rl.traces.schema import FEEDBACK_SCHEMA, LOGGED_SCHEMA

if TYPE_CHECKING:
    from router_rl.traces.catalog import ModelCatalog

LabelRule = Literal["mean", "newest", "priority"]
LABEL_RULES: tuple[str, ...] = ("mean", "newest", "priority")

#: ``strategy`` of a request refused before any decision (the router logs it, never executed).
REJECTED = "rejected"


class JoinError(ValueError):
    """The logs cannot be joined as asked (bad rule, models missing from the catalog, ...)."""


@dataclass
class JoinReport:
    """What :func:`join_logs` read, kept, excluded and counted.

    Attributes:
        decisions: Decision rows read.
        rejected: Rejected requests excluded (never executed).
        duplicate_decisions: Decision rows repeating a request id (the first by ``ts`` is kept).
        excluded_no_features: Rows excluded by ``drop_unusable`` for lack of a feature vector.
        excluded_fingerprint: Rows excluded by ``drop_unusable`` for another encoder fingerprint, or
            for none while the other rows have one (their encoder cannot be checked).
        rows: Rows of the joined table (= labeled + no_answer + unlabeled).
        labeled: Rows labeled from feedback.
        no_answer: Rows no model answered (quality 0).
        unlabeled: Answered rows without feedback yet (quality null).
        fallbacks: Rows whose outcome model differs from the chosen one.
        feedback_rows: Feedback rows read.
        duplicate_feedback_ids: Feedback rows repeating a stored ``feedback_id`` (not used again).
        orphan_feedback: Feedback rows for request ids absent from the decision log.
        feedback_for_rejected: Feedback rows for rejected requests.
        feedback_for_excluded: Feedback rows for rows excluded by ``drop_unusable`` / duplicates.
        feedback_on_no_answer: Feedback rows for requests no model answered (ignored: quality 0).
        superseded_feedback: Older feedback of the same (request, source), replaced by a newer one.
        unused_source_feedback: Feedback of sources outside ``source_priority`` (rule ``priority``).
        sources: Feedback rows per source (after duplicate ids).
        fingerprints: Joined rows per encoder fingerprint (``"null"``: no features, ``"unknown"``:
            features without a fingerprint).
        reference_fingerprint: ``expect_fingerprint``, else the majority non-null fingerprint
            (None: no row has one).
        fingerprint_mismatches: Rows (with features) whose fingerprint is another than the reference.
        no_features: Rows without a feature vector.
        no_fingerprint: Rows with features but no ``encoder_fingerprint`` (unverifiable encoder).
        label_rule: The rule applied (``"priority:a,b"`` lists the priority).
    """

    decisions: int = 0
    rejected: int = 0
    duplicate_decisions: int = 0
    excluded_no_features: int = 0
    excluded_fingerprint: int = 0
    rows: int = 0
    labeled: int = 0
    no_answer: int = 0
    unlabeled: int = 0
    fallbacks: int = 0
    feedback_rows: int = 0
    duplicate_feedback_ids: int = 0
    orphan_feedback: int = 0
    feedback_for_rejected: int = 0
    feedback_for_excluded: int = 0
    feedback_on_no_answer: int = 0
    superseded_feedback: int = 0
    unused_source_feedback: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, int] = field(default_factory=dict)
    reference_fingerprint: str | None = None
    fingerprint_mismatches: int = 0
    no_features: int = 0
    no_fingerprint: int = 0
    label_rule: str = "mean"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _empty_feedback() -> pl.DataFrame:
    return pl.DataFrame(schema=dict(FEEDBACK_SCHEMA))


def join_logs(
    decision_dir: str | Path,
    feedback_dir: str | Path | None = None,
    *,
    label_rule: LabelRule | str = "mean",
    source_priority: Sequence[str] | None = None,
    catalog: ModelCatalog | None = None,
    expect_fingerprint: str | None = None,
    drop_unusable: bool = False,
) -> tuple[pl.DataFrame, JoinReport]:
    """Join a decision log with its feedback into one labeled row per decision.

    Args:
        decision_dir: Folder of decision-log part files.
        feedback_dir: Folder of feedback part files (``None``: no feedback, every row unlabeled).
        label_rule: ``"mean"``, ``"newest"`` or ``"priority"`` (module docstring).
        source_priority: Sources in priority order (rule ``"priority"`` only, required there).
        catalog: Fills ``action_locations`` (null without it); must cover every logged model.
        expect_fingerprint: The encoder fingerprint the rows should carry (default: the majority).
        drop_unusable: Exclude (and count) rows without features, with another fingerprint than
            the reference, or with none while a reference exists, so that
            :meth:`LoggedData.from_table` accepts the table.

    Returns:
        ``(table, report)``: the table in :data:`LOGGED_SCHEMA` (decision-log order) and the counts.

    Raises:
        FileNotFoundError: a folder does not exist.
        JoinError: unknown rule, priority without sources, models missing from the catalog.
        router_rl.traces.decision_log.DecisionLogError / router_rl.traces.feedback.FeedbackError:
            a part file breaks its schema (names the file).
    """
    from router_rl.traces.decision_log import read_decision_log
    from router_rl.traces.feedback import read_feedback

    check_label_rule(label_rule, source_priority)
    dec = read_decision_log(decision_dir)
    fb = read_feedback(feedback_dir) if feedback_dir is not None else _empty_feedback()
    return join_frames(dec, fb, label_rule=label_rule, source_priority=source_priority, catalog=catalog,
                       expect_fingerprint=expect_fingerprint, drop_unusable=drop_unusable)


def check_label_rule(label_rule: str, source_priority: Sequence[str] | None) -> None:
    """Raise :class:`JoinError` for an unknown rule or a priority list that does not fit it."""
    prio = list(source_priority or [])
    if label_rule not in LABEL_RULES:
        raise JoinError(f"label_rule: expected one of {list(LABEL_RULES)}, got {label_rule!r}")
    if label_rule == "priority" and not prio:
        raise JoinError("label_rule 'priority': source_priority must list at least one source")
    if label_rule != "priority" and prio:
        raise JoinError(f"source_priority: only used with label_rule 'priority' (got {label_rule!r})")


def join_frames(
    decisions: pl.DataFrame,
    feedback: pl.DataFrame,
    *,
    label_rule: LabelRule | str = "mean",
    source_priority: Sequence[str] | None = None,
    catalog: ModelCatalog | None = None,
    expect_fingerprint: str | None = None,
    drop_unusable: bool = False,
) -> tuple[pl.DataFrame, JoinReport]:
    """:func:`join_logs` on frames already read (:data:`DECISION_LOG_SCHEMA`, :data:`FEEDBACK_SCHEMA`).

    The partitioned join (:mod:`router_rl.logs.partition_join`) calls it once per day partition.
    Arguments and result as :func:`join_logs` (row order: the frames' order).
    """
    check_label_rule(label_rule, source_priority)
    prio = list(source_priority or [])
    rep = JoinReport(label_rule=label_rule if label_rule != "priority" else "priority:" + ",".join(prio))

    dec = decisions.with_row_index("__order")
    rep.decisions = dec.height
    is_rej = (pl.col("strategy") == REJECTED).fill_null(False)
    rejected_ids = set(dec.filter(is_rej)["request_id"].to_list())
    rep.rejected = dec.filter(is_rej).height
    dec = dec.filter(~is_rej)
    # one row per request id: the first by ts (then file order)
    dedup = dec.sort("ts", "__order").unique(subset="request_id", keep="first", maintain_order=True)
    rep.duplicate_decisions = dec.height - dedup.height
    dec = dedup.sort("__order")

    # --- encoder fingerprints
    has_feat = pl.col("features").is_not_null()
    fp = pl.col("encoder_fingerprint")
    rep.no_features = dec.filter(~has_feat).height
    rep.no_fingerprint = dec.filter(has_feat & fp.is_null()).height
    fp_counts = dec.filter(has_feat & fp.is_not_null()).group_by("encoder_fingerprint").len().sort(
        ["len", "encoder_fingerprint"], descending=[True, False]
    )
    ref = expect_fingerprint
    if ref is None and fp_counts.height:
        ref = fp_counts["encoder_fingerprint"][0]
    rep.reference_fingerprint = ref
    mismatch = has_feat & fp.is_not_null() & (fp != pl.lit(ref)) if ref is not None else pl.lit(False)
    rep.fingerprint_mismatches = dec.filter(mismatch).height
    # features without a fingerprint cannot be checked against a reference: unusable when there is one
    other_fp = mismatch | (has_feat & fp.is_null()) if ref is not None else pl.lit(False)
    excluded_ids: set[str] = set()
    if drop_unusable:
        rep.excluded_no_features = rep.no_features
        rep.excluded_fingerprint = dec.filter(other_fp).height
        excluded_ids = set(dec.filter(~has_feat | other_fp)["request_id"].to_list())
        dec = dec.filter(has_feat & ~other_fp)
    fp_all = dec.with_columns(
        pl.when(has_feat).then(fp.fill_null("unknown")).otherwise(pl.lit("null")).alias("fp")
    ).group_by("fp").len().sort("fp")
    rep.fingerprints = {str(r["fp"]): int(r["len"]) for r in fp_all.iter_rows(named=True)}

    # --- feedback
    fb = feedback
    rep.feedback_rows = fb.height
    fb = fb.with_row_index("__fo")
    fb_unique = fb.sort("received_ts", "__fo").unique(subset="feedback_id", keep="first", maintain_order=True)
    rep.duplicate_feedback_ids = fb.height - fb_unique.height
    fb = fb_unique
    per_source = fb.group_by("source").len().sort("source")
    rep.sources = {str(r["source"]): int(r["len"]) for r in per_source.iter_rows(named=True)}
    kept_ids = pl.Series(dec["request_id"])
    answered_ids = pl.Series(dec.filter(pl.col("outcome_model").is_not_null())["request_id"])
    in_rejected = pl.col("request_id").is_in(list(rejected_ids))
    in_excluded = pl.col("request_id").is_in(list(excluded_ids))
    in_kept = pl.col("request_id").is_in(kept_ids.implode())
    rep.feedback_for_rejected = fb.filter(in_rejected & ~in_kept).height
    rep.feedback_for_excluded = fb.filter(in_excluded & ~in_kept & ~in_rejected).height
    rep.orphan_feedback = fb.filter(~in_kept & ~in_rejected & ~in_excluded).height
    fb = fb.filter(in_kept)
    n_feedback = fb.group_by("request_id").agg(pl.len().cast(pl.Int64).alias("n_feedback"))
    on_no_answer = ~pl.col("request_id").is_in(answered_ids.implode())
    rep.feedback_on_no_answer = fb.filter(on_no_answer).height
    fb = fb.filter(~on_no_answer)
    if label_rule == "priority":
        outside = ~pl.col("source").is_in(prio)
        rep.unused_source_feedback = fb.filter(outside).height
        fb = fb.filter(~outside)
    newest = fb.sort("ts", "received_ts", "__fo").group_by(["request_id", "source"], maintain_order=True).last()
    rep.superseded_feedback = fb.height - newest.height
    if label_rule == "mean":
        labels = newest.group_by("request_id").agg(
            pl.col("quality").mean().alias("__q"),
            pl.col("source").sort().alias("label_sources"),
            pl.col("ts").max().alias("label_ts"),
        )
    elif label_rule == "newest":
        labels = newest.sort("ts", "received_ts", "__fo").group_by("request_id").agg(
            pl.col("quality").last().alias("__q"),
            pl.col("source").last().alias("__src"),
            pl.col("ts").last().alias("label_ts"),
        ).with_columns(pl.concat_list("__src").alias("label_sources")).drop("__src")
    else:
        rank = {s: i for i, s in enumerate(prio)}
        best = newest.with_columns(
            pl.col("source").replace_strict(rank, return_dtype=pl.Int64).alias("__rank")
        ).sort("__rank").group_by("request_id").first()
        labels = best.select(
            "request_id",
            pl.col("quality").alias("__q"),
            pl.concat_list(pl.col("source")).alias("label_sources"),
            pl.col("ts").alias("label_ts"),
        )

    out = dec.join(labels, on="request_id", how="left").join(n_feedback, on="request_id", how="left")
    out = out.sort("__order")
    answered = pl.col("outcome_model").is_not_null()
    out = out.with_columns(
        pl.when(answered).then(pl.col("__q")).otherwise(pl.lit(0.0)).alias("quality"),
        pl.when(answered).then(pl.col("label_sources")).otherwise(pl.lit([], dtype=pl.List(pl.Utf8)))
        .fill_null(pl.lit([], dtype=pl.List(pl.Utf8))).alias("label_sources"),
        pl.when(answered).then(pl.col("label_ts")).otherwise(None).alias("label_ts"),
        pl.col("n_feedback").fill_null(0),
    )
    if catalog is not None:
        models = set(out["action_models"].explode().drop_nulls().unique().to_list()) if out.height else set()
        absent = sorted(m for m in models if m not in catalog)
        if absent:
            raise JoinError(f"catalog: logged model(s) {absent} are not in the catalog (locations unknown)")
        loc = {m: catalog[m].location for m in models}
        out = out.with_columns(
            pl.col("action_models").list.eval(pl.element().replace_strict(loc, return_dtype=pl.Utf8))
            .alias("action_locations")
        )
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.List(pl.Utf8)).alias("action_locations"))
    table = out.select([pl.col(c).cast(t) for c, t in LOGGED_SCHEMA.items()])

    rep.rows = table.height
    no_ans = table["outcome_model"].is_null()
    rep.no_answer = int(no_ans.sum())
    rep.labeled = int((~no_ans & table["quality"].is_not_null()).sum())
    rep.unlabeled = int((~no_ans & table["quality"].is_null()).sum())
    rep.fallbacks = int((~no_ans & (table["outcome_model"] != table["chosen_model"])).sum())
    return table, rep
