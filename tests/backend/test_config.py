"""Settings and the API token."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from mlpulse.backend.config import BackendSettings, resolve_api_token


def test_token_generated_once_stored_0600_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = BackendSettings(data_dir=tmp_path)
    token = resolve_api_token(settings)
    path = tmp_path / "api-token"
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    assert str(path) in caplog.text
    assert token not in caplog.text
    assert resolve_api_token(settings) == token  # reused, not regenerated


def test_configured_token_wins(tmp_path: Path) -> None:
    settings = BackendSettings(data_dir=tmp_path, api_token="s3cret")
    assert resolve_api_token(settings) == "s3cret"
    assert not (tmp_path / "api-token").exists()
    assert "s3cret" not in repr(settings)


def test_settings_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLPULSE_MAX_SERIES", "12")
    monkeypatch.setenv("MLPULSE_RETENTION_10S", "3600")
    monkeypatch.setenv("MLPULSE_RETENTION_1H", "30d")
    monkeypatch.setenv("MLPULSE_SQLITE_SYNCHRONOUS", "FULL")
    s = BackendSettings()
    assert (s.data_dir, s.max_series, s.sqlite_synchronous) == (tmp_path, 12, "FULL")
    assert s.retention_seconds() == {10: 3600, 60: 7 * 86400, 3600: 30 * 86400}
    assert s.database_path == tmp_path / "mlpulse.db"
