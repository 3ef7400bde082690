"""Named signals computed from stored aggregates: the one place numbers are computed.

The snapshot, history, summary and export routes and the alert engine all call
`evaluate` (one window) or `evaluate_range` (a window per step), so a number is the same
everywhere. Signals and their units are listed in docs/contracts.md ("Signals").

    values = evaluate(store, "p95_latency_ms", now - 300, now, group_by=["service", "route"])
    for v in values:
        print(v.labels, v.value, v.samples, v.lower, v.upper)

- `group_by=None` uses the signal's default grouping; `group_by=[]` gives one total.
  Group keys: `service`, `instance`, `route`, `method`, `status`, `model`, `version`,
  `result`, `mountpoint`, or any attribute name.
- `filters` keeps only series whose label equals the value: `{"service": "mlapi"}`.
- Several instances of a service add up (counts, histograms) or, for utilisation gauges,
  the maximum is taken.
- Window: buckets whose start lies in [start aligned down to the resolution, end);
  rates divide by the window length `end - start`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mlpulse.backend.query import drift as drift_maths
from mlpulse.backend.query.histograms import quantile
from mlpulse.backend.storage.aggregate import Aggregate, merge_all
from mlpulse.backend.storage.base import RESOLUTIONS, MetricStore, SeriesInfo
from mlpulse.backend.storage.rollup import bucket_start

LABEL_KEYS: dict[str, str] = {
    "service": "service",
    "instance": "instance",
    "route": "http.route",
    "method": "http.request.method",
    "status": "http.response.status_code",
    "model": "ml.model.name",
    "version": "ml.model.version",
    "result": "ml.cache.result",
    "mountpoint": "system.filesystem.mountpoint",
    "feature": "ml.feature.name",
    "cache_hit": "ml.prediction.cache_hit",
    "window": "ml.prediction.window",
}
DEFAULT_RETENTION: dict[int, int] = {10: 86_400, 60: 7 * 86_400, 3600: 90 * 86_400}

HTTP_DURATION = "http.server.request.duration"
PREDICTIONS = "ml.model.predictions"
CONFIDENCE = "ml.model.prediction.confidence"
PREDICTION_VALUE = "ml.model.prediction.value"
FEATURE_VALUE = "ml.model.feature.value"
REF_PREDICTION_VALUE = "ml.model.reference.prediction.value"
REF_CONFIDENCE = "ml.model.reference.prediction.confidence"
REF_FEATURE_VALUE = "ml.model.reference.feature.value"
FEEDBACK = "ml.model.feedback"
FEEDBACK_LAG = "ml.model.feedback.lag"
ERR_ABS = "ml.model.error.absolute"
ERR_SQ = "ml.model.error.squared"
ACTUAL = "ml.model.actual"
ACTUAL_SQ = "ml.model.actual.squared"
BASELINE_MAE = "ml.model.baseline.mae"
BASELINE_R2 = "ml.model.baseline.r2"
PROCESS_UPTIME = "process.uptime"
CACHE_LOOKUPS = "ml.cache.lookups"
CACHE_ENTRIES = "ml.cache.entries"
CACHE_SIZE = "ml.cache.size"
CACHE_STALE = "ml.cache.stale_entries"

# Feedback carries its prediction's window as an index that cycles (the instrumentation's
# PREDICTION_WINDOW_S and PREDICTION_WINDOW_CYCLE; docs/contracts.md): the window of a
# label is the latest window with that index that starts at or before the label's arrival.
PREDICTION_WINDOW = "ml.prediction.window"
PREDICTION_WINDOW_S = 300
PREDICTION_WINDOW_CYCLE = 16

# A model version re-publishes its reference distributions every 10 minutes
# (instrumentation REFERENCE_REPUBLISH_S); drift signals read them over this lookback.
REFERENCE_LOOKBACK_S = 3600.0

Rows = Sequence[tuple[SeriesInfo, Aggregate]]
Frame = Mapping[str, Rows]


class UnknownSignalError(ValueError):
    """Neither a signal name nor a stored metric."""


@dataclass(frozen=True, slots=True)
class SignalValue:
    """One group's value of a signal over a window.

    `samples` is the count behind the value (requests, predictions, feedbacks, lookups,
    gauge points); `lower`/`upper` are the bucket bounds of a percentile, else None.
    """

    labels: dict[str, str]
    value: float | None
    samples: float
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True, slots=True)
class SignalPoint:
    """A signal's value over one step window [time, time + step)."""

    time: int
    value: float | None
    samples: float
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True, slots=True)
class SignalSeries:
    """One group's values of a signal at each step of a range."""

    labels: dict[str, str]
    points: list[SignalPoint] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Computed:
    value: float | None
    samples: float
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """A named computation over the aggregates of one or more metrics in a window.

    The first metric is the primary one: its series define the groups; the others join
    the groups whose labels they share.
    """

    name: str
    unit: str
    metrics: tuple[str, ...]
    default_group: tuple[str, ...]
    compute: Callable[[Frame, float], Computed]
    description: str = ""
    histograms: bool = False  # needs histogram buckets (percentiles), not just counts
    # Metrics read over the `lookback_s` before the window's end instead of the window
    # (a model version's reference distributions, re-published now and then).
    lookback_metrics: tuple[str, ...] = ()
    lookback_s: float = 0.0
    # `compute` gives the time of the group's latest point; the signal is the age of it
    # at the window's end (no-data alerting: how long since a group last reported).
    age: bool = False
    # Metrics counted by the window their *prediction* was made in (the feedback's
    # ``ml.prediction.window``), whenever the label arrived, instead of by arrival time.
    by_prediction_time: tuple[str, ...] = ()


