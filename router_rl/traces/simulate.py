"""A seeded simulator of a QE agent fleet's outcome matrix, with known ground truth.

Every task comes from one of the fleet's agent types (test generation, coverage analysis, flaky
test hunting, code review, security scanning, ...) at one of four complexities. For each of the
seven catalog models the true success probability is::

    logit p = SHARPNESS * (capability[model] + affinity[agent, model] - difficulty[complexity])
              + task_hardness + cell_noise

``task_hardness`` (shared by all models of a task) makes some tasks hard for everybody;
``cell_noise`` is a small per (task, model) deviation. Part of ``task_hardness`` shows in the
prompt, as in real QE requests: a visible signal ``z = rho * h / sd + sqrt(1 - rho^2) * eps``
(``rho`` = :attr:`SimulationConfig.hardness_visibility`, ``eps`` from its own generator) sets
the size of the code under test, the depth of the stack trace and how often "legacy module
without tests" / "touches N services" / "shared mutable state" (or, for easy tasks, "pure
function, well covered") sentences appear (:func:`_cues`). With ``rho = 0`` the prompts are
exactly those of a fleet without cues; ``rho`` never moves a quality draw. Observed quality is Bernoulli(p) for
pass/fail agent types and a Beta draw with mean p for graded ones (coverage, review,
requirements). Calls fail with a small per-provider probability (quality 0, ``error`` set).

Design target (checked by tests): the cloud model is best on average; routing easy tasks to
local models and hard ones to the cloud reaches >= 95% of the cloud model's quality with >= 80%
local share, while no single local model reaches 95%.

Cost: cloud = tokens x list price; local = the GPU-seconds a request is charged for x the GPU's
USD/hour, where the GPU-seconds follow from how the model is served
(:class:`~router_rl.traces.serving.LocalServingConfig`: continuous batching at a stated load by
default, or a GPU per request). Latency: local = prefill + decode at the per-stream speed of that
setting x jitter, plus a queueing wait for a batch slot; cloud = network RTT + time-to-first-token
+ output / cloud throughput.

(Over 500 lines: one generative model whose random streams and draw order are its reproducibility
contract; the prompt cues live next to the prompt templates they extend.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from router_rl.core.config import NonNegativeFloat, StrictConfig, UnitFloat
from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.schema import CLOUD, LOCAL
from router_rl.traces.serving import LOCAL_OVERHEAD_S, LocalServingConfig, roofline_tokens_per_s
from router_rl.traces.split import assign_splits
from router_rl.traces.traceset import TraceSet
from router_rl.traces.validate import ValidationReport

COMPLEXITIES: tuple[str, ...] = ("SIMPLE", "MODERATE", "COMPLEX", "VERY_COMPLEX")
COMPLEXITY_MIX: tuple[float, ...] = (0.45, 0.30, 0.15, 0.10)
DIFFICULTY = np.array([-0.25, -0.02, 0.50, 0.85])
SHARPNESS = 4.0
MAX_TOKENS = np.array([1024, 2048, 4096, 8192])

#: agent type -> (task category, fleet share, graded quality?)
AGENT_TYPES: dict[str, tuple[str, float, bool]] = {
    "test-generator": ("unit-test-generation", 0.22, False),
    "coverage-analyzer": ("coverage-gap-analysis", 0.13, True),
    "flaky-test-hunter": ("flaky-test-diagnosis", 0.11, False),
    "code-reviewer": ("code-review", 0.16, True),
    "security-scanner": ("security-scan", 0.10, False),
    "performance-tester": ("performance-test-design", 0.08, False),
    "requirements-validator": ("requirements-validation", 0.10, True),
    "api-contract-validator": ("api-contract-check", 0.10, False),
}


#: Rental price of one H100 80GB SXM, USD/hour (docs/traces.md "Local serving").
H100_USD_PER_HOUR = 2.69
#: Memory bandwidth of one H100 SXM, GB/s.
H100_BANDWIDTH_GB_S = 3350.0
#: Served weight size (GB) and GPUs per local model: bf16 up to 8B, FP8 above; the 123B model is
#: tensor-parallel over two GPUs.
LOCAL_WEIGHTS: dict[str, tuple[float, int]] = {
    "rnj-1:8b": (16.6, 1),
    "qwen2.5-coder:7b": (15.2, 1),
    "devstral-small-2:24b": (24.0, 1),
    "qwen2.5-coder:32b": (32.8, 1),
    "devstral-2:123b": (123.0, 2),
}


def _local(model: str, provider: str, context_window: int) -> ModelSpec:
    weight_gb, gpus = LOCAL_WEIGHTS[model]
    tps = roofline_tokens_per_s(weight_gb, gpus * H100_BANDWIDTH_GB_S)
    return ModelSpec(model, provider, LOCAL, gpu_usd_per_hour=gpus * H100_USD_PER_HOUR,
                     tokens_per_s=round(tps, 1), context_window=context_window, open_weight=True)


def default_catalog() -> ModelCatalog:
    """The simulated fleet's catalog: five local open-weight models, Claude Sonnet 4.5, OpenRouter auto.

    Local models run on rented H100s; their single-stream decode speed is the memory-bandwidth
    roofline of their served weights (:func:`~router_rl.traces.serving.roofline_tokens_per_s`).
    Sources of every number: docs/traces.md ("Local serving").
    """
    return ModelCatalog(
        [
            _local("rnj-1:8b", "ollama", 32768),
            _local("qwen2.5-coder:7b", "ollama", 32768),
            _local("devstral-small-2:24b", "vllm", 131072),
            _local("qwen2.5-coder:32b", "vllm", 32768),
            _local("devstral-2:123b", "vllm", 131072),
            ModelSpec("claude-sonnet-4.5", "anthropic", CLOUD, usd_per_m_input=3.0, usd_per_m_output=15.0,
                      context_window=200000),
            ModelSpec("openrouter/auto", "openrouter", CLOUD, usd_per_m_input=1.5, usd_per_m_output=6.0,
                      context_window=128000),
        ]
    )


#: capability per model (same order as default_catalog()).
CAPABILITY = np.array([0.30, 0.34, 0.50, 0.55, 0.66, 0.95, 0.82])
#: affinity[agent, model]: hand-set strengths (coders at tests, devstral at review, cloud at security).
_AFF = {
    "test-generator":        [0.00, 0.12, 0.04, 0.12, 0.02, 0.0, 0.0],
    "coverage-analyzer":     [0.05, 0.08, 0.04, 0.06, 0.02, 0.0, 0.0],
    "flaky-test-hunter":     [-0.05, 0.00, 0.08, 0.02, 0.08, 0.0, 0.0],
    "code-reviewer":         [-0.02, 0.00, 0.12, 0.04, 0.10, 0.0, 0.0],
    "security-scanner":      [-0.15, -0.12, -0.06, -0.06, -0.04, 0.05, 0.0],
    "performance-tester":    [0.00, 0.02, 0.02, 0.04, 0.04, 0.0, 0.0],
    "requirements-validator": [0.08, -0.04, 0.02, 0.00, 0.04, 0.0, 0.0],
    "api-contract-validator": [0.02, 0.06, 0.06, 0.08, 0.04, 0.0, 0.0],
}
#: extra difficulty for local models per complexity step, by agent type (security and flaky-test
#: root-causing get much harder for small models as tasks grow; test generation much less).
LOCAL_STEP_PENALTY = {
    "test-generator": -0.05,
    "coverage-analyzer": -0.04,
    "flaky-test-hunter": 0.07,
    "code-reviewer": 0.03,
    "security-scanner": 0.11,
    "performance-tester": 0.05,
    "requirements-validator": -0.02,
    "api-contract-validator": 0.02,
}
#: per-call failure probability per model, and its error kinds.
ERROR_RATE = np.array([0.004, 0.004, 0.006, 0.006, 0.010, 0.012, 0.020])
LOCAL_ERRORS = ("timeout", "oom", "context_overflow")
CLOUD_ERRORS = ("http_429", "http_529", "timeout", "http_500")
#: extra capability of the cloud models per complexity (frontier models degrade less on hard tasks).
CLOUD_BONUS = np.array([0.0, 0.04, 0.16, 0.26])
VERBOSITY = np.array([0.85, 0.9, 1.0, 1.0, 1.1, 1.15, 1.05])


class SimulationConfig(StrictConfig):
    """Knobs of :func:`simulate_fleet` (defaults give the documented fleet).

    Attributes:
        task_hardness_sd: Spread of the per-task hardness (logit units).
        cell_noise_sd: Spread of the per task x model noise (logit units).
        privacy_rate: Share of tasks tagged privacy-sensitive.
        graded_concentration: Beta concentration of graded (non-binary) quality.
        cloud_rtt_s: Network round trip added to cloud latency (seconds).
        local_serving: How local models are served, which sets their cost and latency.
        hardness_visibility: Correlation ``rho`` between the prompt's visible hardness signal and
            the task hardness (0: the prompts carry none of it, exactly the cue-free prompts).
            The default 0 keeps the fleet's prompts as they were; 0.6 (the prompt reveals
            ``rho^2`` = 36% of the hardness variance) is the setting studied in docs/policies.md
            (docs/traces.md "Hardness visible in the prompt" gives the reasons for both).
    """

    task_hardness_sd: NonNegativeFloat = 0.8
    cell_noise_sd: NonNegativeFloat = 0.35
    privacy_rate: UnitFloat = 0.03
    graded_concentration: NonNegativeFloat = 10.0
    cloud_rtt_s: NonNegativeFloat = 0.35
    local_serving: LocalServingConfig = LocalServingConfig()
    hardness_visibility: UnitFloat = 0.0


# --- prompt text ---------------------------------------------------------------------------
_FUNCS = ("parse_config", "compute_total", "retry_request", "merge_intervals", "validate_token",
          "load_user", "apply_discount", "flush_cache", "render_invoice", "schedule_job", "normalize_path",
          "hash_password", "fetch_orders", "resolve_conflict", "serialize_event")
_MODULES = ("billing", "auth", "orders", "scheduler", "cache", "payments", "inventory", "gateway", "reports")
_EXC = ("NullPointerException", "AssertionError", "TimeoutError", "KeyError", "ConnectionResetError",
        "IndexError", "ValueError", "ConcurrentModificationException")
_FRAMEWORKS = ("pytest", "jest", "JUnit 5", "vitest", "Playwright", "Cypress", "go test")
_LANGS = ("python", "typescript", "java", "go")
_VULNS = ("SQL injection", "path traversal", "SSRF", "XSS", "insecure deserialization", "hard-coded credential")
_FLAKY = ("race condition", "timing-dependent assertion", "shared fixture state", "network dependency",
          "unordered set iteration", "time zone assumption")
_INSTR = {
    "test-generator": "Write {fw} unit tests for `{fn}` in module `{mod}`. Cover edge cases, error paths "
    "and boundary values; use mocks for external I/O.",
    "coverage-analyzer": "Analyse the coverage report for `{mod}` and list uncovered branches in `{fn}`; "
    "propose the minimal set of tests to reach the branch-coverage target.",
    "flaky-test-hunter": "The test `test_{fn}` in `{mod}` fails intermittently ({rate}% of CI runs). "
    "Find the root cause (suspected: {flaky}) and propose a deterministic fix.",
    "code-reviewer": "Review this diff to `{mod}/{fn}` for correctness, readability and test impact. "
    "Flag regressions and missing tests.",
    "security-scanner": "Scan `{mod}` for vulnerabilities, especially {vuln}. Report CWE ids, severity and "
    "a remediation for each finding.",
    "performance-tester": "Design a load test for the `{fn}` endpoint of `{mod}`: target p95 latency "
    "{p95} ms at {rps} rps; include ramp-up and assertions.",
    "requirements-validator": "Check that the acceptance criteria of story {story} for `{mod}` are testable "
    "and complete; write Given/When/Then scenarios for gaps.",
    "api-contract-validator": "Compare the OpenAPI contract of `{mod}` with the consumer expectations for "
    "`{fn}` and list breaking changes.",
}


def _code(rng: np.random.Generator, fn: str, lang: str, lines: int, delta: int = 0,
          cue_rng: np.random.Generator | None = None) -> str:
    def line(g: np.random.Generator, i: int) -> str:
        v = f"v{i}"
        if lang == "python":
            return f"    {v} = {fn}_step({v if i else 'data'}, limit={int(g.integers(1, 99))})"
        if lang == "go":
            return f"\t{v} := {fn}Step(ctx, {int(g.integers(1, 99))})"
        return f"    const {v} = await {fn}Step(input, {int(g.integers(1, 99))});"

    body = [line(rng, i) for i in range(lines)]  # the cue-free draws come first, always the same
    if delta < 0:
        body = body[: max(2, lines + delta)]
    elif delta > 0 and cue_rng is not None:
        body += [line(cue_rng, i) for i in range(lines, lines + delta)]
    if lang == "python":
        return f"```python\ndef {fn}(data):\n" + "\n".join(body) + "\n    return v0\n```"
    if lang == "go":
        return f"```go\nfunc {fn}(ctx context.Context) error {{\n" + "\n".join(body) + "\n\treturn nil\n}\n```"
    return f"```{lang}\nasync function {fn}(input) {{\n" + "\n".join(body) + "\n    return v0;\n}\n```"


def _trace(rng: np.random.Generator, mod: str, fn: str, depth: int, delta: int = 0,
           cue_rng: np.random.Generator | None = None) -> str:
    exc = _EXC[int(rng.integers(len(_EXC)))]
    frames = [f'  File "src/{mod}/{fn}.py", line {int(rng.integers(10, 400))}, in {fn}_{k}' for k in range(depth)]
    if delta < 0:
        frames = frames[: max(1, depth + delta)]
    elif delta > 0 and cue_rng is not None:
        frames += [f'  File "src/{mod}/{fn}.py", line {int(cue_rng.integers(10, 400))}, in {fn}_{k}'
                   for k in range(depth, depth + delta)]
    return "Traceback (most recent call last):\n" + "\n".join(frames) + f"\n{exc}: unexpected state in {fn}"


def _diff(rng: np.random.Generator, mod: str, fn: str, hunks: int) -> str:
    out = [f"--- a/src/{mod}/{fn}.py", f"+++ b/src/{mod}/{fn}.py"]
    for _ in range(hunks):
        a = int(rng.integers(1, 300))
        out += [f"@@ -{a},4 +{a},5 @@", f"-    if x > {int(rng.integers(9))}:", f"+    if x >= {int(rng.integers(9))}:",
                "+        log.debug('boundary hit')", "     return x"]
    return "\n".join(out)


def _secret(rng: np.random.Generator) -> str:
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
    if rng.random() < 0.5:
        return "AWS_ACCESS_KEY_ID=AKIA" + "".join(rng.choice(alphabet, 16))
    return "db_url: postgres://svc:password=" + "".join(rng.choice(alphabet, 12)).lower() + "@db:5432/app"


@dataclass(frozen=True)
class _Cue:
    """What a task's visible hardness signal ``z`` does to its prompt (see :func:`_cues`)."""

    code_delta: int  # lines added to (> 0) or cut from (< 0) the code under test
    trace_delta: int  # frames added to / cut from the stack trace
    sentences: tuple[str, ...]  # templates with ``{mod}`` / ``{fn}``
    rng: np.random.Generator  # draws of the added lines / frames


