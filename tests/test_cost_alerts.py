"""The `cost:` block: a model that costs the warehouse far more than usual warns once, on the
tiered sensor's path; each run's totals are observed on `dagctl/<project>/runs`; the
executor's summary carries them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from alerts_helpers import SECRET_TOKEN, evaluate, use_slack_stub
from slack_stub import SlackStub

from dagctl_dagster.alerts.projects import ProjectLookup
from dagctl_dagster.alerts.slack import DagctlSlackResource, wait_for_pending_messages
from dagctl_dagster.alerts.tiered import alerts_key, runs_key, tiered_alert_sensor
from dagctl_dagster.config import load_config
from dagctl_dagster.execution.tally import Tally
from dagctl_dagster.names import ExecutorSummary

pytestmark = pytest.mark.timeout(120)

MODEL = dg.AssetKey(["analytics", "orders"])


def lookup(root: Path, cost: dict | None) -> ProjectLookup:
    path = root / ".dagctl" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 1,
        "alerts": {"warning_channel": "#warn", "cooldown_minutes": 60},
        "projects": [{"name": "analytics", "framework": "sqlmesh", "path": "."}],
    }
    if cost is not None:
        config["cost"] = cost
    path.write_text(yaml.safe_dump(config))
    return ProjectLookup(load_config(path, check_paths=False).config)


class Ticks:
    def __init__(self, instance, stub, projects: ProjectLookup):
        self.instance, self.stub = instance, stub
        self.sensor = tiered_alert_sensor(projects, model_keys={"analytics": [MODEL]}, state_keys={})
        self.defs = dg.Definitions(sensors=[self.sensor], resources={"slack": DagctlSlackResource()})
        self.cursor: str | None = None

    def materialize(self, queries: int, seconds: float) -> None:
        metadata = {"warehouse_queries": queries, "warehouse_query_s": seconds}
        self.instance.report_runless_asset_event(dg.AssetMaterialization(MODEL, metadata=metadata))

    def tick(self) -> list[dict]:
        before = len(self.stub.messages)
        self.cursor = evaluate(self.sensor, self.instance, self.defs, self.cursor)
        assert wait_for_pending_messages(30)
        return self.stub.messages[before:]


def test_a_model_sending_far_more_statements_than_usual_warns_once(monkeypatch, tmp_path):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        ticks = Ticks(instance, stub, lookup(tmp_path, {"queries_factor": 3, "query_time_factor": 3}))
        for _ in range(3):
            ticks.materialize(10, 0.1)
        assert ticks.tick() == []
        ticks.materialize(29, 0.2)  # 2.9× the statements, 2× the time: usual enough
        assert ticks.tick() == []
        ticks.materialize(100, 0.2)  # average of [10, 10, 10, 29] = 14.75 → 6.8×
        warned = ticks.tick()
        ticks.materialize(200, 0.2)  # still far above, within the cooldown
        again = ticks.tick()
        recorded = instance.fetch_observations(alerts_key("analytics"), limit=10).records

    assert [m["channel"] for m in warned] == ["#warn"]
    assert (
        "model analytics/orders cost the warehouse more than usual: 100 statements, 6.8× its average of 14.8 "
        "(average of 4 materializations)" in warned[0]["text"]
    )
    assert again == []
    assert [r.asset_observation.metadata["cause"].value for r in recorded] == ["warning:costly_model:analytics/orders"]
    assert all(SECRET_TOKEN not in str(m.params) for m in stub.post_attempts)


def test_statement_time_over_its_factor_warns_and_no_cost_block_never_does(monkeypatch, tmp_path):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        ticks = Ticks(instance, stub, lookup(tmp_path / "timed", {"query_time_factor": 2.5, "min_history": 2}))
        for _ in range(2):
            ticks.materialize(10, 0.4)
        ticks.tick()
        ticks.materialize(10, 1.2)  # 3× the time, same statements
        timed = ticks.tick()

    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        ticks = Ticks(instance, stub, lookup(tmp_path / "unset", None))
        for _ in range(3):
            ticks.materialize(10, 0.1)
        ticks.tick()
        ticks.materialize(1000, 100.0)
        unset = ticks.tick()

    assert len(timed) == 1 and "1.20s in statements, 3.0× its average of 0.40s" in timed[0]["text"]
    assert unset == []


def test_each_finished_run_observes_its_models_warehouse_totals(tmp_path):
    @dg.asset(key=["analytics", "a"])
    def a() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"warehouse_queries": 4, "warehouse_query_s": 0.25})

    @dg.asset(key=["analytics", "b"], deps=[a])
    def b() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"warehouse_queries": 7, "warehouse_query_s": 0.5})

    @dg.asset(key=["analytics", "c"])
    def c() -> None:  # not counted: left out of the totals, not a zero
        pass

    job = dg.define_asset_job("analytics_run", selection=dg.AssetSelection.all(), tags={"dagctl/project": "analytics"})
    uncounted_job = dg.define_asset_job(
        "analytics_run", selection=dg.AssetSelection.assets(c), tags={"dagctl/project": "analytics"}
    )
    with dg.instance_for_test() as instance:
        sensor = tiered_alert_sensor(lookup(tmp_path, None), model_keys={}, state_keys={})
        sensor_defs = dg.Definitions(sensors=[sensor], resources={"slack": DagctlSlackResource()})
        cursor = evaluate(sensor, instance, sensor_defs, None)
        dg.Definitions(assets=[a, b, c], jobs=[job]).resolve_job_def("analytics_run").execute_in_process(
            instance=instance
        )
        cursor = evaluate(sensor, instance, sensor_defs, cursor)
        dg.Definitions(assets=[a, b, c], jobs=[uncounted_job]).resolve_job_def("analytics_run").execute_in_process(
            instance=instance
        )
        evaluate(sensor, instance, sensor_defs, cursor)
        observed = instance.fetch_observations(runs_key("analytics"), limit=2, ascending=True).records

    counted, uncounted = (r.asset_observation.metadata for r in observed)
    assert counted["warehouse_queries"].value == 11 and counted["warehouse_query_s"].value == pytest.approx(0.75)
    assert isinstance(counted["warehouse_queries"], dg.IntMetadataValue)
    assert "warehouse_queries" not in uncounted and "warehouse_query_s" not in uncounted


def test_the_executor_summary_sums_its_materializations_and_reads_back():
    tally = Tally()
    tally.materialized("a_op", "a", {"warehouse_queries": dg.MetadataValue.int(3), "warehouse_query_s": 0.5})
    tally.materialized("b_op", "b", {"duration_s": 1.0})  # a model nothing was counted for
    tally.materialized("c_op", "c", {"warehouse_queries": 4, "warehouse_query_s": dg.MetadataValue.float(0.25)})
    summary = tally.summary(duration_s=2.0)
    uncounted = Tally().summary(duration_s=1.0)

    assert (summary.warehouse_queries, summary.warehouse_query_s) == (7, 0.75)
    assert ExecutorSummary.from_metadata(summary.metadata()) == summary
    assert "warehouse_queries" not in uncounted.metadata()
    assert ExecutorSummary.from_metadata(uncounted.metadata()) == uncounted
    assert ExecutorSummary.from_metadata({**summary.metadata(), "warehouse_queries": "many"}) is None