# --- computation helpers ---------------------------------------------------------------


_shared = threading.local()  # `shared_merges`: this thread's merges, while in the block


@contextlib.contextmanager
def shared_merges() -> Iterator[None]:
    """Within the block (this thread), rows merged twice are merged once.

    A computation of many signals over one read (`query.view.read_once`: the live push,
    the snapshot) merges the same histograms for p50, p95 and p99 of one group; the
    merge is most of their cost. The memo keys on the identity of the aggregates and
    keeps them referenced until the block ends, so a key never matches other objects.
    """
    outer = getattr(_shared, "merges", None)
    if outer is None:
        _shared.merges = {}
    try:
        yield
    finally:
        if outer is None:
            _shared.merges = None


def _merged(rows: Rows) -> Aggregate:
    aggs = [a for _, a in rows]
    memo: dict[tuple[int, ...], tuple[list[Aggregate], Aggregate]] | None = getattr(
        _shared, "merges", None
    )
    if memo is None or len(aggs) < 2:
        return merge_all(aggs)
    key = tuple(map(id, aggs))
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = (aggs, merge_all(aggs))
    return hit[1]


def _count_and_sum(rows: Rows) -> tuple[float, float]:
    """Σ count and Σ sum of the rows: what `_merged` would give, without its histograms."""
    return sum((a.count for _, a in rows), 0.0), sum((a.sum for _, a in rows), 0.0)


def _total(rows: Rows) -> float:
    """Σ of a sum metric's deltas (or of a histogram's counts)."""
    return sum(a.count if s.kind in ("histogram", "exp_histogram") else a.sum for s, a in rows)


def _latest_per_series(rows: Rows) -> list[float]:
    return [a.last for _, a in rows if a.last is not None]


def _time_scale(rows: Rows) -> float:
    units = {s.unit for s, _ in rows}
    if units <= {"ms"}:
        return 1.0
    if units <= {"us", "µs"}:
        return 1e-3
    return 1000.0  # seconds, the semantic-convention unit


def _is_error(s: SeriesInfo) -> bool:
    code = s.attributes.get("http.response.status_code", "")
    try:
        return int(float(code)) >= 500
    except ValueError:
        return bool(s.attributes.get("error.type"))


def _per_minute(n: float, window: float) -> float | None:
    return n * 60.0 / window if window > 0 else None


def _ratio(num: float, den: float, scale: float = 100.0) -> float | None:
    return num / den * scale if den > 0 else None


def _request_rate(f: Frame, w: float) -> Computed:
    rows = f.get(HTTP_DURATION, ())
    n = _total(rows)
    return Computed(_per_minute(n, w) if rows else None, n)


def _request_count(f: Frame, w: float) -> Computed:
    rows = f.get(HTTP_DURATION, ())
    n = _total(rows)
    return Computed(n if rows else None, n)


def _error_rate(f: Frame, w: float) -> Computed:
    rows = f.get(HTTP_DURATION, ())
    n = _total(rows)
    errors = sum(a.count for s, a in rows if _is_error(s))
    return Computed(_ratio(errors, n), n)


def _avg_latency(f: Frame, w: float) -> Computed:
    rows = f.get(HTTP_DURATION, ())
    count, total = _count_and_sum(rows)
    return Computed(_ratio(total, count, _time_scale(rows)), count)


def _percentile(metric: str, q: float) -> Callable[[Frame, float], Computed]:
    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        agg = _merged(rows)
        est = quantile(agg, q)
        if est is None:
            return Computed(None, agg.count)
        est = est.scaled(_time_scale(rows))
        return Computed(est.value, agg.count, est.lower, est.upper)

    return compute


def _rate_of(metric: str) -> Callable[[Frame, float], Computed]:
    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        n = _total(rows)
        return Computed(_per_minute(n, w) if rows else None, n)

    return compute


def _count_of(metric: str) -> Callable[[Frame, float], Computed]:
    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        n = _total(rows)
        return Computed(n if rows else None, n)

    return compute


def _avg_confidence(f: Frame, w: float) -> Computed:
    count, total = _count_and_sum(f.get(CONFIDENCE, ()))
    return Computed(_ratio(total, count, 1.0), count)


def _error_stats(f: Frame) -> tuple[float, float, float, float, float]:
    return (
        _total(f.get(FEEDBACK, ())),
        _total(f.get(ERR_ABS, ())),
        _total(f.get(ERR_SQ, ())),
        _total(f.get(ACTUAL, ())),
        _total(f.get(ACTUAL_SQ, ())),
    )


#: Two-sided confidence level of the MAE interval.
MAE_CONFIDENCE = 0.95