#: Cue sentences: (template, logistic centre in z); each appears with probability
#: ``sigmoid(CUE_SLOPE * (z - centre))`` (the easy-task sentence with ``-z``).
_LEGACY = ("Context: `{mod}` is a legacy module without tests; callers rely on undocumented behaviour "
           "and it was last refactored in {year}.", 0.7)
_SERVICES = ("This change touches {n} services that share the `{mod}` database schema.", 0.2)
_SHARED = ("Note: `{fn}` reads and writes shared mutable state (a module-level cache) from concurrent "
           "worker threads.", 1.0)
_EASY = ("`{fn}` is a pure function without I/O and `{mod}` already has {cov}% branch coverage.", 0.4)
CUE_SLOPE = 1.6


def _cues(z: float, cx: int, rng: np.random.Generator) -> _Cue:
    """Map a task's visible hardness signal ``z`` (standard normal) to prompt cues.

    Harder-looking tasks (large ``z``) get more code under test (``round(z * (2 + 2 * cx))``
    lines, so a big simple task can look like a small complex one), deeper stack traces
    (``round(1.5 * z)`` frames) and, more often, the legacy / services / shared-state sentences;
    easy-looking ones lose lines and frames and more often say the function is pure and covered.
    """

    def sig(x: float) -> float:
        return float(1.0 / (1.0 + np.exp(-CUE_SLOPE * x)))

    sentences = []
    if rng.random() < sig(z - _LEGACY[1]):
        sentences.append(_LEGACY[0].replace("{year}", str(int(rng.integers(2012, 2020)))))
    if rng.random() < sig(z - _SERVICES[1]):
        n = int(np.clip(round(3 + 1.5 * z + rng.normal(0.0, 0.7)), 2, 12))
        sentences.append(_SERVICES[0].replace("{n}", str(n)))
    if rng.random() < sig(z - _SHARED[1]):
        sentences.append(_SHARED[0])
    if rng.random() < sig(-z - _EASY[1]):
        cov = int(np.clip(round(88 - 4 * z + rng.normal(0.0, 3.0)), 70, 99))
        sentences.append(_EASY[0].replace("{cov}", str(cov)))
    return _Cue(round(z * (2 + 2 * cx)), round(1.5 * z), tuple(sentences), rng)


