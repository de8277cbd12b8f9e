"""Slack delivery through the real slack_sdk client against the Slack Web API stub."""

from __future__ import annotations

import logging

import dagster as dg
import pytest
from alerts_helpers import SECRET_PASSWORD, SECRET_TOKEN, use_slack_stub
from slack_stub import INVALID_AUTH, OK, SlackStub, rate_limited

from dagctl_dagster.alerts.hooks import model_failure_hook
from dagctl_dagster.alerts.slack import DagctlSlackResource, wait_for_pending_messages
from dagctl_dagster.names import FAILED_MODELS_KEY

pytestmark = pytest.mark.timeout(60)

ERROR = "Binder Error: column amount not found"


@dg.asset(key=["analytics", "orders"])
def orders() -> None:
    # The secret in the error text must never reach Slack.
    raise RuntimeError(f"{ERROR}\nwhile connecting as admin:{SECRET_PASSWORD}")


@dg.asset(key=["analytics", "customers"])
def customers() -> None:
    pass


def alerting_job(
    project: str, assets: list, models_by_op: dict[str, str], channel: str | None = "#data-alerts"
) -> dg.JobDefinition:
    """``<project>_run`` over ``assets``, with the model-failure hook posting to ``channel``."""
    hook = model_failure_hook(project, channel, models_by_op)
    job = f"{project}_run"
    return dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job(job, selection=dg.AssetSelection.all(), hooks={hook})],
        resources={"slack": DagctlSlackResource()},
    ).resolve_job_def(job)


def run_failing_job(instance: dg.DagsterInstance, channel: str | None = "#data-alerts") -> dg.ExecuteInProcessResult:
    models_by_op = {"analytics__orders": "analytics/orders", "analytics__customers": "analytics/customers"}
    job = alerting_job("analytics", [orders, customers], models_by_op, channel)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert wait_for_pending_messages(30)
    return result


def test_failing_model_posts_one_message_with_project_model_run_and_error(monkeypatch):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        result = run_failing_job(instance)

    assert not result.success
    assert len(stub.messages) == 1
    message = stub.messages[0]
    assert message["channel"] == "#data-alerts"
    text = message["text"]
    assert "*analytics*" in text and "`analytics/orders`" in text
    assert result.run_id in text
    assert f"RuntimeError: {ERROR}" in text
    assert f"<http://dagster.test:3000/runs/{result.run_id}|Open the run in Dagster>" in text
    assert stub.post_attempts[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert SECRET_PASSWORD not in text and SECRET_TOKEN not in text


def test_rate_limited_then_ok_delivers_once(monkeypatch):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        stub.respond(rate_limited(retry_after=1), OK)
        use_slack_stub(monkeypatch, stub)
        result = run_failing_job(instance)

    assert [r.status for r in stub.post_attempts] == [429, 200]
    assert len(stub.messages) == 1
    assert result.run_id in stub.messages[0]["text"]


def test_invalid_auth_is_logged_and_leaves_the_run_unchanged(monkeypatch, caplog):
    with SlackStub(default=INVALID_AUTH) as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        with caplog.at_level(logging.ERROR, logger="dagctl_dagster.alerts"):
            result = run_failing_job(instance)
        events = instance.all_logs(result.run_id)
        status = instance.get_run_by_id(result.run_id).status

    assert len(stub.post_attempts) == 1 and stub.messages == []
    # the same outcome as without Slack: orders failed, customers materialized, hook did not error
    assert status == dg.DagsterRunStatus.FAILURE
    failed = {
        e.step_key for e in events if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
    }
    succeeded = {
        e.step_key for e in events if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS
    }
    assert failed == {"analytics__orders"} and succeeded == {"analytics__customers"}
    assert not [e for e in events if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.HOOK_ERRORED]
    assert "invalid_auth" in caplog.text and "check $SLACK_BOT_TOKEN" in caplog.text
    assert SECRET_TOKEN not in caplog.text


def test_without_token_the_alert_is_logged_not_sent(monkeypatch, caplog):
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub, token=None)
        with caplog.at_level(logging.WARNING, logger="dagctl_dagster.alerts"):
            result = run_failing_job(instance)

    assert stub.requests == []
    assert "Slack alert not sent ($SLACK_BOT_TOKEN is not set)" in caplog.text
    assert result.run_id in caplog.text and "analytics/orders" in caplog.text
    assert SECRET_PASSWORD not in caplog.text


def test_successful_run_posts_nothing(monkeypatch):
    job = alerting_job("analytics", [customers], {})
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        assert job.execute_in_process(instance=instance).success
        assert wait_for_pending_messages(10)
    assert stub.requests == []


def test_failure_of_a_multi_model_step_names_its_failed_models(monkeypatch):
    @dg.multi_asset(
        specs=[dg.AssetSpec(["shop", "stg_orders"]), dg.AssetSpec(["shop", "orders"])], name="shop_dbt_build"
    )
    def shop_dbt_build():
        raise dg.Failure(
            description="dbt build of project 'shop' failed",
            metadata={FAILED_MODELS_KEY: dg.MetadataValue.json(["shop/stg_orders", "shop/orders"])},
        )

    job = alerting_job("shop", [shop_dbt_build], {})
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        job.execute_in_process(instance=instance, raise_on_error=False)
        assert wait_for_pending_messages(30)

    (message,) = stub.messages
    assert "*shop* model `shop/stg_orders`, `shop/orders` failed in run" in message["text"]
    assert "shop_dbt_build" not in message["text"]