def mae_interval(n: float, abs_sum: float, sq_sum: float) -> tuple[float, float, float] | None:
    """MAE and its two-sided `MAE_CONFIDENCE` interval from the sufficient statistics.

    |e| has mean Σ|e|/n and sample variance (Σe² - (Σ|e|)²/n)/(n - 1) (since |e|² = e²),
    so the MAE's standard error is sqrt(variance / n) and the interval is
    MAE ± t(0.975, n - 1) · SE (Student's t). None below two feedbacks.
    """
    if n < 2:
        return None
    mae = abs_sum / n
    variance = max(sq_sum - abs_sum * abs_sum / n, 0.0) / (n - 1)
    # Student's t quantile from scipy.special, imported on first use: scipy.stats would
    # cost ~45 MiB of resident memory for this one function, and even scipy.special
    # costs ~26 MiB, which a backend that only ingests (nobody reading model quality)
    # should not carry (B7's memory bound).
    from scipy.special import stdtrit

    half = float(stdtrit(n - 1, 0.5 + MAE_CONFIDENCE / 2)) * math.sqrt(variance / n)
    return mae, max(mae - half, 0.0), mae + half


def _mae(f: Frame, w: float) -> Computed:
    n, abs_e, sq, _, _ = _error_stats(f)
    interval = mae_interval(n, abs_e, sq)
    if interval is None:
        return Computed(_ratio(abs_e, n, 1.0), n)
    return Computed(interval[0], n, interval[1], interval[2])


def _rmse(f: Frame, w: float) -> Computed:
    n, _, sq, _, _ = _error_stats(f)
    return Computed(math.sqrt(max(sq, 0.0) / n) if n > 0 else None, n)


def _r2(f: Frame, w: float) -> Computed:
    n, _, sq, y, y2 = _error_stats(f)
    if n <= 0:
        return Computed(None, n)
    total_var = y2 - y * y / n
    return Computed(1.0 - sq / total_var if total_var > 1e-12 * max(1.0, y2) else None, n)


def _latest(rows: Rows) -> float | None:
    best: tuple[int, float] | None = None
    for _, a in rows:
        if a.last is not None and (best is None or a.last_ns >= best[0]):
            best = (a.last_ns, a.last)
    return None if best is None else best[1]


def _baseline(metric: str) -> Callable[[Frame, float], Computed]:
    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        return Computed(_latest(rows), sum(a.count for _, a in rows))

    return compute


def _weighted_baseline(f: Frame) -> float | None:
    """Baseline MAE of the versions that got feedback, weighted by their feedback."""
    by_version: dict[str, list[tuple[SeriesInfo, Aggregate]]] = defaultdict(list)
    for s, a in f.get(BASELINE_MAE, ()):
        by_version[s.attributes.get("ml.model.version", "")].append((s, a))
    feedback: dict[str, float] = defaultdict(float)
    for s, a in f.get(FEEDBACK, ()):
        feedback[s.attributes.get("ml.model.version", "")] += a.sum
    weighted = total = 0.0
    for version, rows in by_version.items():
        base = _latest(rows)
        n = feedback.get(version, 0.0)
        if base is not None and n > 0:
            weighted += base * n
            total += n
    if total > 0:
        return weighted / total
    return _latest(list(f.get(BASELINE_MAE, ())))


def _degradation(f: Frame, w: float) -> Computed:
    """MAE over the baseline in %, with the interval of the MAE carried over."""
    n, abs_e, sq, _, _ = _error_stats(f)
    base = _weighted_baseline(f)
    if n <= 0 or base is None or base <= 0:
        return Computed(None, n)
    interval = mae_interval(n, abs_e, sq)
    value = (abs_e / n - base) / base * 100.0
    if interval is None:
        return Computed(value, n)
    _, lo, hi = interval
    return Computed(value, n, (lo - base) / base * 100.0, (hi - base) / base * 100.0)


def _degradation_lower(f: Frame, w: float) -> Computed:
    """The degradation of the MAE's lower confidence bound: > 20 only beyond noise."""
    c = _degradation(f, w)
    return Computed(c.lower, c.samples)


def _seconds_percentile(metric: str, q: float) -> Callable[[Frame, float], Computed]:
    def compute(f: Frame, w: float) -> Computed:
        agg = _merged(f.get(metric, ()))
        est = quantile(agg, q)
        if est is None:
            return Computed(None, agg.count)
        return Computed(est.value, agg.count, est.lower, est.upper)

    return compute


def _coverage(f: Frame, w: float) -> Computed:
    n = _total(f.get(FEEDBACK, ()))
    p = _total(f.get(PREDICTIONS, ()))
    return Computed(_ratio(n, p), p)


def _by_version(rows: Rows) -> dict[str, list[Aggregate]]:
    out: dict[str, list[Aggregate]] = defaultdict(list)
    for s, a in rows:
        out[s.attributes.get("ml.model.version", "")].append(a)
    return out


