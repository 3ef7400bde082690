"""SQLite persistence of the alert engine: config, instances, history, silences, receipts,
notification groups and held notifications.

The tables live in their own file (``alerts.db`` beside the metrics database), in WAL
mode, so alert writes never contend with ingest. Every method is one short transaction
and is safe to call from the evaluator and the delivery workers at once.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlpulse.backend.alerts.grouping import Group, GroupAlert
from mlpulse.backend.alerts.sql import Connection, connect
from mlpulse.backend.alerts.state import AlertInstance, State, Transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_instances (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_instances_rule ON alert_instances(rule);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    labels TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    value REAL,
    samples INTEGER NOT NULL,
    threshold REAL,
    clear_threshold REAL,
    severity TEXT,
    reason TEXT NOT NULL,
    silenced_by TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_at ON alert_history(at);
CREATE INDEX IF NOT EXISTS alert_history_rule ON alert_history(rule, at);
CREATE TABLE IF NOT EXISTS alert_notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    history_id INTEGER,
    alert_id TEXT,
    rule TEXT,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS alert_notifications_history ON alert_notifications(history_id);
CREATE INDEX IF NOT EXISTS alert_notifications_status ON alert_notifications(status);
CREATE TABLE IF NOT EXISTS alert_silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at REAL NOT NULL,
    expired_at REAL
);
-- A grouping channel's groups: timers (created, flushed, sent), the alerts announced by
-- the last message, and each alert's latest status and payload (JSON in data).
CREATE TABLE IF NOT EXISTS alert_groups (
    key TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    data TEXT NOT NULL
);
-- Notifications waiting for a hold mute interval to end (status 'held').
CREATE TABLE IF NOT EXISTS alert_held (
    notification_id INTEGER PRIMARY KEY,
    hold_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_held_until ON alert_held(hold_until);
"""

_INSTANCE_FIELDS = (
    "state",
    "value",
    "samples",
    "pending_since",
    "fired_at",
    "last_bad_at",
    "keep_firing_since",
    "resolved_at",
    "state_since",
    "last_eval_at",
    "last_notified_at",
    "notified",
    "acknowledged_at",
    "acknowledged_by",
    "ack_comment",
)


