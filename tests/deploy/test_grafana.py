"""deploy/grafana/voxbus.json: a well-formed dashboard over metrics voxbus really exports."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.conftest import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "voxbus.json"

REQUIRED = (
    "voxbus_stage_records_total",
    "voxbus_stage_processing_seconds",
    "voxbus_stage_hop_seconds",
    "voxbus_dead_letters_total",
    "voxbus_stage_emitted_total",
    "voxbus_stage_ready",
    "voxbus_active_sessions",
    "voxbus_turns_total",
    "voxbus_voice_to_voice_seconds",
    "voxbus_turn_stage_seconds",
    "voxbus_ingress_rejections_total",
    "kafka_consumergroup_lag",
)


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def exported_metrics() -> set[str]:
    """Sample names of the Prometheus metrics the stages and the ingress define."""
    from prometheus_client import REGISTRY

    import ingress.metrics  # noqa: F401  (registers the ingress metrics)
    import processors.metrics  # noqa: F401  (registers the stage metrics)

    return {
        sample.name
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name.startswith("voxbus_")
    } | {
        # histograms and counters with no sample yet still expose these names
        f"{metric.name}{suffix}"
        for metric in REGISTRY.collect()
        if metric.name.startswith("voxbus_")
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }


def test_uses_the_pipeline_metrics(dashboard: dict) -> None:
    text = "\n".join(expressions(dashboard))
    for metric in REQUIRED:
        assert re.search(rf"\b{metric}(_bucket)?\b", text), metric


def test_every_voxbus_metric_exists(dashboard: dict) -> None:
    exported = exported_metrics()
    for expr in expressions(dashboard):
        for name in re.findall(r"\bvoxbus_[a-z_]+\b", expr):
            assert name in exported, f"{name} is not exported by voxbus"


def test_lag_is_per_consumer_group(dashboard: dict) -> None:
    lag = [e for e in expressions(dashboard) if "kafka_consumergroup_lag" in e]
    assert lag and all("by (consumergroup" in e for e in lag)


def test_layout(dashboard: dict) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"datasource"}
    boxes = []
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        box = (grid["x"], grid["y"], grid["x"] + grid["w"], grid["y"] + grid["h"])
        for other in boxes:
            assert box[2] <= other[0] or other[2] <= box[0] or box[3] <= other[1] or other[3] <= box[1], (
                f"panel {panel['id']} overlaps another"
            )
        boxes.append(box)
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(
            t["expr"].count("(") == t["expr"].count(")") for t in panel["targets"]
        )


def faust_sensor_metrics() -> set[str]:
    """Sample names of faust's Prometheus sensor with the prefix the dashboard expects ("faust")."""
    from faust.sensors.prometheus import FaustMetrics
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    FaustMetrics.create(registry, "faust")
    return {
        f"{metric.name}{suffix}"
        for metric in registry.collect()
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }


def test_faust_panels_use_the_sensors_metric_names(dashboard: dict) -> None:
    exported = faust_sensor_metrics()
    used = {name for expr in expressions(dashboard) for name in re.findall(r"\bfaust_[a-z_]+\b", expr)}
    assert {
        "faust_topic_partition_end_offset",
        "faust_total_rebalances",
        "faust_consumer_commit_latency_bucket",
        "faust_producer_send_latency_bucket",
    } <= used
    assert used <= exported, sorted(used - exported)


def test_keda_lag_panel_pairs_each_group_with_its_input_topic(dashboard: dict) -> None:
    from processors.runtime import STAGES
    from tests.deploy.test_consistency import stage_input

    [panel] = [p for p in panels(dashboard) if "what KEDA scales on" in p["title"]]
    [target] = panel["targets"]
    pairs = set(re.findall(r'consumergroup="([^"]+)", topic="([^"]+)"', target["expr"]))
    assert pairs == {(f"voxbus-{stage}", stage_input(stage).name) for stage in STAGES}


def test_a_panel_per_turn_latency_span(dashboard: dict) -> None:
    [span] = [v for v in dashboard["templating"]["list"] if v["name"] == "span"]
    assert "voxbus_turn_stage_seconds" in span["definition"] and span["includeAll"]
    [panel] = [p for p in panels(dashboard) if p.get("repeat") == "span"]
    assert all('span=~"$span"' in t["expr"] for t in panel["targets"])
