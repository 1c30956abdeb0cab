"""Small statistics: medians, percentiles and latency summaries."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct`` percentile with linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def latency_summary(seconds: Sequence[float]) -> dict:
    """Count, p50, p99 and max of latencies given in seconds, reported in milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline`` rounded, or None when either is missing or the baseline is 0."""
    if value is None or not baseline:
        return None
    return round(value / baseline, 2)


def paired_ratio(subjects: Sequence[float], baselines: Sequence[float]) -> dict:
    """Median and spread (min-max) of per-round ``subject / baseline`` ratios of paired rounds.

    Each pair ran back to back under the same load, so a busy moment inflates both sides and
    cancels in the ratio; the spread says how much noise was left.
    """
    ratios = [subject / baseline for subject, baseline in zip(subjects, baselines, strict=True) if baseline]
    if not ratios:
        return {"median": None, "min": None, "max": None, "rounds": 0}
    return {
        "median": round(statistics.median(ratios), 2),
        "min": round(min(ratios), 2),
        "max": round(max(ratios), 2),
        "rounds": len(ratios),
    }
