"""The run-failure sensor and the tier rules on histories written to a real Dagster instance."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from alerts_helpers import (
    SECRET_PASSWORD,
    SECRET_TOKEN,
    backdated_observation,
    backdated_run,
    evaluate,
    small_job,
    use_slack_stub,
    write_config,
)
from slack_stub import SlackStub

from dagctl_dagster.alerts.heard import alerted_by
from dagctl_dagster.alerts.hooks import model_failure_hook
from dagctl_dagster.alerts.projects import ProjectLookup
from dagctl_dagster.alerts.run_failure import slack_run_failure_sensor
from dagctl_dagster.alerts.slack import DagctlSlackResource, wait_for_pending_messages
from dagctl_dagster.alerts.state_size import state_key
from dagctl_dagster.alerts.tiered import alerts_key, tiered_alert_sensor

pytestmark = pytest.mark.timeout(90)

ALERTS = {
    "failure_channel": "#failures",
    "page_channel": "#page",
    "warning_channel": "#warn",
    "cooldown_minutes": 60,
}
DAY = 24 * 3600
MODEL = dg.AssetKey(["analytics", "orders"])


class Harness:
    """Definitions around one sensor, evaluated tick by tick with a persisted cursor."""

    def __init__(self, instance, stub, tmp_path, alerts=ALERTS, sensor_kind="tiered"):
        self.instance, self.stub = instance, stub
        self.lookup = ProjectLookup(write_config(tmp_path, alerts).config)
        self.run_job = small_job("analytics_run", {"dagctl/project": "analytics"})
        self.janitor_job = small_job("analytics_janitor")
        self.sensor = self.build_sensor(sensor_kind)
        self.cursor: str | None = None

    def build_sensor(self, kind: str) -> dg.SensorDefinition:
        if kind == "run_failure":
            return slack_run_failure_sensor(self.lookup)
        return tiered_alert_sensor(
            self.lookup, model_keys={"analytics": [MODEL]}, state_keys={"analytics": state_key("analytics")}
        )

    def tick(self) -> list[dict]:
        before = len(self.stub.messages)
        defs = dg.Definitions(
            jobs=[self.run_job, self.janitor_job],
            sensors=[self.sensor],
            resources={"slack": DagctlSlackResource()},
        )
        self.cursor = evaluate(self.sensor, self.instance, defs, self.cursor)
        assert wait_for_pending_messages(30)
        return self.stub.messages[before:]

    def restart(self) -> None:
        """A new sensor object (daemon / code server restart); only the cursor carries over."""
        self.sensor = self.build_sensor("tiered")

    def runs(self, *durations: float, days_ago: float = 1, **kwargs) -> None:
        for duration in durations:
            end = time.time() - days_ago * DAY
            backdated_run(self.instance, self.run_job, start=end - duration, end=end, **kwargs)

    def new_run(self, duration: float) -> dg.DagsterRun:
        now = time.time()
        return backdated_run(self.instance, self.run_job, start=now - duration, end=now)


@pytest.fixture
def harness(monkeypatch, tmp_path):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        h = Harness(instance, stub, tmp_path)
        yield h
    for message in stub.post_attempts:
        text = str(message.params)
        assert SECRET_TOKEN not in text and SECRET_PASSWORD not in text


def test_run_failure_outside_steps_posts_from_the_sensor(monkeypatch, tmp_path):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        h = Harness(instance, stub, tmp_path, sensor_kind="run_failure")
        assert h.tick() == []  # the first tick only records where the event log stands
        run = instance.create_run_for_job(h.run_job, tags={"dagctl/project": "analytics"})
        instance.report_run_failed(run, f"Run worker pod OOMKilled (exit 137); env had {SECRET_PASSWORD}")
        messages = h.tick()
        assert h.tick() == []  # reported once

    assert len(messages) == 1
    assert messages[0]["channel"] == "#failures"
    text = messages[0]["text"]
    assert "*analytics*" in text and run.run_id in text and "analytics_run" in text
    assert "failed outside any model step" in text
    assert "Run worker pod OOMKilled (exit 137)" in text and SECRET_PASSWORD not in text
    assert f"http://dagster.test:3000/runs/{run.run_id}" in text


def test_run_failure_sensor_leaves_runs_a_failure_hook_posted(monkeypatch, tmp_path):
    @dg.op
    def broken():
        raise ValueError("bad row")

    @dg.op
    def also_broken():
        raise ValueError("bad column")

    hook = model_failure_hook("analytics", "#failures", {})

    @dg.job(name="analytics_run", tags={"dagctl/project": "analytics"}, hooks={hook})
    def failing():
        broken()
        also_broken()

    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        h = Harness(instance, stub, tmp_path, sensor_kind="run_failure")
        h.run_job = dg.Definitions(jobs=[failing], resources={"slack": DagctlSlackResource()}).resolve_job_def(
            "analytics_run"
        )
        h.tick()
        result = h.run_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        assert wait_for_pending_messages(30)
        assert len(stub.messages) == 1  # the first failed step's; the second step's hook stays quiet
        assert h.tick() == []
        assert alerted_by(instance.get_run_by_id(result.run_id)).startswith("step ")


def test_a_retry_that_copied_its_parents_alerted_tag_is_still_posted(monkeypatch, tmp_path):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        h = Harness(instance, stub, tmp_path, sensor_kind="run_failure")
        h.tick()
        parent = instance.create_run_for_job(h.run_job, tags={"dagctl/project": "analytics"})
        instance.report_run_failed(parent, "first attempt failed")
        assert len(h.tick()) == 1
        # Dagster's automatic retry (and "Re-execute" with the parent's tags) copies every tag.
        tags = instance.get_run_by_id(parent.run_id).tags
        retry = instance.create_run_for_job(h.run_job, tags={**tags, "dagster/parent_run_id": parent.run_id})
        instance.report_run_failed(retry, "second attempt failed")
        [message] = h.tick()
        assert retry.run_id in message["text"] and "second attempt failed" in message["text"]
        assert h.tick() == []


def test_scheduled_run_failing_after_its_retries_pages(harness):
    harness.tick()
    scheduled = {"dagster/schedule_name": "analytics_run_schedule", "dagster/max_retries": "2"}
    for tags in ({**scheduled, "dagster/retry_number": "1"}, {"dagster/max_retries": "0"}):
        run = harness.instance.create_run_for_job(harness.run_job, tags=tags)
        harness.instance.report_run_failed(run, "boom")
    assert harness.tick() == []  # a retry is still to come / not a scheduled run

    run = harness.instance.create_run_for_job(harness.run_job, tags={**scheduled, "dagster/retry_number": "2"})
    harness.instance.report_run_failed(run, "boom")
    messages = harness.tick()
    assert [m["channel"] for m in messages] == ["#page"]
    assert (
        "[page] *analytics*: scheduled run of analytics_run (schedule analytics_run_schedule) "
        "failed after 3 attempt(s)" in messages[0]["text"]
    )
    assert run.run_id in messages[0]["text"]


def test_run_slower_than_twice_the_weekly_average_warns_and_cooldown_holds(harness):
    harness.runs(100, 100, 100, days_ago=2)
    harness.runs(100, days_ago=9)  # outside the 7-day window: not part of the average
    harness.tick()
    harness.new_run(190)
    assert harness.tick() == []  # 1.9× the average of 100s

    slow = harness.new_run(250)  # average of [100, 100, 100, 190] = 122.5 → 2.04×
    messages = harness.tick()
    assert [m["channel"] for m in messages] == ["#warn"]
    assert "run of analytics_run took 250s, 2.0× the 7-day average of 122s (4 successful runs)" in messages[0]["text"]
    assert slow.run_id in messages[0]["text"]

    harness.restart()
    harness.new_run(900)
    assert harness.tick() == []  # same cause within the cooldown, also after a restart
    recorded = harness.instance.fetch_observations(alerts_key("analytics"), limit=10).records
    assert [r.asset_observation.metadata["cause"].value for r in recorded] == ["warning:slow_run:analytics_run"]


def test_cooldown_expires(monkeypatch, tmp_path):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        h = Harness(instance, stub, tmp_path, alerts={**ALERTS, "cooldown_minutes": 0})
        h.runs(10, 10, 10)
        h.tick()
        h.new_run(100)
        assert len(h.tick()) == 1
        h.new_run(200)
        assert len(h.tick()) == 1  # no cooldown window: the same cause posts again


def test_model_slower_than_three_times_its_average_warns(harness):
    def materialize(duration: float) -> None:
        harness.instance.report_runless_asset_event(
            dg.AssetMaterialization(MODEL, metadata={"duration_s": dg.MetadataValue.float(duration)})
        )

    for duration in (1.0, 1.0, 1.0):
        materialize(duration)
    harness.tick()
    materialize(2.9)
    assert harness.tick() == []
    materialize(5.0)  # average of [1, 1, 1, 2.9] = 1.475 → 3.4×
    messages = harness.tick()
    assert [m["channel"] for m in messages] == ["#warn"]
    assert "model analytics/orders took 5.0s, 3.4× its average of 1.5s over 4 materializations" in messages[0]["text"]


def test_state_growth_over_twenty_percent_week_over_week_warns(harness):
    key = state_key("analytics")
    backdated_observation(harness.instance, key, {"reachable": True, "size_bytes": 1000}, time.time() - 8 * DAY)
    harness.tick()
    harness.instance.report_runless_asset_event(
        dg.AssetObservation(key, metadata={"reachable": True, "size_bytes": 1150})
    )
    assert harness.tick() == []
    harness.instance.report_runless_asset_event(
        dg.AssetObservation(key, metadata={"reachable": True, "size_bytes": 1250})
    )
    messages = harness.tick()
    assert [m["channel"] for m in messages] == ["#warn"]
    assert "SQLMesh state database grew 25% in a week (1,000 → 1,250 bytes)" in messages[0]["text"]


def test_janitor_completion_is_recorded_and_not_posted_without_info_channel(harness):
    harness.tick()
    backdated_run(harness.instance, harness.janitor_job, start=time.time() - 5, end=time.time())
    assert harness.tick() == []
    recorded = harness.instance.fetch_observations(alerts_key("analytics"), limit=10).records
    assert len(recorded) == 1
    metadata = recorded[0].asset_observation.metadata
    assert metadata["tier"].value == "info"
    assert metadata["summary"].value == "janitor run of analytics_janitor completed"


def test_backfill_in_prod_posts_to_the_info_channel(monkeypatch, tmp_path):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        h = Harness(instance, stub, tmp_path, alerts={**ALERTS, "info_channel": "#info"})
        h.tick()
        backdated_run(instance, h.run_job, start=time.time() - 5, end=time.time(), tags={"dagster/backfill": "abcd"})
        messages = h.tick()
    assert [m["channel"] for m in messages] == ["#info"]
    assert "[info] *analytics*: backfill abcd applied in prod" in messages[0]["text"]