def _prompt(rng: np.random.Generator, agent: str, cx: int, privacy: bool, cue: _Cue | None = None) -> str:
    fn = _FUNCS[int(rng.integers(len(_FUNCS)))]
    mod = _MODULES[int(rng.integers(len(_MODULES)))]
    text = _INSTR[agent].format(
        fw=_FRAMEWORKS[int(rng.integers(len(_FRAMEWORKS)))], fn=fn, mod=mod, rate=int(rng.integers(2, 40)),
        flaky=_FLAKY[int(rng.integers(len(_FLAKY)))], vuln=_VULNS[int(rng.integers(len(_VULNS)))],
        p95=int(rng.integers(50, 900)), rps=int(rng.integers(10, 5000)), story=f"QE-{int(rng.integers(100, 9999))}",
    )
    parts = [text]
    if cue is not None:
        parts += [t.replace("{mod}", mod).replace("{fn}", fn) for t in cue.sentences]
    code_delta, trace_delta, cue_rng = (cue.code_delta, cue.trace_delta, cue.rng) if cue else (0, 0, None)
    lang = _LANGS[int(rng.integers(len(_LANGS)))]
    n_code = 3 + 6 * cx + int(rng.integers(0, 4 + 4 * cx))
    if agent in ("code-reviewer", "security-scanner", "api-contract-validator"):
        parts.append(_diff(rng, mod, fn, 1 + cx))
    if agent in ("flaky-test-hunter", "test-generator") and (cx >= 1 or rng.random() < 0.3):
        parts.append(_trace(rng, mod, fn, 2 + 2 * cx, trace_delta, cue_rng))
    parts.append(_code(rng, fn, lang, n_code, code_delta, cue_rng))
    if cx >= 2:
        parts.append(f"Constraints: keep backwards compatibility across {2 + cx} services; "
                     "consider concurrency and transactional rollback.")
    if privacy:
        parts.append("Environment (from the failing CI job):\n" + _secret(rng))
    return "\n\n".join(parts)


