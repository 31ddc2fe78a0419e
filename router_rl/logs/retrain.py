"""Scheduled retraining: run the training command when enough new labels arrived, or on a cron schedule.

``router-rl logs retrain --config retrain.yaml`` is meant to be called often (by the operator's
cron, a Kubernetes CronJob, or a loop); it decides whether a run is due and does nothing
otherwise:

* ``min_new_labeled: N``: due when the partitioned joined log holds >= N more labeled rows
  than at the last successful run (counted from the ``quality`` column of the partitions only);
* ``cron: "M H DOM MON DOW"``: due when a minute matching the expression (fields: ``*``,
  numbers, ``a-b`` ranges, ``*/s`` or ``a-b/s`` steps, ``,`` lists; DOW 0 = Sunday) lies in
  ``(last run, now]``;
* both given: due when either is; neither: refused. No state yet: due (the first run).

A due run writes the labeled rows of the last ``window_days`` days (``days`` ending at ``now``)
to ``RUN/logged.parquet``, then runs ``command`` with ``{log}``, ``{out}`` (``RUN/artifact``) and
``{run}`` substituted, e.g. ``router-rl train --log {log} --policy lgbm --encoder enc -o {out}``
followed by ``router-rl promote`` (docs/promotion.md) in a shell script. The state file
(``last_run_at``, the labeled count it saw, runs, the last status) is written atomically (temporary
file + ``os.replace``) after the command: a crash in between runs it again next time (at least
once); a failed command leaves the labeled count where it was, so the next call retries. One
scheduler per state file at a time (``fcntl`` lock).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from pydantic import BeforeValidator, Field, field_validator

from router_rl.core.config import PositiveInt, StrictConfig, as_tuple
from router_rl.core.errors import ConfigError


class RetrainError(ValueError):
    """The schedule cannot be evaluated (bad state file, bad log); the message names it."""


def _parse_field(text: str, lo: int, hi: int, name: str) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        rng, _, step_s = item.partition("/")
        step = int(step_s) if step_s else 1
        if step < 1:
            raise ValueError(f"{name}: step must be >= 1 in {item!r}")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, b_s = rng.split("-", 1)
            a, b = int(a_s), int(b_s)
        else:
            a = b = int(rng)
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(f"{name}: {item!r} outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    """A parsed five-field cron expression (minute hour day-of-month month day-of-week)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse ``"M H DOM MON DOW"``; raises ``ValueError`` naming the bad field."""
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"expected 5 fields 'M H DOM MON DOW', got {len(parts)} in {text!r}")
        try:
            return cls(
                _parse_field(parts[0], 0, 59, "minute"), _parse_field(parts[1], 0, 23, "hour"),
                _parse_field(parts[2], 1, 31, "day of month"), _parse_field(parts[3], 1, 12, "month"),
                frozenset(d % 7 for d in _parse_field(parts[4], 0, 7, "day of week")),
            )
        except ValueError as e:
            raise ValueError(f"{text!r}: {e}") from None

    def matches(self, t: datetime) -> bool:
        """``t`` (its minute) matches every field."""
        return (t.minute in self.minutes and t.hour in self.hours and t.day in self.days
                and t.month in self.months and (t.isoweekday() % 7) in self.weekdays)

    def last_match(self, after: datetime, until: datetime) -> datetime | None:
        """The latest matching minute in ``(after, until]`` (None: none)."""
        t = until.replace(second=0, microsecond=0)
        steps = 0
        while t > after and steps < 366 * 24 * 60:
            if self.matches(t):
                return t
            t -= timedelta(minutes=1)
            steps += 1
        return None


class RetrainConfig(StrictConfig):
    """Settings of :func:`run_scheduled` (a YAML / JSON file for ``router-rl logs retrain``).

    Attributes:
        logged: The partitioned joined log (``router-rl logs join --partitioned -o DIR``).
        out_dir: Where each run's folder ``run-YYYYMMDDTHHMMSS`` is made.
        command: Argument list run when due; ``{log}``, ``{out}``, ``{run}`` substituted.
        min_new_labeled: Due after this many new labeled rows (None: not used).
        cron: Due at these minutes (None: not used).
        window_days: Days of labeled rows the run trains on (ending on the day of ``now``).
        timeout_s: The command's time limit.
    """

    logged: str
    out_dir: str
    command: Annotated[tuple[str, ...], BeforeValidator(as_tuple), Field(min_length=1)]
    min_new_labeled: PositiveInt | None = None
    cron: str | None = None
    window_days: PositiveInt = 7
    timeout_s: Annotated[float, Field(gt=0)] = 3600.0

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            Cron.parse(v)
        return v

    def model_post_init(self, _ctx: Any) -> None:
        """At least one trigger."""
        if self.min_new_labeled is None and self.cron is None:
            raise ConfigError("RetrainConfig.min_new_labeled", "give min_new_labeled and/or cron (no trigger set)")

    @classmethod
    def from_file(cls, path: str | Path) -> RetrainConfig:
        """Load YAML (``.yaml`` / ``.yml``) or JSON; errors name the file and the field."""
        import yaml

        p = Path(path)
        try:
            text = p.read_text()
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, json.JSONDecodeError, yaml.YAMLError) as e:
            raise ConfigError("<file>", f"cannot read the retrain config ({type(e).__name__}: {e})",
                              source=str(p)) from None
        if not isinstance(data, dict):
            raise ConfigError("RetrainConfig", "expected a mapping of settings", source=str(p))
        try:
            return cls(**data)
        except ConfigError as e:
            raise ConfigError(e.setting, e.problem, source=str(p)) from None


@dataclass
class RetrainResult:
    """What one :func:`run_scheduled` call decided and did."""

    due: bool
    reason: str
    labeled: int
    new_labeled: int
    ran: bool = False
    returncode: int | None = None
    run_dir: str | None = None
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def count_labeled(logged: str | Path) -> int:
    """Labeled rows of a partitioned joined log (reads the ``quality`` column only)."""
    from router_rl.logs.partition import scan_table

    lf = scan_table(logged, "logged", columns=["quality"])
    return int(lf.select(pl.col("quality").is_not_null().sum()).collect().item())


def read_state(path: str | Path) -> dict[str, Any]:
    """The scheduler's state (``{}`` when the file does not exist)."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        state = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RetrainError(f"{p}: unreadable retrain state file ({e})") from e
    if not isinstance(state, dict):
        raise RetrainError(f"{p}: expected a JSON object in the retrain state file")
    return state


