"""Regression guard, pure: a new generation's figures over a window after its switch against the last good
generation's over the same length before the upgrade began.

The figures are the dashboards' own (`render.panels`): TTFT p90 and the share of the Serve app's HTTP
requests answered with an error (client disconnects, 499, are not errors of the model's). A window with
fewer than `min_requests` completions on either side is no evidence, so it never rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figures:
    """One window's figures; None where Prometheus has no series."""

    requests: float | None
    ttft_p90_s: float | None
    error_ratio: float | None

    def describe(self) -> str:
        ttft = "n/a" if self.ttft_p90_s is None else f"{self.ttft_p90_s * 1000:.0f} ms"
        errors = "n/a" if self.error_ratio is None else f"{self.error_ratio:.1%}"
        return f"TTFT p90 {ttft}, errors {errors}, {self.requests or 0:.0f} requests"


@dataclass(frozen=True)
class Bounds:
    """How much worse a new generation may be: TTFT p90 as a ratio, errors as an added share of requests."""

    max_ttft_p90_ratio: float
    max_error_ratio_increase: float
    min_requests: int


def comparable(baseline: Figures, new: Figures, bounds: Bounds) -> bool:
    """Whether both windows had `min_requests` completions: enough evidence to compare them."""
    return min(baseline.requests or 0, new.requests or 0) >= bounds.min_requests


def breaches(baseline: Figures, new: Figures, bounds: Bounds) -> list[str]:
    """What `new` breaches against `baseline` (empty: within bounds, or too few requests to tell)."""
    if not comparable(baseline, new, bounds):
        return []
    found = []
    if new.ttft_p90_s is not None and baseline.ttft_p90_s:
        ratio = new.ttft_p90_s / baseline.ttft_p90_s
        if ratio > bounds.max_ttft_p90_ratio:
            found.append(f"TTFT p90 {ratio:.1f}x the last good one's (bound {bounds.max_ttft_p90_ratio:g}x)")
    if new.error_ratio is not None:
        added = new.error_ratio - (baseline.error_ratio or 0.0)
        if added > bounds.max_error_ratio_increase:
            found.append(f"errors +{added:.1%} of requests (bound +{bounds.max_error_ratio_increase:.1%})")
    return found


def verdict(baseline: Figures, new: Figures, bounds: Bounds, seconds: int) -> tuple[bool, bool, str]:
    """Whether `new` regressed against `baseline`, whether the windows could be compared at all, and a
    message with the figures."""
    figures = f"over {seconds}s: {new.describe()}; last good: {baseline.describe()}"
    if not comparable(baseline, new, bounds):
        return False, False, f"not compared, fewer than {bounds.min_requests} requests in a window {figures}"
    found = breaches(baseline, new, bounds)
    return bool(found), True, "; ".join([*found, figures]) if found else f"within bounds {figures}"