class AlertStore:
    """The alert engine's tables in one SQLite file.

    >>> store = AlertStore(Path("/tmp/alerts.db"))  # doctest: +SKIP
    >>> store.history(rule="high_error_rate", limit=10)  # doctest: +SKIP
    """

    def __init__(self, target: Path | str) -> None:
        self.path = target
        self._lock = threading.RLock()
        self._db = connect(target)
        self.shared = self._db.shared  # PostgreSQL: replicas share these tables
        self._db.create_schema(SCHEMA)
        # Added with the outbox: who is delivering a notification, and until when.
        self._db.add_column("alert_notifications", "claimed_by", "TEXT")
        self._db.add_column("alert_notifications", "claimed_until", "REAL")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock:
            self._db.begin()
            try:
                yield self._db
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    # -- meta (the saved configuration, the rules file's hash) -------------------------

    def get_meta(self, key: str) -> str | None:
        """Return a stored setting."""
        with self._lock:
            row = self._db.execute("SELECT value FROM alert_meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, items: dict[str, str]) -> None:
        """Store settings atomically."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO alert_meta(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                list(items.items()),
            )

    # -- instances ------------------------------------------------------------------

    def load_instances(self) -> list[AlertInstance]:
        """Return every stored alert instance."""
        with self._lock:
            rows = self._db.execute("SELECT id, rule, data FROM alert_instances").fetchall()
        out = []
        for row in rows:
            data = json.loads(row["data"])
            inst = AlertInstance(rule=row["rule"], labels=data.pop("labels"), id=row["id"])
            for name in _INSTANCE_FIELDS:
                if name in data:
                    setattr(inst, name, data[name])
            inst.state = State(inst.state)
            out.append(inst)
        return out

    def save_evaluation(
        self,
        instances: list[AlertInstance],
        transitions: list[tuple[Transition, dict[str, Any]]],
        notifications: list[tuple[int | None, dict[str, Any]]],
        deleted: Sequence[str] = (),
        groups: Sequence[Group] = (),
        deleted_groups: Sequence[str] = (),
    ) -> list[tuple[int, int]]:
        """Persist one evaluation atomically; return ``(history_id, notification_id)`` pairs.

        ``transitions`` pairs each transition with its history extras (threshold,
        severity, silenced_by); ``notifications`` references transitions by index (or
        ``None`` for a repeat or a group's message) and holds the receipt fields;
        ``groups`` are the notification groups changed by this evaluation (saved whole).
        """
        created: list[tuple[int, int]] = []
        with self._tx() as db:
            for group in groups:
                db.execute(
                    "INSERT INTO alert_groups(key, channel, data) VALUES(?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET channel=excluded.channel, data=excluded.data",
                    (group.key, group.channel, json.dumps(_group_data(group))),
                )
            for key in deleted_groups:
                db.execute("DELETE FROM alert_groups WHERE key=?", (key,))
            for inst in instances:
                data: dict[str, Any] = {name: getattr(inst, name) for name in _INSTANCE_FIELDS}
                data["state"] = str(inst.state)
                data["labels"] = inst.labels
                db.execute(
                    "INSERT INTO alert_instances(id, rule, data) VALUES(?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET rule=excluded.rule, data=excluded.data",
                    (inst.id, inst.rule, json.dumps(data)),
                )
            for alert_id in deleted:
                db.execute("DELETE FROM alert_instances WHERE id=?", (alert_id,))
            history_ids: list[int] = []
            for tr, extra in transitions:
                cur = db.execute(
                    "INSERT INTO alert_history(alert_id, rule, labels, from_state, to_state, "
                    "value, samples, threshold, clear_threshold, severity, reason, silenced_by, "
                    "at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        tr.alert_id,
                        tr.rule,
                        json.dumps(tr.labels, sort_keys=True),
                        str(tr.from_state),
                        str(tr.to_state),
                        tr.value,
                        tr.samples,
                        extra.get("threshold"),
                        extra.get("clear_threshold"),
                        extra.get("severity"),
                        tr.reason,
                        extra.get("silenced_by"),
                        tr.at,
                    ),
                )
                history_ids.append(int(cur.lastrowid or 0))
            for index, note in notifications:
                history_id = history_ids[index] if index is not None else None
                note_id = self._insert_notification(db, history_id, note)
                created.append((history_id or 0, note_id))
        return created

    def load_groups(self) -> list[Group]:
        """Return every saved notification group."""
        with self._lock:
            rows = self._db.execute("SELECT key, channel, data FROM alert_groups").fetchall()
        out = []
        for row in rows:
            data = json.loads(row["data"])
            alerts = {
                a["alert_id"]: GroupAlert(
                    a["alert_id"], a["rule"], a["status"], a["payload"], a["updated_at"]
                )
                for a in data.pop("alerts")
            }
            out.append(Group(key=row["key"], channel=row["channel"], alerts=alerts, **data))
        return out

    def acknowledge(self, inst: AlertInstance) -> None:
        """Persist the acknowledgement fields of ``inst``."""
        self.save_evaluation([inst], [], [])

    # -- history ----------------------------------------------------------------------

    def history(
        self,
        *,
        rule: str | None = None,
        state: str | None = None,
        alert_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
        before_id: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Return history entries (newest first) with their delivery receipts, and the total."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("rule", rule), ("to_state", state), ("alert_id", alert_id)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if since is not None:
            where.append("at>=?")
            args.append(since)
        if until is not None:
            where.append("at<=?")
            args.append(until)
        count_clause = " WHERE " + " AND ".join(where) if where else ""
        count_args = list(args)
        if before_id is not None:
            where.append("id<?")
            args.append(before_id)
        clause = " WHERE " + " AND ".join(where) if where else ""
        with self._lock:
            total = self._db.execute(
                f"SELECT COUNT(*) FROM alert_history{count_clause}",  # noqa: S608 - fixed columns
                count_args,
            ).fetchone()[0]
            rows = self._db.execute(
                f"SELECT * FROM alert_history{clause} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
                [*args, limit, offset],
            ).fetchall()
            ids = [row["id"] for row in rows]
            receipts: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
            if ids:
                marks = ",".join("?" * len(ids))
                for note in self._db.execute(
                    f"SELECT * FROM alert_notifications WHERE history_id IN ({marks}) "  # noqa: S608
                    "ORDER BY id",
                    ids,
                ).fetchall():
                    receipts[note["history_id"]].append(_receipt(note))
        entries = []
        for row in rows:
            entry = dict(row)
            entry["labels"] = json.loads(entry["labels"])
            entry["from"] = entry.pop("from_state")
            entry["to"] = entry.pop("to_state")
            entry["notifications"] = receipts[row["id"]]
            entries.append(entry)
        return entries, int(total)

    # -- notifications (delivery receipts) -----------------------------------------

    @staticmethod
    def _insert_notification(db: Connection, history_id: int | None, note: dict[str, Any]) -> int:
        note_id = AlertStore._insert_receipt(db, history_id, note)
        if note.get("hold_until") is not None:
            db.execute(
                "INSERT INTO alert_held(notification_id, hold_until) VALUES(?, ?)",
                (note_id, note["hold_until"]),
            )
        return note_id

    @staticmethod
    def _insert_receipt(db: Connection, history_id: int | None, note: dict[str, Any]) -> int:
        cur = db.execute(
            "INSERT INTO alert_notifications(history_id, alert_id, rule, channel, kind, payload, "
            "status, attempts, last_error, created_at, updated_at) "
            "VALUES(?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (
                history_id,
                note.get("alert_id"),
                note.get("rule"),
                note["channel"],
                note["kind"],
                json.dumps(note["payload"]),
                note.get("status", "queued"),
                note.get("last_error"),
                note["created_at"],
                note["created_at"],
            ),
        )
        return int(cur.lastrowid or 0)

    def add_notification(self, history_id: int | None, note: dict[str, Any]) -> int:
        """Record a notification to deliver; return its id."""
        with self._tx() as db:
            return self._insert_notification(db, history_id, note)

    def notification(self, note_id: int) -> dict[str, Any] | None:
        """Return one notification with its payload."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM alert_notifications WHERE id=?", (note_id,)
            ).fetchone()
        if row is None:
            return None
        out = _receipt(row)
        out["payload"] = json.loads(row["payload"])
        return out

    def update_receipt(
        self,
        note_id: int,
        *,
        status: str,
        attempts: int,
        last_error: str | None,
        at: float,
        delivered_at: float | None = None,
        claimed_until: float | None = None,
    ) -> None:
        """Record the outcome of a delivery attempt (and extend the claim while sending)."""
        with self._tx() as db:
            db.execute(
                "UPDATE alert_notifications SET status=?, attempts=?, last_error=?, "
                "updated_at=?, delivered_at=COALESCE(?, delivered_at), "
                "claimed_until=COALESCE(?, claimed_until) WHERE id=?",
                (status, attempts, last_error, at, delivered_at, claimed_until, note_id),
            )

    # -- the outbox: notifications claimed by one deliverer at a time ----------------

    def claim(self, note_id: int, owner: str, now: float, until: float) -> bool:
        """Take a notification to deliver it; False when it is done or someone else has it.

        One UPDATE, atomic on both databases: a notification is `queued`, or `sending`
        under a claim that expired (its deliverer died). Replicas never both win.
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE alert_notifications SET status='sending', claimed_by=?, "
                "claimed_until=?, updated_at=? WHERE id=? AND (status='queued' OR "
                "(status='sending' AND (claimed_until IS NULL OR claimed_until < ?)))",
                (owner, until, now, note_id, now),
            )
            return cur.rowcount == 1

    def due(self, now: float, limit: int = 100) -> list[int]:
        """Notifications waiting for a deliverer: queued, or claimed by one that died."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM alert_notifications WHERE status='queued' OR "
                "(status='sending' AND (claimed_until IS NULL OR claimed_until < ?)) "
                "ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [int(row["id"]) for row in rows]

    def release_claims(self) -> None:
        """Forget every claim (at start, when this process is the only deliverer)."""
        with self._tx() as db:
            db.execute("UPDATE alert_notifications SET claimed_until=NULL WHERE status='sending'")

    def undelivered(self) -> list[int]:
        """Return the ids of notifications queued or in flight (to resume after a restart)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM alert_notifications WHERE status IN ('queued', 'sending') "
                "ORDER BY id"
            ).fetchall()
        return [int(row["id"]) for row in rows]

    def release_held(self, now: float) -> list[int]:
        """Queue the held notifications whose hold ended by ``now``; return their ids."""
        with self._lock:  # the common case, nothing held: no write transaction
            due = self._db.execute(
                "SELECT 1 FROM alert_held WHERE hold_until <= ? LIMIT 1", (now,)
            ).fetchone()
        if due is None:
            return []
        with self._tx() as db:
            rows = db.execute(
                "SELECT notification_id FROM alert_held WHERE hold_until <= ? "
                "ORDER BY notification_id",
                (now,),
            ).fetchall()
            ids = [int(row["notification_id"]) for row in rows]
            for note_id in ids:
                db.execute(
                    "UPDATE alert_notifications SET status='queued', last_error=NULL, "
                    "updated_at=? WHERE id=? AND status='held'",
                    (now, note_id),
                )
                db.execute("DELETE FROM alert_held WHERE notification_id=?", (note_id,))
        return ids

    def notifications(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Return the latest receipts, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM alert_notifications ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_receipt(row) for row in rows]

    def prune(self, before: float) -> int:
        """Delete history, finished receipts and expired silences older than ``before``."""
        with self._tx() as db:
            n = db.execute("DELETE FROM alert_history WHERE at < ?", (before,)).rowcount
            db.execute(
                "DELETE FROM alert_notifications WHERE created_at < ? "
                "AND status IN ('delivered', 'failed', 'dropped')",
                (before,),
            )
            db.execute("DELETE FROM alert_silences WHERE ends_at < ?", (before,))
        return int(n)

    # -- silences ---------------------------------------------------------------------

    def add_silence(self, silence: dict[str, Any]) -> dict[str, Any]:
        """Store a silence; return it with its id."""
        silence = dict(silence, id=silence.get("id") or uuid.uuid4().hex)
        with self._tx() as db:
            db.execute(
                "INSERT INTO alert_silences(id, matchers, starts_at, ends_at, created_by, "
                "comment, created_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (
                    silence["id"],
                    json.dumps(silence["matchers"]),
                    silence["starts_at"],
                    silence["ends_at"],
                    silence["created_by"],
                    silence["comment"],
                    silence["created_at"],
                ),
            )
        return silence

    def silences(self) -> list[dict[str, Any]]:
        """Return every silence not deleted, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM alert_silences WHERE expired_at IS NULL ORDER BY created_at DESC"
            ).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            item["matchers"] = json.loads(item["matchers"])
            item.pop("expired_at")
            out.append(item)
        return out

    def expire_silence(self, silence_id: str, at: float) -> bool:
        """Delete (expire) a silence; return whether it existed."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE alert_silences SET expired_at=? WHERE id=? AND expired_at IS NULL",
                (at, silence_id),
            )
            return cur.rowcount > 0


def _group_data(group: Group) -> dict[str, Any]:
    return {
        "labels": group.labels,
        "created_at": group.created_at,
        "flushed_at": group.flushed_at,
        "sent_at": group.sent_at,
        "sent_firing": group.sent_firing,
        "dropped_firing": group.dropped_firing,
        "release_at": group.release_at,
        "alerts": [
            {
                "alert_id": a.alert_id,
                "rule": a.rule,
                "status": a.status,
                "payload": a.payload,
                "updated_at": a.updated_at,
            }
            for a in group.alerts.values()
        ],
    }


def _receipt(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "kind": row["kind"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "created_at": row["created_at"],
        "delivered_at": row["delivered_at"],
    }