def _drift(live: str, reference: str, stat: str) -> Callable[[Frame, float], Computed]:
    """PSI or JS distance of `live` against the versions' `reference` (query.drift)."""

    def compute(f: Frame, w: float) -> Computed:
        result = drift_maths.drift(_by_version(f.get(live, ())), _by_version(f.get(reference, ())))
        if result is None:
            return Computed(None, _total(f.get(live, ())))
        return Computed(result.psi if stat == "psi" else result.js, result.live_count)

    return compute


def _last_report(metric: str) -> Callable[[Frame, float], Computed]:
    """The time (epoch s) of the group's latest point of `metric` (see `Signal.age`)."""

    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        latest = max((a.last_ns for _, a in rows), default=0)
        return Computed(latest / 1e9 if latest else None, float(len(rows)))

    return compute


def _aged(sig: Signal, c: Computed, at: float) -> Computed:
    if not sig.age or c.value is None:
        return c
    return Computed(max(at - c.value, 0.0), c.samples)


def _cache(kind: str) -> Callable[[Frame, float], Computed]:
    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(CACHE_LOOKUPS, ())
        hits = sum(a.sum for s, a in rows if s.attributes.get("ml.cache.result") == "hit")
        misses = sum(a.sum for s, a in rows if s.attributes.get("ml.cache.result") == "miss")
        n = hits + misses
        if kind == "rate":
            return Computed(_ratio(hits, n), n)
        value = hits if kind == "hits" else misses
        return Computed(value if rows else None, n)

    return compute


def _level(metric: str, scale: float = 1.0) -> Callable[[Frame, float], Computed]:
    """Sum over series of each one's latest level (gauge, or cumulative up-down counter)."""

    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        values = _latest_per_series(rows)
        return Computed(sum(values) * scale if values else None, float(len(values)))

    return compute


def _max_gauge(metric: str, scale: float = 1.0) -> Callable[[Frame, float], Computed]:
    """Latest value per series, maximum over series (instances, mountpoints)."""

    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        values = _latest_per_series(rows)
        return Computed(max(values) * scale if values else None, sum(a.count for _, a in rows))

    return compute


def _busy_share(
    metric: str, skip_modes: frozenset[str] = frozenset(), state: str | None = None
) -> Callable[[Frame, float], Computed]:
    """Utilisation split by `cpu.mode` / `system.memory.state`: the busy share, per
    instance the sum of its latest values over the modes that count (every mode but
    `skip_modes`; only `state` when the series carry a state), the maximum over instances.

    Series without those attributes (older producers) count as one mode each.
    """

    def compute(f: Frame, w: float) -> Computed:
        by_instance: dict[str, float] = defaultdict(float)
        n = 0.0
        for s, a in f.get(metric, ()):
            if a.last is None or s.attributes.get("cpu.mode") in skip_modes:
                continue
            if state is not None and s.attributes.get("system.memory.state", state) != state:
                continue
            by_instance[s.instance] += a.last
            n += a.count
        if not by_instance:
            return Computed(None, n)
        return Computed(max(by_instance.values()) * 100.0, n)

    return compute


_IDLE = frozenset({"idle", "iowait"})
_MODEL_ERR = (FEEDBACK, ERR_ABS, ERR_SQ, ACTUAL, ACTUAL_SQ)

SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in [
        Signal("request_rate", "requests/min", (HTTP_DURATION,), ("service",), _request_rate),
        Signal("request_count", "requests", (HTTP_DURATION,), ("service",), _request_count),
        Signal(
            "error_rate_percent", "%", (HTTP_DURATION,), ("service", "route"), _error_rate
        ),
        Signal("avg_latency_ms", "ms", (HTTP_DURATION,), ("service", "route"), _avg_latency),
        *[
            Signal(
                f"p{p}_latency_ms",
                "ms",
                (HTTP_DURATION,),
                ("service", "route"),
                _percentile(HTTP_DURATION, p / 100),
                histograms=True,
            )
            for p in (50, 90, 95, 99)
        ],
        Signal(
            "prediction_rate", "predictions/min", (PREDICTIONS,), ("model",),
            _rate_of(PREDICTIONS),
        ),
        Signal(
            "prediction_count", "predictions", (PREDICTIONS,), ("model",),
            _count_of(PREDICTIONS),
        ),
        Signal("avg_confidence", "1", (CONFIDENCE,), ("model",), _avg_confidence),
        Signal("model_mae", "target unit", _MODEL_ERR, ("model",), _mae),
        Signal("model_rmse", "target unit", _MODEL_ERR, ("model",), _rmse),
        Signal("model_r2", "1", _MODEL_ERR, ("model",), _r2),
        Signal("feedback_count", "feedbacks", (FEEDBACK,), ("model",), _count_of(FEEDBACK)),
        Signal("baseline_mae", "target unit", (BASELINE_MAE,), ("model",), _baseline(BASELINE_MAE)),
        Signal("baseline_r2", "1", (BASELINE_R2,), ("model",), _baseline(BASELINE_R2)),
        Signal(
            "mae_degradation_percent",
            "%",
            (*_MODEL_ERR, BASELINE_MAE),
            ("model",),
            _degradation,
        ),
        Signal(
            "mae_degradation_lower_percent",
            "%",
            (*_MODEL_ERR, BASELINE_MAE),
            ("model",),
            _degradation_lower,
        ),
        Signal(
            "feedback_coverage_percent", "%", (PREDICTIONS, FEEDBACK), ("model",), _coverage
        ),
        Signal("label_coverage_percent", "%", (PREDICTIONS, FEEDBACK), ("model",), _coverage),
        Signal(
            "mae_by_prediction_time", "target unit", (FEEDBACK, ERR_ABS, ERR_SQ), ("model",),
            _mae, by_prediction_time=(FEEDBACK, ERR_ABS, ERR_SQ),
            description="MAE (with its 95 % interval) of the predictions made in the window, "
            "whenever their labels arrived (cohorts of 5 minutes)",
        ),
        Signal(
            "label_coverage_by_prediction_time", "%", (PREDICTIONS, FEEDBACK), ("model",),
            _coverage, by_prediction_time=(FEEDBACK,),
            description="share of the predictions made in the window that got a label so far",
        ),
        *[
            Signal(
                f"label_lag_p{p}_s", "s", (FEEDBACK_LAG,), ("model",),
                _seconds_percentile(FEEDBACK_LAG, p / 100), histograms=True,
            )
            for p in (50, 95)
        ],
        Signal(
            "prediction_psi", "1", (PREDICTION_VALUE, REF_PREDICTION_VALUE), ("model",),
            _drift(PREDICTION_VALUE, REF_PREDICTION_VALUE, "psi"), histograms=True,
            lookback_metrics=(REF_PREDICTION_VALUE,), lookback_s=REFERENCE_LOOKBACK_S,
        ),
        Signal(
            "prediction_js", "1", (PREDICTION_VALUE, REF_PREDICTION_VALUE), ("model",),
            _drift(PREDICTION_VALUE, REF_PREDICTION_VALUE, "js"), histograms=True,
            lookback_metrics=(REF_PREDICTION_VALUE,), lookback_s=REFERENCE_LOOKBACK_S,
        ),
        Signal(
            "confidence_psi", "1", (CONFIDENCE, REF_CONFIDENCE), ("model",),
            _drift(CONFIDENCE, REF_CONFIDENCE, "psi"), histograms=True,
            lookback_metrics=(REF_CONFIDENCE,), lookback_s=REFERENCE_LOOKBACK_S,
        ),
        Signal(
            "feature_psi", "1", (FEATURE_VALUE, REF_FEATURE_VALUE), ("model", "feature"),
            _drift(FEATURE_VALUE, REF_FEATURE_VALUE, "psi"), histograms=True,
            lookback_metrics=(REF_FEATURE_VALUE,), lookback_s=REFERENCE_LOOKBACK_S,
        ),
        Signal(
            "report_age_s", "s", (PROCESS_UPTIME,), ("service",),
            _last_report(PROCESS_UPTIME), age=True,
            description="seconds since the group last reported (process.uptime points)",
        ),
        Signal(
            "model_report_age_s", "s", (BASELINE_MAE,), ("model",),
            _last_report(BASELINE_MAE), age=True,
            description="seconds since the model last reported (its baseline gauge)",
        ),
        Signal("cache_hit_rate_percent", "%", (CACHE_LOOKUPS,), ("service",), _cache("rate")),
        Signal("cache_hits", "lookups", (CACHE_LOOKUPS,), ("service",), _cache("hits")),
        Signal("cache_misses", "lookups", (CACHE_LOOKUPS,), ("service",), _cache("misses")),
        Signal("cache_entries", "entries", (CACHE_ENTRIES,), ("service",), _level(CACHE_ENTRIES)),
        Signal(
            "cache_stale_entries", "entries", (CACHE_STALE,), ("service",), _level(CACHE_STALE)
        ),
        Signal(
            "cache_size_mb", "MiB", (CACHE_SIZE,), ("service",), _level(CACHE_SIZE, 1 / 2**20)
        ),
        Signal(
            "cpu_percent", "%", ("system.cpu.utilization",), ("service",),
            _busy_share("system.cpu.utilization", _IDLE),
        ),
        Signal(
            "memory_percent", "%", ("system.memory.utilization",), ("service",),
            _busy_share("system.memory.utilization", state="used"),
        ),
        Signal(
            "disk_percent", "%", ("system.filesystem.utilization",), ("service",),
            _max_gauge("system.filesystem.utilization", 100.0),
        ),
        Signal(
            "process_cpu_percent", "%", ("process.cpu.utilization",), ("service",),
            _busy_share("process.cpu.utilization"),
        ),
        Signal(
            "memory_usage_mb", "MiB", ("process.memory.usage",), ("service",),
            _level("process.memory.usage", 1 / 2**20),
        ),
        Signal(
            "uptime_seconds", "s", ("process.uptime",), ("service",),
            _max_gauge("process.uptime"),
        ),
    ]
}  # fmt: skip

RAW_STATS = ("sum", "rate", "last", "avg", "min", "max", "count", "p50", "p90", "p95", "p99")


