"""The policy registry: versioned policy artifacts, which one is live, and an append-only record book.

A registry is a folder::

    root/
      registry.json          # marks the folder as a registry (layout version)
      state.json             # {"live", "previous" (stack, newest last), "canary" {version, share} | null}
      versions/v0001/        # a copy of a saved RoutingPolicy artifact (RoutingPolicy.save)
      versions/v0001.json    # its registration: kind, models, encoder fingerprint, sha256 of files...
      records/000001-promotion.json   # one JSON per promotion decision / live change / rollback / canary
      .lock                  # fcntl lock file guarding every write

Writes are atomic (temporary file + ``os.replace``, fsynced) and serialised across processes and
threads by an exclusive ``fcntl.flock`` on ``.lock`` (each writer opens the file itself, so two
threads of one process exclude each other too). Readers take no lock: ``state.json`` and every
record are replaced whole, so a reader never sees a half-written file. Records are never changed
or deleted; their sequence number is taken under the lock, so none is lost or overwritten.

State changes (:meth:`PolicyRegistry.set_live`, :meth:`~PolicyRegistry.rollback`,
:meth:`~PolicyRegistry.set_canary`) write their record under the same lock as the state, record
first: a crash between the two leaves a record of a change that did not happen (visible), never a
change without a record.

Why over 500 lines: one concept (the registry folder and every operation on it); most lines are
docstrings and checks whose errors name the folder, the version or the field.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_rl.core.errors import RouterRLError
from router_rl.registry.files import atomic_write_json, files_sha256, flock, fsync_dir, json_clean, utc_now

if TYPE_CHECKING:
    from router_rl.policies.base import RoutingPolicy

#: Layout version of a registry folder (``registry.json``).
REGISTRY_FORMAT = 1
#: Files of a registry folder.
STATE_FILE = "state.json"
MARKER_FILE = "registry.json"
LOCK_FILE = ".lock"
VERSIONS_DIR = "versions"
RECORDS_DIR = "records"
#: Keys every record carries (a payload may not use them).
RECORD_KEYS: tuple[str, ...] = ("seq", "kind", "created_at")
#: Record kinds the registry itself writes.
SET_LIVE, ROLLBACK, CANARY, REGISTER = "set_live", "rollback", "canary", "register"

_VERSION_RE = re.compile(r"^v(\d{4,})$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class RegistryError(RouterRLError, ValueError):
    """A registry folder or operation is invalid; the message names the folder / version / field."""


class UnknownVersionError(RegistryError, KeyError):
    """A version id the registry does not hold (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class CanaryState:
    """A version serving a share of traffic next to the live one.

    Attributes:
        version: The canary version.
        share: Share of traffic it serves, in (0, 1].
        started_at: ISO-8601 UTC time the canary (at any share) started.
    """

    version: str
    share: float
    started_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"version": self.version, "share": self.share, "started_at": self.started_at}


@dataclass(frozen=True)
class VersionInfo:
    """One registered version.

    Attributes:
        version: ``v0001``, ``v0002``, ...
        created_at: ISO-8601 UTC registration time.
        kind: Policy kind (``lgbm``, ``random``, ...).
        models: The models it routes between (its column order).
        source: Where it came from (free text, e.g. the folder it was copied from).
        files_sha256: ``relative path -> sha256`` of every file of the copied artifact.
        encoder_fingerprint: Fingerprint of its feature encoder (None: none).
        policy_version: The artifact's own version string (``metadata.version``).
        artifact_format: The artifact's layout version (``policy.json`` ``format``).
        decision: Summary of its decision config (lambda, temperature, ...), when it has one.
    """

    version: str
    created_at: str
    kind: str
    models: tuple[str, ...]
    source: str | None
    files_sha256: dict[str, str]
    encoder_fingerprint: str | None = None
    policy_version: str | None = None
    artifact_format: int | None = None
    decision: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the registration file's content)."""
        return {
            "version": self.version,
            "created_at": self.created_at,
            "kind": self.kind,
            "models": list(self.models),
            "source": self.source,
            "files_sha256": dict(self.files_sha256),
            "encoder_fingerprint": self.encoder_fingerprint,
            "policy_version": self.policy_version,
            "artifact_format": self.artifact_format,
            "decision": self.decision,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VersionInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            version=str(d["version"]),
            created_at=str(d["created_at"]),
            kind=str(d["kind"]),
            models=tuple(d["models"]),
            source=d.get("source"),
            files_sha256=dict(d["files_sha256"]),
            encoder_fingerprint=d.get("encoder_fingerprint"),
            policy_version=d.get("policy_version"),
            artifact_format=d.get("artifact_format"),
            decision=d.get("decision"),
            extra=dict(d.get("extra") or {}),
        )


