"""Wiring of the alert engine into the backend app: build it, run it, stop it.

`get_engine(app)` builds the engine once per app (from `app.state.settings`, the metric
store, the live broker and `app.state.alert_settings` or the `MLPULSE_*` environment);
`alerts_job(app)` is the background job that starts the delivery workers and evaluates
every rule each `MLPULSE_ALERT_EVAL_INTERVAL` seconds, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from mlpulse.backend.alerts.config import AlertSettings
from mlpulse.backend.alerts.engine import AlertEngine, Sample, SignalSource
from mlpulse.backend.alerts.leader import evaluator_lease
from mlpulse.backend.alerts.rules import GROUP_KEYS, Rule
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.notify.dispatcher import Dispatcher
from mlpulse.backend.notify.email import EmailSender
from mlpulse.backend.notify.file import protected_files
from mlpulse.backend.notify.ssrf import Policy
from mlpulse.backend.notify.webhook import WebhookSender
from mlpulse.backend.query.signals import evaluate
from mlpulse.backend.query.versions import retired_versions
from mlpulse.backend.storage.base import MetricStore

log = logging.getLogger(__name__)
_build_lock = threading.Lock()
PRUNE_EVERY_S = 3600.0


def signal_source(store: MetricStore) -> SignalSource:
    """Return a source computing rules' signals with `mlpulse.backend.query.signals.evaluate`."""

    def source(rule: Rule, now: float) -> list[Sample]:
        group_by = list(GROUP_KEYS[rule.group_by])
        start, filters = now - rule.window, dict(rule.filters)
        results = evaluate(store, rule.signal, start, now, group_by, filters)
        ready = _ready_groups(store, rule, start, now, group_by, filters)
        # Per version: a version a retrain replaced no longer serves; its alert resolves
        # rather than lingering on the labels that still arrive for it.
        retired = retired_versions(store, now, filters) if "version" in group_by else {}
        out = []
        for r in results:
            labels = {str(k): str(v) for k, v in dict(r.labels).items()}
            successor = retired.get((labels.get("model", ""), labels.get("version", "")))
            out.append(
                Sample(
                    labels,
                    None if r.value is None else float(r.value),
                    # A group short of its label coverage has not enough samples yet.
                    int(r.samples or 0) if ready is None or _key(r.labels) in ready else 0,
                    retired=None if successor is None else f"replaced by version {successor}",
                )
            )
        return out

    return source


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _ready_groups(
    store: MetricStore,
    rule: Rule,
    start: float,
    end: float,
    group_by: list[str],
    filters: dict[str, str],
) -> set[tuple[tuple[str, str], ...]] | None:
    """Groups whose label coverage reaches `rule.min_coverage_percent` (None: no check)."""
    if rule.min_coverage_percent is None:
        return None
    coverage = evaluate(store, "label_coverage_percent", start, end, group_by, filters)
    return {
        _key(c.labels)
        for c in coverage
        if c.value is not None and c.value >= rule.min_coverage_percent
    }


def webhook_policy(settings: AlertSettings) -> Policy:
    """Return the SSRF guard policy the settings ask for."""
    return Policy.of(settings.webhook_allow_private, settings.webhook_allowed_hosts)


def alert_settings(app: FastAPI) -> AlertSettings:
    """Return the app's alert settings (``app.state.alert_settings`` or the environment)."""
    settings = getattr(app.state, "alert_settings", None)
    if settings is None:
        settings = AlertSettings()
        app.state.alert_settings = settings
    assert isinstance(settings, AlertSettings)
    return settings


def get_engine(app: FastAPI) -> AlertEngine:
    """Return the app's alert engine, building it on first use."""
    with _build_lock:
        engine = getattr(app.state, "alerts", None)
        if engine is None:
            engine = build_engine(app)
            app.state.alerts = engine
    assert isinstance(engine, AlertEngine)
    return engine


def build_engine(app: FastAPI, *, source: SignalSource | None = None) -> AlertEngine:
    """Build the engine, its store and its dispatcher, and load the rules."""
    settings = alert_settings(app)
    data_dir = app.state.settings.data_dir
    # With PostgreSQL the alert tables live in the shared database, so every replica
    # sees the same rules, silences, acknowledgements, history and outbox.
    shared_url: str | None = app.state.settings.postgres_url
    store = AlertStore(shared_url or settings.db_path(data_dir))
    if not store.shared:
        store.release_claims()  # the only deliverer: claims left by a crash are void
    broker = getattr(app.state, "broker", None)
    engine = AlertEngine(
        store,
        source or signal_source(app.state.store),
        None,
        publish=broker.publish if broker is not None else None,
        repeat_interval=settings.alert_repeat_interval,
    )
    engine.dispatcher = Dispatcher(
        store,
        engine.channel,
        data_dir,
        webhook=WebhookSender(
            webhook_policy(settings),
            timeout=settings.webhook_timeout,
            max_attempts=settings.webhook_max_attempts,
            backoff_base=settings.webhook_backoff_base,
            backoff_max=settings.webhook_backoff_max,
        ),
        email=EmailSender(
            max_attempts=settings.email_max_attempts,
            backoff_base=settings.webhook_backoff_base,
            backoff_max=settings.webhook_backoff_max,
            policy=webhook_policy(settings),
        ),
        workers=settings.notify_workers,
        file_dir=settings.file_dir(data_dir),
        protected=protected_files(data_dir, [settings.db_path(data_dir)]),
        external_url=settings.alert_external_url,
    )
    engine.load(settings.alert_rules_file)
    return engine


async def alerts_job(app: FastAPI) -> None:
    """Evaluate the rules every interval until cancelled; deliver on worker threads.

    Only the replica holding the evaluator lease evaluates (`leader.py`; with SQLite,
    always this one). On a shared store every replica first takes what the others
    changed (`AlertEngine.refresh`) and offers to deliver what nobody is delivering.
    """
    try:
        engine = get_engine(app)
    except Exception as exc:  # a bad rules file: say so instead of dying silently
        log.error("alert engine not started: %s", exc)
        raise
    settings = alert_settings(app)
    assert engine.dispatcher is not None
    dispatcher = engine.dispatcher
    lease = evaluator_lease(app.state.settings.postgres_url)
    shared = engine.store.shared
    dispatcher.start()
    pruned_at = 0.0
    try:
        while settings.alert_enabled:
            started = time.monotonic()
            try:
                evaluator = await run_in_threadpool(lease.held)
                app.state.alert_evaluator = evaluator
                if shared:
                    await run_in_threadpool(engine.refresh)
                if evaluator:
                    await run_in_threadpool(engine.evaluate_once)
                    if started - pruned_at > PRUNE_EVERY_S or not pruned_at:
                        pruned_at = started
                        cutoff = time.time() - settings.alert_history_retention
                        await run_in_threadpool(engine.store.prune, cutoff)
                if shared:
                    await run_in_threadpool(dispatcher.resubmit_due)
            except Exception:  # keep evaluating; the next run retries
                log.exception("alert evaluation failed")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, settings.alert_eval_interval - elapsed))
        await asyncio.Event().wait()  # disabled: idle until shutdown
    finally:
        app.state.alert_evaluator = False
        await run_in_threadpool(lease.release)
        dispatcher.stop(timeout=2.0)
        engine.close()
        app.state.alerts = None