def raw_signal(metric: str, kind: str, monotonic: bool, stat: str | None = None) -> Signal:
    """A signal over one stored metric: `stat` of its aggregates (default by kind).

    Defaults: monotonic sums `sum` (the increase over the window), other sums and gauges
    `last` (latest level, summed over series), histograms `count`.
    """
    if stat is None:
        stat = {"sum": "sum" if monotonic else "last", "gauge": "last"}.get(kind, "count")
    if stat not in RAW_STATS:
        raise UnknownSignalError(f"unknown stat {stat!r}; one of {', '.join(RAW_STATS)}")

    def compute(f: Frame, w: float) -> Computed:
        rows = f.get(metric, ())
        if not rows:
            return Computed(None, 0.0)
        agg = _merged(rows)
        hist = kind in ("histogram", "exp_histogram")
        n = agg.count
        if stat in ("p50", "p90", "p95", "p99"):
            est = quantile(agg, int(stat[1:]) / 100)
            if est is None:
                return Computed(None, n)
            return Computed(est.value, n, est.lower, est.upper)
        if stat == "count":
            return Computed(n, n)
        if stat == "sum":
            return Computed(agg.sum, n)
        if stat == "rate":
            return Computed((agg.count if hist else agg.sum) / w if w > 0 else None, n)
        if stat == "last":
            return _level(metric)(f, w)
        if stat == "avg":
            return Computed(_ratio(agg.sum, agg.count, 1.0), n)
        return Computed(agg.min if stat == "min" else agg.max, n)

    return Signal(f"{metric}:{stat}", "", (metric,), (), compute, histograms=stat.startswith("p"))


def resolve(store: MetricStore, name: str, stat: str | None = None) -> Signal:
    """Return the named signal, or a raw signal over a stored metric of that name."""
    if name in SIGNALS and stat is None:
        return SIGNALS[name]
    for info in store.metrics():
        if info.name == name:
            return raw_signal(name, info.kind, _is_monotonic(store, name), stat)
    raise UnknownSignalError(f"unknown signal or metric {name!r}")


def _is_monotonic(store: MetricStore, metric: str) -> bool:
    series = store.series(metric)
    return bool(series) and all(s.monotonic for s in series)


# --- evaluation ---------------------------------------------------------------------


def choose_resolution(
    start: float,
    end: float,
    step: float | None = None,
    retention: Mapping[int, int] | None = None,
    now: float | None = None,
) -> int:
    """Pick the bucket resolution for a window (and step): fine enough, still retained.

    Without a step: 10 s up to 2 h, 1 min up to 2 days, else 1 h. With a step: the
    coarsest resolution that divides it. Then coarser while `start` is past retention.
    """
    if step is None:
        span = end - start
        res = 10 if span <= 7200 else 60 if span <= 172_800 else 3600
    else:
        res = max([r for r in RESOLUTIONS if r <= step and int(step) % r == 0] or [10])
    keep = DEFAULT_RETENTION if retention is None else retention
    now = time.time() if now is None else now
    for r in RESOLUTIONS:
        if r >= res and start >= now - keep.get(r, 0) - r:
            return r
    return RESOLUTIONS[-1]


