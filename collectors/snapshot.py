"""Cached metric values: what one refresh of a part (PostgreSQL, catalog, repository,
host) found, ready to be rendered by a scrape without doing any work."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from collectors.metrics import BY_NAME

Labels = tuple[str, ...]


@dataclass
class Histogram:
    """Cumulative bucket counts (one per bound, +Inf is ``count``), count and sum."""

    bounds: tuple[float, ...]
    buckets: list[int]
    count: int = 0
    total: float = 0.0

    @classmethod
    def of(cls, bounds: tuple[float, ...], observations: Iterable[float]) -> Histogram:
        histogram = cls(bounds, [0] * len(bounds))
        for value in observations:
            histogram.count += 1
            histogram.total += value
            for i in range(bisect.bisect_left(bounds, value), len(bounds)):
                histogram.buckets[i] += 1
        return histogram


@dataclass
class Snapshot:
    values: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, Histogram]] = field(default_factory=dict)

    def set(self, name: str, value: float | None, **labels: str) -> None:
        """Set a sample; ``None`` is exported as NaN (known series, unknown value)."""
        self.values.setdefault(name, {})[_labels(name, labels)] = (
            math.nan if value is None else float(value))

    def add(self, name: str, value: float, **labels: str) -> None:
        series = self.values.setdefault(name, {})
        key = _labels(name, labels)
        series[key] = series.get(key, 0.0) + value

    def histogram(self, name: str, observations: Iterable[float], **labels: str) -> None:
        metric = BY_NAME[name]
        key = _labels(name, labels)
        existing = self.histograms.setdefault(name, {}).get(key)
        fresh = Histogram.of(metric.buckets, observations)
        if existing is not None:
            fresh.buckets = [a + b for a, b in zip(existing.buckets, fresh.buckets, strict=True)]
            fresh.count += existing.count
            fresh.total += existing.total
        self.histograms[name][key] = fresh

    def merge(self, other: Snapshot) -> None:
        for name, series in other.values.items():
            self.values.setdefault(name, {}).update(series)
        for name, hists in other.histograms.items():
            self.histograms.setdefault(name, {}).update(hists)


def _labels(name: str, labels: dict[str, str]) -> Labels:
    metric = BY_NAME[name]  # KeyError: a metric that is not defined in collectors.metrics
    if set(labels) != set(metric.labels):
        raise ValueError(f"{name} takes labels {metric.labels}, not {tuple(labels)}")
    return tuple(str(labels[label]) for label in metric.labels)
