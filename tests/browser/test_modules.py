"""The page's pure modules (formatting, steps, histogram re-binning), run in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from browser_testing import PageProbe

pytestmark = pytest.mark.browser

MARKUP_LABELS = False
HISTORY_MINUTES = 0  # the page only hosts the modules here

DASH = "\u2013"  # en dash, between a range's ends
MINUS = "\u2212"  # the minus sign of signed percentages


def run(page: PageProbe, module: str, body: str) -> Any:
    """Import `module` in the page and evaluate `body` (an async function of it)."""
    return page.page.evaluate(
        f"async () => {{ const m = await import('/js/{module}'); return ({body})(m); }}"
    )


def test_formatting(page: PageProbe) -> None:
    got = run(
        page,
        "format.js",
        """(f) => ({
            ms: [f.ms(0.4213), f.ms(8.26), f.ms(212.4), f.ms(1840), f.ms(12500), f.ms(null)],
            range: [f.msRange(208.2, 217.4), f.msRange(192.71, 192.74), f.msRange(2480, 2590)],
            pct: [f.pct(1.2345), f.signedPct(12.34), f.signedPct(-3.21), f.signedPct(0)],
            count: [f.count(12345), f.count(12.5), f.count(23456789)],
            duration: [f.duration(59), f.duration(3599), f.duration(7342), f.duration(90061)],
            axis: [f.axis(150), f.axis(2.5), f.axis(0.125), f.axis(12500), f.axis(3.2e6)],
        })""",
    )
    assert got["ms"] == ["0.42 ms", "8.26 ms", "212 ms", "1.84 s", "12.5 s", "—"]
    assert got["range"] == [f"208{DASH}217", f"192.71{DASH}192.74", f"2.48 s{DASH}2.59 s"]
    assert got["pct"] == ["1.23 %", "+12.3 %", f"{MINUS}3.2 %", "±0.0 %"]
    assert got["count"] == ["12,345", "12.5", "23.5M"]
    assert got["duration"] == ["59s", "59m 59s", "2h 2m", "1d 1h"]
    assert got["axis"] == ["150", "2.5", "0.125", "12.5k", "3.2M"]


def test_steps_follow_the_stored_resolutions(page: PageProbe) -> None:
    steps = run(
        page,
        "timerange.js",
        "(t) => [900, 3600, 21600, 86400, 604800].map((s) => t.stepFor(s))",
    )
    assert steps == [10, 30, 300, 600, 7200]


def test_rebinning_keeps_every_count(page: PageProbe) -> None:
    buckets = [
        {"lower": 0.001 * 1.05**i, "upper": 0.001 * 1.05 ** (i + 1), "count": (i * 7) % 11}
        for i in range(120)
    ]
    bins = run(page, "panels/graphs.js", f"(g) => g.rebin({buckets!r}, 1000)")
    assert sum(b["count"] for b in bins) == sum(b["count"] for b in buckets)
    assert bins[0]["label"].startswith("≤")
    assert run(page, "panels/graphs.js", "(g) => g.rebin([], 1000)") == []