def is_due(cfg: RetrainConfig, state: dict[str, Any], *, labeled: int, now: datetime) -> tuple[bool, str]:
    """``(due, reason)`` for the state and the current labeled count."""
    if "last_run_at" not in state:
        return True, "first run (no state yet)"
    last = datetime.fromisoformat(state["last_run_at"])
    new = labeled - int(state.get("labeled_at_last_run", 0))
    reasons = []
    if cfg.min_new_labeled is not None:
        if new >= cfg.min_new_labeled:
            return True, f"{new} new labeled rows >= min_new_labeled {cfg.min_new_labeled}"
        reasons.append(f"{new} new labeled rows < min_new_labeled {cfg.min_new_labeled}")
    if cfg.cron is not None:
        hit = Cron.parse(cfg.cron).last_match(last, now)
        if hit is not None:
            return True, f"cron {cfg.cron!r} matched {hit.isoformat()} since the last run {last.isoformat()}"
        reasons.append(f"cron {cfg.cron!r}: no matching minute since the last run {last.isoformat()}")
    return False, "; ".join(reasons)


def run_scheduled(
    cfg: RetrainConfig, state_path: str | Path, *, now: datetime | None = None, force: bool = False,
    dry_run: bool = False,
) -> RetrainResult:
    """Decide whether a retraining run is due and run it (module docstring).

    Args:
        cfg: The schedule and the command.
        state_path: The state file (created on the first successful run).
        now: The current time (default: UTC now; tests pass their own).
        force: Run even when not due.
        dry_run: Decide only (nothing is written or run).
    """
    from router_rl.logs.partition import scan_table
    from router_rl.registry.files import atomic_write_json, flock

    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    sp = Path(state_path)
    sp.parent.mkdir(parents=True, exist_ok=True)
    with flock(sp.with_name(sp.name + ".lock")):
        state = read_state(sp)
        labeled = count_labeled(cfg.logged)
        due, reason = is_due(cfg, state, labeled=labeled, now=now)
        if force and not due:
            due, reason = True, f"forced ({reason})"
        new = labeled - int(state.get("labeled_at_last_run", 0))
        res = RetrainResult(due=due, reason=reason, labeled=labeled, new_labeled=new)
        if not due or dry_run:
            return res
        run = Path(cfg.out_dir) / f"run-{now.strftime('%Y%m%dT%H%M%S')}"
        run.mkdir(parents=True, exist_ok=True)
        first = (now - timedelta(days=cfg.window_days - 1)).date()
        table = scan_table(cfg.logged, "logged", days=(first, now.date())).filter(
            pl.col("quality").is_not_null()).collect()
        log = run / "logged.parquet"
        table.write_parquet(log)
        res.rows, res.run_dir, res.ran = table.height, str(run), True
        argv = [a.format(log=log, out=run / "artifact", run=run) for a in cfg.command]
        try:
            proc = subprocess.run(argv, cwd=run, timeout=cfg.timeout_s, capture_output=True, text=True, check=False)
            res.returncode = proc.returncode
            (run / "command.log").write_text(f"$ {argv}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        except (OSError, subprocess.TimeoutExpired) as e:
            res.returncode = -1
            (run / "command.log").write_text(f"$ {argv}\nfailed: {type(e).__name__}: {e}\n")
        ok = res.returncode == 0
        new_state = {
            **state,
            "runs": int(state.get("runs", 0)) + 1,
            "last_attempt_at": now.isoformat(),
            "last_status": "ok" if ok else f"failed (exit {res.returncode})",
            "last_run_dir": str(run),
            "last_reason": reason,
        }
        if ok:
            new_state.update(last_run_at=now.isoformat(), labeled_at_last_run=labeled, last_rows=table.height)
        atomic_write_json(sp, new_state)
        return res