def _prompts(
    rng: np.random.Generator, agents: list[str], a_idx: np.ndarray, c_idx: np.ndarray, privacy: np.ndarray,
    hardness: np.ndarray, cfg: SimulationConfig, seed: int,
) -> list[str]:
    """Every task's prompt; with ``hardness_visibility > 0`` each carries the cues of its signal ``z``."""
    rho = cfg.hardness_visibility
    if rho == 0.0:
        return [_prompt(rng, agents[a], int(c), bool(p)) for a, c, p in zip(a_idx, c_idx, privacy, strict=True)]
    cue_rng = np.random.default_rng([seed, 3])  # its own stream: no other draw moves
    eps = cue_rng.standard_normal(len(a_idx))
    h = hardness / cfg.task_hardness_sd if cfg.task_hardness_sd > 0 else np.zeros_like(hardness)
    z = rho * h + np.sqrt(1.0 - rho * rho) * eps
    return [
        _prompt(rng, agents[a], int(c), bool(p), _cues(float(zi), int(c), cue_rng))
        for a, c, p, zi in zip(a_idx, c_idx, privacy, z, strict=True)
    ]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_fleet(
    n_tasks: int = 2000,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    config: SimulationConfig | None = None,
    catalog: ModelCatalog | None = None,
) -> TraceSet:
    """Simulate ``n_tasks`` fleet requests answered by every catalog model.

    Args:
        n_tasks: Number of tasks (rows of the dense matrix); the long table has ``n_tasks x 7`` rows.
        seed: Seed of everything (tasks, prompts, outcomes, splits).
        fractions: Train/val/test task fractions.
        config: Noise and privacy knobs.
        catalog: Prices/throughputs override; must hold the same seven model ids.

    Returns:
        A :class:`TraceSet` whose ``ground_truth`` frame has, per (task, model), ``p_success``
        (success probability if the call does not error), ``p_error`` and
        ``expected_quality = p_success x (1 - p_error)``.
    """
    if n_tasks <= 0:
        raise ValueError(f"simulate_fleet: n_tasks must be > 0, got {n_tasks}")
    cfg = config or SimulationConfig()
    cat = catalog or default_catalog()
    ref = default_catalog().models
    if cat.models != ref:
        raise ValueError(f"simulate_fleet: catalog must list exactly {ref} in that order, got {cat.models}")
    rng = np.random.default_rng(seed)
    prompt_rng = np.random.default_rng([seed, 1])
    serve_rng = np.random.default_rng([seed, 2])  # queueing waits: the other draws do not move
    n, m = n_tasks, len(ref)
    agents = list(AGENT_TYPES)
    share = np.array([AGENT_TYPES[a][1] for a in agents])
    a_idx = rng.choice(len(agents), size=n, p=share / share.sum())
    c_idx = rng.choice(len(COMPLEXITIES), size=n, p=np.array(COMPLEXITY_MIX))
    privacy = rng.random(n) < cfg.privacy_rate
    aff = np.array([_AFF[a] for a in agents])

    # --- ground truth ---
    hardness = rng.normal(0.0, cfg.task_hardness_sd, size=(n, 1))
    noise = rng.normal(0.0, cfg.cell_noise_sd, size=(n, m))
    cloud_cols = np.array([not s.is_local for s in cat])
    bonus = CLOUD_BONUS[c_idx][:, None] * cloud_cols[None, :]
    step_pen = np.array([LOCAL_STEP_PENALTY[a] for a in agents])[a_idx] * c_idx
    bonus = bonus - step_pen[:, None] * ~cloud_cols[None, :]
    logit = SHARPNESS * (CAPABILITY[None, :] + aff[a_idx] + bonus - DIFFICULTY[c_idx][:, None]) + hardness + noise
    p_success = _sigmoid(logit)
    p_error = np.broadcast_to(ERROR_RATE * np.where(c_idx[:, None] >= 3, 1.5, 1.0), (n, m))

    # --- observed outcomes ---
    graded = np.array([AGENT_TYPES[a][2] for a in agents])[a_idx]
    k = cfg.graded_concentration
    pc = np.clip(p_success, 1e-4, 1 - 1e-4)
    beta = rng.beta(pc * k, (1 - pc) * k)
    bern = (rng.random((n, m)) < p_success).astype(np.float64)
    quality = np.where(graded[:, None], np.round(beta, 4), bern)
    failed = rng.random((n, m)) < p_error
    quality = np.where(failed, 0.0, quality)

    # tokens: prompt -> input tokens (~4 chars/token + system/context), output by complexity x verbosity
    prompts = _prompts(prompt_rng, agents, a_idx, c_idx, privacy, hardness[:, 0], cfg, seed)
    chars = np.fromiter((len(p) for p in prompts), dtype=np.int64, count=n)
    context = np.round(rng.lognormal(np.log(300 + 900 * c_idx), 0.5)).astype(np.int64)
    input_tokens = (chars // 4 + 120 + context)[:, None] * np.ones((1, m), dtype=np.int64)
    base_out = rng.lognormal(np.log(220 * (1.0 + 1.2 * c_idx)), 0.45)
    out = base_out[:, None] * VERBOSITY[None, :] * rng.lognormal(0.0, 0.2, size=(n, m))
    max_tok = MAX_TOKENS[c_idx]
    output_tokens = np.minimum(np.round(out), max_tok[:, None]).astype(np.int64)
    output_tokens = np.where(failed, 0, output_tokens)

    # cost and latency
    is_local = np.array([s.is_local for s in cat])
    tps = np.array([s.tokens_per_s or 1.0 for s in cat])
    gpu_rate = np.array([s.gpu_usd_per_hour for s in cat])
    p_in = np.array([s.usd_per_m_input for s in cat])
    p_out = np.array([s.usd_per_m_output for s in cat])
    serving = cfg.local_serving
    gpu_s = serving.gpu_seconds(input_tokens, output_tokens, tps)
    cost = np.where(
        is_local[None, :],
        gpu_s * gpu_rate / 3600.0,
        (input_tokens * p_in + output_tokens * p_out) / 1e6,
    )
    cloud_tps = np.where(np.arange(m) == 5, 65.0, 55.0)
    ttft = rng.lognormal(np.log(0.6), 0.35, size=(n, m))
    rtt = cfg.cloud_rtt_s * rng.lognormal(0.0, 0.3, size=(n, m))
    lat_cloud = rtt + ttft + output_tokens / cloud_tps * rng.lognormal(0.0, 0.15, size=(n, m))
    service_s = serving.service_seconds(input_tokens, output_tokens, tps)
    queue = np.zeros((n, m))
    queue[:, is_local] = serving.queue_wait(service_s[:, is_local], serve_rng)
    lat_local = service_s * rng.lognormal(0.05, 0.15, size=(n, m)) + queue + LOCAL_OVERHEAD_S
    latency = np.where(is_local[None, :], lat_local, lat_cloud)
    latency = np.where(failed & ~is_local[None, :], np.minimum(latency, 0.4 + rtt), latency)

    err_kind = np.full((n, m), None, dtype=object)
    if failed.any():
        fi, fj = np.nonzero(failed)
        kinds_local = rng.choice(len(LOCAL_ERRORS), size=fi.size)
        kinds_cloud = rng.choice(len(CLOUD_ERRORS), size=fi.size)
        err_kind[fi, fj] = [
            LOCAL_ERRORS[kl] if is_local[j] else CLOUD_ERRORS[kc]
            for j, kl, kc in zip(fj, kinds_local, kinds_cloud, strict=True)
        ]

    # --- long table ---
    width = len(str(n - 1))
    task_ids = [f"sim-{seed}-{i:0{width}d}" for i in range(n)]
    tasks = pl.DataFrame(
        {
            "task_id": task_ids,
            "prompt": prompts,
            "category": [AGENT_TYPES[agents[a]][0] for a in a_idx],
            "agent_type": [agents[a] for a in a_idx],
            "complexity": [COMPLEXITIES[c] for c in c_idx],
            "max_tokens": max_tok.astype(np.int64),
            "n_messages": (1 + c_idx + rng.poisson(1.0 + c_idx)).astype(np.int64),
            "privacy": privacy,
            "source": ["simulated"] * n,
        }
    )
    tasks = assign_splits(tasks, seed=seed, fractions=fractions)
    rep = np.repeat(np.arange(n), m)
    cells = pl.DataFrame(
        {
            "model": np.tile(np.array(ref, dtype=object), n).tolist(),
            "quality": quality.ravel(),
            "cost_usd": cost.ravel(),
            "latency_s": latency.ravel(),
            "input_tokens": input_tokens.ravel(),
            "output_tokens": output_tokens.ravel(),
            "error": pl.Series(err_kind.ravel().tolist(), dtype=pl.Utf8),
        }
    )
    rep_tasks = tasks.select(pl.all().gather(pl.Series(rep)))
    long = pl.concat([rep_tasks.select("task_id"), cells, rep_tasks.drop("task_id")], how="horizontal")
    gt = pl.DataFrame(
        {
            "task_id": long["task_id"],
            "model": cells["model"],
            "p_success": p_success.ravel(),
            "p_error": np.ascontiguousarray(p_error).ravel(),
            "expected_quality": (p_success * (1 - p_error)).ravel(),
        }
    )
    report = ValidationReport(
        source="simulated", n_rows_in=long.height, n_rows_out=long.height, n_tasks=n, n_models=m,
        notes=["simulated by router_rl.traces.simulate.simulate_fleet"],
    )
    meta = {
        "source": "simulated",
        "importer": "simulate",
        "seed": seed,
        "split_seed": seed,
        "split_fractions": list(fractions),
        "n_tasks": n,
        "config": cfg.to_dict(),
    }
    return TraceSet(outcomes=long, catalog=cat, report=report, meta=meta, ground_truth=gt)