def _label_values(s: SeriesInfo, keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(s.label(LABEL_KEYS.get(k, k)) or "" for k in keys)


def _read(
    store: MetricStore,
    sig: Signal,
    start: float,
    end: float,
    res: int,
    filters: Mapping[str, str] | None,
    step: int,
    origin: int,
) -> dict[str, list[tuple[SeriesInfo, int, Aggregate]]]:
    """Read a signal's metrics as (series, window start, aggregate), merged per window.

    Windows are `[origin + k*step, origin + (k+1)*step)` over buckets starting in
    `[start aligned down to res, end)`; closed windows come from the store's cache.
    """
    mapped = {LABEL_KEYS.get(k, k): v for k, v in (filters or {}).items()}
    out: dict[str, list[tuple[SeriesInfo, int, Aggregate]]] = {}
    lo = max(bucket_start(start, res), origin)
    for metric in sig.metrics:
        if metric in sig.lookback_metrics or metric in sig.by_prediction_time:
            continue  # read once for the whole range (evaluate_range), or by prediction
        by_id = {s.id: s for s in store.series(metric, mapped)}
        if not by_id:
            out[metric] = []
            continue
        merged = store.windows(list(by_id), res, lo, end, step, origin, histograms=sig.histograms)
        out[metric] = [(by_id[sid], w, agg) for (sid, w), agg in merged.items()]
    return out


def prediction_window_start(index: int, arrived: int) -> int:
    """The start (epoch s) of the prediction window with cycle `index` that a label
    arriving in the window starting at `arrived` belongs to: the latest one at or
    before it (labels come less than a cycle after their prediction)."""
    w, k = PREDICTION_WINDOW_S, PREDICTION_WINDOW_CYCLE
    a = arrived // w
    return (a - (a - index) % k) * w


def _read_by_prediction_time(
    store: MetricStore,
    sig: Signal,
    start: float,
    end: float,
    filters: Mapping[str, str] | None,
    step: int,
    origin: int,
) -> dict[str, list[tuple[SeriesInfo, int, Aggregate]]]:
    """Read `sig.by_prediction_time` metrics as (series, window start, aggregate), where
    the window is the one the *predictions* were made in, merged per series and window.

    Labels of predictions made in `[origin, end)` arrive up to a cycle later, so the
    arrivals are read over `[origin, end + cycle)` in prediction-window-wide steps; each
    arrival step and series (its ``ml.prediction.window`` index) gives the prediction
    window exactly. `step` and `origin` must be multiples of `PREDICTION_WINDOW_S`.
    Series without the index (labels without their prediction's time) are left out;
    arrivals stored only at a resolution coarser than a window (past the 1 min
    retention) cannot be placed and are left out too.
    """
    w = PREDICTION_WINDOW_S
    if step % w or origin % w:
        raise ValueError(f"by prediction time, step and origin must be multiples of {w} s")
    mapped = {LABEL_KEYS.get(k, k): v for k, v in (filters or {}).items()}
    lo = max(bucket_start(start, w), origin)
    hi = math.ceil(end / w) * w + PREDICTION_WINDOW_CYCLE * w
    res = choose_resolution(lo, hi, w)
    out: dict[str, list[tuple[SeriesInfo, int, Aggregate]]] = {}
    for metric in sig.by_prediction_time:
        by_id: dict[int, tuple[SeriesInfo, int]] = {}
        for s in store.series(metric, mapped):
            try:
                index = int(float(s.attributes.get(PREDICTION_WINDOW, "")))
            except ValueError:
                continue
            if 0 <= index < PREDICTION_WINDOW_CYCLE:
                by_id[s.id] = (s, index)
        out[metric] = []
        if not by_id or res > w:
            continue
        arrived = store.windows(list(by_id), res, lo, hi, w, lo, histograms=False)
        cohorts: dict[tuple[int, int], list[Aggregate]] = defaultdict(list)
        for (sid, a), agg in arrived.items():
            predicted = prediction_window_start(by_id[sid][1], a)
            if lo <= predicted < end:
                t = origin + (predicted - origin) // step * step
                cohorts[(sid, t)].append(agg)
        out[metric] = [(by_id[sid][0], t, merge_all(aggs)) for (sid, t), aggs in cohorts.items()]
    return out


def _read_totals(
    store: MetricStore,
    sig: Signal,
    start: float,
    end: float,
    res: int,
    filters: Mapping[str, str] | None,
    metrics: Sequence[str] | None = None,
) -> dict[str, list[tuple[SeriesInfo, Aggregate]]]:
    """Read a signal's metrics (or `metrics`) as one aggregate per series over the window;
    lookback metrics over the signal's lookback before `end` when that is longer."""
    mapped = {LABEL_KEYS.get(k, k): v for k, v in (filters or {}).items()}
    out: dict[str, list[tuple[SeriesInfo, Aggregate]]] = {}
    for metric in metrics if metrics is not None else sig.metrics:
        if metric in sig.by_prediction_time:
            continue  # read by `_read_by_prediction_time`
        by_id = {s.id: s for s in store.series(metric, mapped)}
        if not by_id:
            out[metric] = []
            continue
        lo = min(start, end - sig.lookback_s) if metric in sig.lookback_metrics else start
        totals = store.window_totals(list(by_id), lo, end, histograms=sig.histograms, align=res)
        out[metric] = [(by_id[sid], agg) for sid, agg in sorted(totals.items())]
    return out


def _frames(
    sig: Signal,
    keys: Sequence[str],
    rows: Mapping[str, Sequence[tuple[SeriesInfo, Aggregate]]],
    labels: dict[int, tuple[str, ...]] | None = None,
) -> dict[tuple[str, ...], dict[str, list[tuple[SeriesInfo, Aggregate]]]]:
    """Group rows by their label values for `keys`; `labels` remembers each series'
    values (by series id) over the steps of one `evaluate_range`."""
    memo: dict[int, tuple[str, ...]] = {} if labels is None else labels

    def of(s: SeriesInfo) -> tuple[str, ...]:
        got = memo.get(s.id)
        if got is None:
            got = memo[s.id] = _label_values(s, keys)
        return got

    groups: dict[tuple[str, ...], dict[str, list[tuple[SeriesInfo, Aggregate]]]] = {}
    primary = sig.metrics[0]
    for s, agg in rows.get(primary, ()):
        groups.setdefault(of(s), {}).setdefault(primary, []).append((s, agg))
    if not keys:
        groups.setdefault((), {})
    for metric in sig.metrics[1:]:
        for s, agg in rows.get(metric, ()):
            frame = groups.get(of(s))
            if frame is not None:
                frame.setdefault(metric, []).append((s, agg))
    return groups


def evaluate(
    store: MetricStore,
    signal: str | Signal,
    start: float,
    end: float,
    group_by: Sequence[str] | None = None,
    filters: Mapping[str, str] | None = None,
    *,
    resolution: int | None = None,
) -> list[SignalValue]:
    """Evaluate a signal over [start, end), one `SignalValue` per group, sorted by labels.

    With `group_by=[]` there is always exactly one value (null when there is no data).
    """
    sig = signal if isinstance(signal, Signal) else _named(signal)
    keys = tuple(sig.default_group if group_by is None else group_by)
    res = resolution or choose_resolution(start, end)
    rows = _read_totals(store, sig, start, end, res, filters)
    if sig.by_prediction_time:
        # One window: the prediction windows starting in [start aligned down, end).
        w = PREDICTION_WINDOW_S
        origin = bucket_start(start, w)
        span = max(math.ceil((end - origin) / w), 1) * w
        cohort = _read_by_prediction_time(store, sig, start, end, filters, span, origin)
        for metric, cohort_rows in cohort.items():
            rows[metric] = [(info, agg) for info, _, agg in cohort_rows]
    out = []
    for labels, frame in sorted(_frames(sig, keys, rows).items()):
        c = _aged(sig, sig.compute(frame, end - start), end)
        out.append(
            SignalValue(dict(zip(keys, labels, strict=True)), c.value, c.samples, c.lower, c.upper)
        )
    return out


def evaluate_range(
    store: MetricStore,
    signal: str | Signal,
    start: float,
    end: float,
    step: int,
    group_by: Sequence[str] | None = None,
    filters: Mapping[str, str] | None = None,
    *,
    resolution: int | None = None,
) -> list[SignalSeries]:
    """Evaluate a signal on each step window [t, t + step) from `start` (aligned) to `end`."""
    if step <= 0:
        raise ValueError("step must be positive")
    sig = signal if isinstance(signal, Signal) else _named(signal)
    keys = tuple(sig.default_group if group_by is None else group_by)
    res = resolution or choose_resolution(start, end, step)
    origin = bucket_start(start, step)
    times = list(range(origin, math.ceil(end), step))
    # Closed windows computed before (same signal, grouping, filters, step, resolution)
    # are reused; only the rest is read and computed.
    memo_key = (sig.name, keys, tuple(sorted((filters or {}).items())), step, res, origin % step)
    kept, sealed, gen = store.closed_results(memo_key, step, origin)
    if sig.by_prediction_time:
        # A prediction window keeps changing while its labels arrive: never reused.
        kept, sealed = {}, 0
    todo = [t for t in times if t not in kept or t + step > sealed]
    computed: dict[int, dict[tuple[str, ...], SignalPoint]] = {}
    if todo:
        data = _read(store, sig, todo[0], end, res, filters, step, origin)
        if sig.by_prediction_time:
            data.update(_read_by_prediction_time(store, sig, todo[0], end, filters, step, origin))
        by_step: dict[int, dict[str, list[tuple[SeriesInfo, Aggregate]]]] = defaultdict(dict)
        for metric, rows in data.items():
            for info, t, agg in rows:
                by_step[t].setdefault(metric, []).append((info, agg))
        # References are static per version: one read serves every step.
        constant = (
            _read_totals(store, sig, todo[0], end, res, filters, sig.lookback_metrics)
            if sig.lookback_metrics
            else {}
        )
        labels_of: dict[int, tuple[str, ...]] = {}  # series id -> label values, every step
        for t in todo:
            points: dict[tuple[str, ...], SignalPoint] = {}
            step_rows = {**by_step.get(t, {}), **constant}
            for labels, frame in _frames(sig, keys, step_rows, labels_of).items():
                if not keys and not frame:
                    continue
                c = _aged(sig, sig.compute(frame, float(step)), min(t + step, end))
                points[labels] = SignalPoint(t, c.value, c.samples, c.lower, c.upper)
            computed[t] = points
        closed = {t: p for t, p in computed.items() if t + step <= sealed}
        if closed:
            floor = origin - 86_400  # forget windows far behind the newest reader
            store.keep_results(
                memo_key, gen, {**{t: p for t, p in kept.items() if t >= floor}, **closed}
            )
    series: dict[tuple[str, ...], SignalSeries] = {}
    for t in times:
        window = computed[t] if t in computed else kept.get(t, {})
        for labels, point in window.items():
            target = series.setdefault(labels, SignalSeries(dict(zip(keys, labels, strict=True))))
            target.points.append(point)
    out = []
    for labels in sorted(series):
        have = {p.time: p for p in series[labels].points}
        line = [have.get(t) or SignalPoint(t, None, 0.0) for t in times]
        out.append(SignalSeries(series[labels].labels, line))
    if not keys and not out:
        out.append(SignalSeries({}, [SignalPoint(t, None, 0.0) for t in times]))
    return out


def _named(name: str) -> Signal:
    try:
        return SIGNALS[name]
    except KeyError:
        raise UnknownSignalError(f"unknown signal {name!r}") from None


def latest_time(
    store: MetricStore,
    metrics: Sequence[str],
    start: float,
    end: float,
    filters: Mapping[str, str] | None = None,
) -> float | None:
    """Return the time (epoch s) of the latest point of any of `metrics` in the window."""
    mapped = {LABEL_KEYS.get(k, k): v for k, v in (filters or {}).items()}
    res = choose_resolution(start, end)
    latest = 0
    for metric in metrics:
        ids = [s.id for s in store.series(metric, mapped)]
        if ids:
            totals = store.window_totals(ids, start, end, histograms=False, align=res)
            latest = max([latest, *(agg.last_ns for agg in totals.values())])
    return latest / 1e9 if latest else None