def _empty_state() -> dict[str, Any]:
    return {"live": None, "previous": [], "canary": None, "updated_at": None, "last_record": None}


class PolicyRegistry:
    """A registry folder (module docstring). Open an existing one; :meth:`create` makes one.

    Args:
        root: The registry folder.

    Raises:
        RegistryError: ``root`` is not a registry (no ``registry.json``), or holds a newer layout.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        marker = self.root / MARKER_FILE
        if not marker.is_file():
            why = "does not exist" if not self.root.exists() else f"has no {MARKER_FILE}"
            raise RegistryError(
                f"{self.root}: not a policy registry ({why}); create one with PolicyRegistry.create "
                "or `router-rl policies init`"
            )
        try:
            fmt = json.loads(marker.read_text()).get("format")
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise RegistryError(f"{marker}: unreadable registry marker ({e})") from e
        if fmt != REGISTRY_FORMAT:
            raise RegistryError(f"{marker}: registry format {fmt!r}, this router-rl reads {REGISTRY_FORMAT}")

    # --- creation / locking ----------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> PolicyRegistry:
        """Open ``root`` as a registry, creating the folder layout first when it is not one (idempotent).

        Raises:
            RegistryError: ``root`` is a file, or a non-empty folder that is not a registry.
        """
        r = Path(root)
        if r.exists() and not r.is_dir():
            raise RegistryError(f"{r}: exists and is not a folder")
        if (r / MARKER_FILE).is_file():
            return cls(r)
        if r.is_dir() and any(p.name != LOCK_FILE for p in r.iterdir()):
            raise RegistryError(f"{r}: a non-empty folder that is not a policy registry (no {MARKER_FILE})")
        r.mkdir(parents=True, exist_ok=True)
        with flock(r / LOCK_FILE):
            if not (r / MARKER_FILE).is_file():
                (r / VERSIONS_DIR).mkdir(exist_ok=True)
                (r / RECORDS_DIR).mkdir(exist_ok=True)
                st = _empty_state()
                st["updated_at"] = utc_now()
                atomic_write_json(r / STATE_FILE, st)
                atomic_write_json(r / MARKER_FILE, {"format": REGISTRY_FORMAT, "created_at": utc_now()})
        return cls(r)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive write lock of this registry (across processes and threads)."""
        with flock(self.root / LOCK_FILE):
            yield

    # --- versions --------------------------------------------------------------------------------
    @property
    def versions_dir(self) -> Path:
        """``root/versions``."""
        return self.root / VERSIONS_DIR

    def _known(self) -> list[str]:
        d = self.versions_dir
        if not d.is_dir():
            return []
        return sorted(
            (p.stem for p in d.glob("v*.json") if _VERSION_RE.match(p.stem) and (d / p.stem).is_dir()),
            key=lambda v: int(v[1:]),
        )

    def _check_version(self, version: str) -> str:
        known = self._known()
        if version not in known:
            shown = known if len(known) <= 20 else [*known[:10], "...", *known[-5:]]
            raise UnknownVersionError(
                f"{self.root}: unknown version {version!r} (known: {shown if known else 'none registered'})"
            )
        return version

    def register(self, artifact_dir: str | Path, *, source: str | None = None) -> str:
        """Copy a saved policy artifact into the registry as the next version.

        The artifact must load as a :class:`~router_rl.policies.base.RoutingPolicy` (checked
        before and after the copy).

        Args:
            artifact_dir: Folder written by ``RoutingPolicy.save`` / ``router-rl train``.
            source: Free-text provenance (default: the folder's absolute path).

        Returns:
            The new version id (``v0001``, ``v0002``, ...).

        Raises:
            RegistryError: not a folder, or not a loadable policy artifact (names the folder).
        """
        from router_rl.policies.base import PolicyLoadError, RoutingPolicy

        src = Path(artifact_dir)
        if not src.is_dir():
            raise RegistryError(f"{src}: not a folder (give a saved policy artifact folder)")
        try:
            policy = RoutingPolicy.load(src)
        except (PolicyLoadError, OSError, ValueError) as e:
            raise RegistryError(f"{src}: not a loadable policy artifact ({e})") from e
        meta = json.loads((src / "policy.json").read_text())
        state = meta.get("state") or {}
        decision = state.get("decision") if isinstance(state, dict) else None
        with self.lock():
            known = self._known()
            taken = {int(v[1:]) for v in known}
            taken |= {int(m.group(1)) for p in self.versions_dir.iterdir() if (m := _VERSION_RE.match(p.name))}
            version = f"v{(max(taken) + 1 if taken else 1):04d}"
            tmp = self.versions_dir / f".tmp-{version}-{os.getpid()}"
            if tmp.exists():
                shutil.rmtree(tmp)
            shutil.copytree(src, tmp, symlinks=False)
            final = self.versions_dir / version
            os.replace(tmp, final)
            try:
                RoutingPolicy.load(final)
            except (PolicyLoadError, OSError, ValueError) as e:  # pragma: no cover - a copy that differs
                shutil.rmtree(final, ignore_errors=True)
                raise RegistryError(f"{src}: the copy in {final} does not load ({e})") from e
            info = VersionInfo(
                version=version,
                created_at=utc_now(),
                kind=policy.kind,
                models=tuple(policy.models),
                source=source if source is not None else str(src.resolve()),
                files_sha256=files_sha256(final),
                encoder_fingerprint=policy.metadata.get("encoder_fingerprint"),
                policy_version=policy.version,
                artifact_format=meta.get("format"),
                decision=decision if isinstance(decision, dict) else None,
            )
            atomic_write_json(self.versions_dir / f"{version}.json", info.to_dict())
            fsync_dir(self.versions_dir)
            self._write_record(REGISTER, {"version": version, "source": info.source, "policy_kind": info.kind})
        return version

    def versions(self) -> list[VersionInfo]:
        """Every registered version, oldest first."""
        return [self.info(v) for v in self._known()]

    def info(self, version: str) -> VersionInfo:
        """The registration of one version (:class:`UnknownVersionError` if unknown)."""
        self._check_version(version)
        p = self.versions_dir / f"{version}.json"
        try:
            return VersionInfo.from_dict(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise RegistryError(f"{p}: corrupt registration ({e})") from e

    def path(self, version: str) -> Path:
        """Folder of a registered version's artifact."""
        return self.versions_dir / self._check_version(version)

    def verify(self, version: str) -> list[str]:
        """Files of a version whose sha256 differs from its registration (missing / extra included)."""
        info = self.info(version)
        now = files_sha256(self.path(version))
        bad = [f for f, h in info.files_sha256.items() if now.get(f) != h]
        bad += [f for f in now if f not in info.files_sha256]
        return sorted(bad)

    def load(self, version: str) -> RoutingPolicy:
        """The :class:`~router_rl.policies.base.RoutingPolicy` of a registered version.

        The loaded policy's ``metadata["registry_version"]`` is set to the version id.
        """
        from router_rl.policies.base import RoutingPolicy

        pol = RoutingPolicy.load(self.path(version))
        pol.metadata["registry_version"] = version
        return pol

    def load_live_policy(self) -> RoutingPolicy:
        """The live version's policy (:class:`RegistryError` when nothing is live yet)."""
        live = self.live
        if live is None:
            raise RegistryError(f"{self.root}: no live version yet (promote one, or set_live)")
        return self.load(live)

    # --- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The current ``state.json`` content (read without a lock: it is replaced atomically)."""
        p = self.root / STATE_FILE
        try:
            st = json.loads(p.read_text())
        except FileNotFoundError:
            return _empty_state()
        except (OSError, json.JSONDecodeError) as e:
            raise RegistryError(f"{p}: unreadable registry state ({e})") from e
        if not isinstance(st, dict) or not {"live", "previous", "canary"} <= set(st):
            raise RegistryError(f"{p}: expected an object with live, previous, canary")
        return st

    @property
    def live(self) -> str | None:
        """The live version (None: none yet)."""
        v = self.state()["live"]
        return None if v is None else str(v)

    @property
    def previous(self) -> str | None:
        """The version a :meth:`rollback` would return to (top of the previous-live stack)."""
        prev = self.state()["previous"]
        return str(prev[-1]) if prev else None

    @property
    def previous_stack(self) -> list[str]:
        """Every earlier live version, oldest first."""
        return [str(v) for v in self.state()["previous"]]

    @property
    def canary(self) -> CanaryState | None:
        """The running canary, or None."""
        c = self.state()["canary"]
        if c is None:
            return None
        return CanaryState(version=str(c["version"]), share=float(c["share"]), started_at=c.get("started_at"))

    def _write_state(self, st: dict[str, Any], record: Path) -> None:
        st["updated_at"] = utc_now()
        st["last_record"] = record.name
        atomic_write_json(self.root / STATE_FILE, st)

    def set_live(self, version: str, *, reason: str, actor: str, details: Mapping[str, Any] | None = None) -> None:
        """Make ``version`` live; the old live version goes on the previous-live stack.

        A canary of the same version ends (it is now live). Setting the live version again is
        recorded and changes nothing else.

        Args:
            version: A registered version.
            reason: Why (recorded).
            actor: Who / what (``cli``, ``promote``, ``router``, a user name...).
            details: More JSON-able fields for the record.
        """
        self._check_version(version)
        _check_text(reason, "reason")
        _check_text(actor, "actor")
        with self.lock():
            st = self.state()
            old = st["live"]
            canary = st["canary"]
            ended = canary is not None and canary["version"] == version
            rec = self._write_record(
                SET_LIVE,
                {
                    "version": version,
                    "previous_live": old,
                    "canary_ended": canary if ended else None,
                    "reason": reason,
                    "actor": actor,
                    **dict(details or {}),
                },
            )
            if old is not None and old != version:
                st["previous"] = [*st["previous"], old]
            st["live"] = version
            if ended:
                st["canary"] = None
            self._write_state(st, rec)

    def rollback(self, *, reason: str, actor: str, details: Mapping[str, Any] | None = None) -> str:
        """Return to the previous live version (popped from the stack); a running canary ends.

        Returns:
            The new live version.

        Raises:
            RegistryError: no previous version to return to.
        """
        _check_text(reason, "reason")
        _check_text(actor, "actor")
        with self.lock():
            st = self.state()
            if not st["previous"]:
                raise RegistryError(
                    f"{self.root}: no previous version to roll back to (live: {st['live'] or 'none'})"
                )
            new = str(st["previous"][-1])
            rec = self._write_record(
                ROLLBACK,
                {
                    "from": st["live"],
                    "to": new,
                    "canary_ended": st["canary"],
                    "reason": reason,
                    "actor": actor,
                    **dict(details or {}),
                },
            )
            st["previous"] = st["previous"][:-1]
            st["live"] = new
            st["canary"] = None
            self._write_state(st, rec)
        return new

    def set_canary(
        self,
        version: str | None,
        share: float = 0.0,
        *,
        reason: str,
        actor: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Start, ramp (same version, new share) or end (``version=None``) the canary.

        Args:
            version: A registered version other than the live one; None ends the canary.
            share: Its share of traffic in (0, 1] (ignored, and must be 0, when ending).
            reason, actor, details: Recorded.

        Raises:
            RegistryError: a share outside (0, 1], the live version as canary, a share with None.
        """
        _check_text(reason, "reason")
        _check_text(actor, "actor")
        if version is not None:
            self._check_version(version)
            if not (isinstance(share, int | float) and not isinstance(share, bool) and 0 < share <= 1):
                raise RegistryError(f"set_canary: share: expected a number in (0, 1], got {share!r}")
        elif share not in (0, 0.0):
            raise RegistryError(f"set_canary: share: ending the canary (version None) takes share 0, got {share!r}")
        with self.lock():
            st = self.state()
            if version is not None and version == st["live"]:
                raise RegistryError(f"set_canary: {version} is the live version already")
            old = st["canary"]
            new = None
            if version is not None:
                same = old is not None and old["version"] == version
                started = old.get("started_at") if same and old else None
                new = {"version": version, "share": float(share), "started_at": started or utc_now()}
            rec = self._write_record(
                CANARY,
                {"version": version, "share": float(share), "previous_canary": old, "reason": reason,
                 "actor": actor, **dict(details or {})},
            )
            st["canary"] = new
            self._write_state(st, rec)

    # --- records ---------------------------------------------------------------------------------
    @property
    def records_dir(self) -> Path:
        """``root/records``."""
        return self.root / RECORDS_DIR

    def record(self, kind: str, payload: Mapping[str, Any]) -> Path:
        """Append one record (``seq``, ``kind``, ``created_at`` + the payload's JSON-able fields).

        Args:
            kind: Lowercase identifier (``promotion``, ``refusal``, ``alert``...).
            payload: JSON-able mapping; may not use the keys ``seq``, ``kind``, ``created_at``.

        Returns:
            The record's file.
        """
        with self.lock():
            return self._write_record(kind, payload)

    def _write_record(self, kind: str, payload: Mapping[str, Any]) -> Path:
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise RegistryError(f"record: kind: expected a lowercase identifier ([a-z][a-z0-9_]*), got {kind!r}")
        if not isinstance(payload, Mapping):
            raise RegistryError(f"record: payload: expected a mapping, got {type(payload).__name__}")
        clash = [k for k in RECORD_KEYS if k in payload]
        if clash:
            raise RegistryError(f"record: payload: keys {clash} are reserved")
        try:
            body = json_clean(payload)
        except TypeError as e:
            raise RegistryError(f"record: payload: {e}") from e
        d = self.records_dir
        d.mkdir(exist_ok=True)
        seq = self._last_seq() + 1
        path = d / f"{seq:06d}-{kind}.json"
        atomic_write_json(path, {"seq": seq, "kind": kind, "created_at": utc_now(), **body})
        return path

    def _last_seq(self) -> int:
        best = 0
        for p in self.records_dir.glob("[0-9]*-*.json"):
            head = p.name.split("-", 1)[0]
            if head.isdigit():
                best = max(best, int(head))
        return best

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every record (of one kind), oldest first."""
        out = []
        files = sorted(self.records_dir.glob("[0-9]*-*.json"), key=lambda p: int(p.name.split("-", 1)[0]))
        for p in files:
            if kind is not None and not p.name.endswith(f"-{kind}.json"):
                continue
            try:
                rec = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise RegistryError(f"{p}: corrupt record ({e})") from e
            if kind is None or rec.get("kind") == kind:
                out.append(rec)
        return out


def _check_text(value: object, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{name}: expected a non-empty text, got {value!r}")
