"""Live figures: queries from the dashboard catalogue, parsing, status with fresh and stale figures."""

from __future__ import annotations

import pytest

from llm_operator import live_metrics
from llm_operator.constants import Reason
from llm_operator.crd import PRINTER_COLUMNS
from llm_operator.models import parse_spec
from llm_operator.render.common import Owner
from llm_operator.render.dashboards import build_dashboard
from llm_operator.settings import from_env
from llm_operator.status import Observed, Verdict, compute_status, with_metrics


def _vector(*values: str) -> dict[str, object]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, v]} for v in values]},
    }


def test_every_figure_is_a_dashboard_query() -> None:
    owner = Owner("m", "ns", "u")
    exprs = {
        target["expr"].replace("$__rate_interval", "2m")
        for panel in build_dashboard(owner, parse_spec({"model": {"id": "a/b"}}))["panels"]
        for target in panel["targets"]
    }
    assert set(live_metrics.queries("m", "ns", "2m").values()) <= exprs


def test_first_value_parses_numbers_and_treats_empty_and_nan_as_missing() -> None:
    assert live_metrics.first_value(_vector("1.5")) == 1.5
    assert live_metrics.first_value(_vector()) is None
    assert live_metrics.first_value(_vector("NaN")) is None
    assert live_metrics.first_value(_vector("+Inf")) is None
    with pytest.raises(live_metrics.PrometheusError, match="bad_data"):
        live_metrics.first_value({"status": "error", "errorType": "bad_data", "error": "parse error"})


def test_figures_are_rounded_and_kv_cache_in_percent() -> None:
    values = {
        "requestsPerSecond": 1.23456,
        "ttftP50Seconds": 0.0123456,
        "outputTokensPerSecond": None,
        "kvCacheUsagePercent": 0.123456,
    }
    assert live_metrics.figures(values) == {
        "requestsPerSecond": 1.23,
        "ttftP50Seconds": 0.0123,
        "outputTokensPerSecond": None,
        "kvCacheUsagePercent": 12.3,
    }


def test_sample_against_nothing_listening_raises_prometheus_error() -> None:
    from llm_serving.local import free_port

    with pytest.raises(live_metrics.PrometheusError, match="unreachable"):
        live_metrics.sample(f"http://127.0.0.1:{free_port()}", "m", "ns", window="1m")


def test_with_metrics_sets_figures_and_condition_then_keeps_them_stale() -> None:
    figures = {
        "requestsPerSecond": 2.0,
        "ttftP50Seconds": 0.1,
        "outputTokensPerSecond": 50.0,
        "kvCacheUsagePercent": 3.0,
    }
    fresh = with_metrics(
        {"phase": "Ready", "conditions": []},
        figures=figures,
        verdict=Verdict(True, Reason.SAMPLED, "ok"),
        generation=3,
        now="t1",
    )
    assert fresh["metrics"] == {**figures, "sampleTime": "t1"}
    assert fresh["phase"] == "Ready"
    (cond,) = fresh["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "MetricsAvailable",
        "True",
        "Sampled",
        3,
    )

    stale = with_metrics(
        fresh, figures=None, verdict=Verdict(False, Reason.PROMETHEUS_UNREACHABLE, "down"), generation=3, now="t2"
    )
    assert stale["metrics"] == fresh["metrics"]
    (cond,) = stale["conditions"]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == ("False", "PrometheusUnreachable", "t2")


def test_reconcile_status_keeps_figures_and_their_condition() -> None:
    previous = with_metrics(
        {}, figures={"requestsPerSecond": 1.0}, verdict=Verdict(True, Reason.SAMPLED), generation=1, now="t0"
    )
    status = compute_status(
        name="m",
        namespace="ns",
        generation=1,
        min_replicas=1,
        observed=Observed(None, Verdict(True, Reason.MONITORS_APPLIED)),
        previous=previous,
        now="t1",
    )
    assert status["metrics"] == previous["metrics"]
    assert [c["type"] for c in status["conditions"]][-1] == "MetricsAvailable"


def test_printer_columns_show_live_figures_only_in_wide_output() -> None:
    live = [col for col in PRINTER_COLUMNS if col["jsonPath"].startswith(".status.metrics.")]
    assert {col["jsonPath"].rsplit(".", 1)[1] for col in live} == {*live_metrics.FIGURES, "sampleTime"}
    assert all(col.get("priority") == 1 for col in live)


def test_metrics_settings_from_environment() -> None:
    settings = from_env({"LLMOP_METRICS_SECONDS": "5", "LLMOP_METRICS_WINDOW": "1m"})
    assert (settings.metrics_seconds, settings.metrics_window) == (5, "1m")
