"""Pins the Dagster private behaviour the executor adapter relies on.

When Dagster is upgraded, this file says what changed before any run does.
"""

from __future__ import annotations

import dagster as dg
import pytest
from dagster import DagsterInstance

from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.execution.executor import claim_aware_executor

HOOK_CALLS: list[str] = []


def test_dagster_is_the_tested_minor_version():
    assert ".".join(dg.__version__.split(".")[:2]) == adapter.TESTED_DAGSTER_MINOR


def test_active_execution_keeps_the_state_the_adapter_reads():
    plan_state = adapter.ActiveExecution.__init__.__code__.co_names
    for attribute in ("_abandoned", "_failed", "_skipped", "_in_flight"):
        assert attribute in plan_state, f"ActiveExecution no longer has {attribute}"
    for method in ("get_steps_to_execute", "plan_events_iterator", "handle_event", "mark_skipped", "verify_complete"):
        assert callable(getattr(adapter.ActiveExecution, method))


@dg.failure_hook(name="record_failure")
def record_failure(context: dg.HookContext):
    HOOK_CALLS.append(f"failure:{context.op.name}")


@dg.success_hook(name="record_success")
def record_success(context: dg.HookContext):
    HOOK_CALLS.append(f"success:{context.op.name}")


@dg.asset
def fine() -> None:
    return None


@dg.asset(deps=[fine])
def broken() -> None:
    raise RuntimeError("broken on purpose")


hooked_job = dg.define_asset_job(
    "hooked", selection=[fine, broken], executor_def=claim_aware_executor, hooks={record_failure, record_success}
)
defs = dg.Definitions(assets=[fine, broken], jobs=[hooked_job])


def get_hooked_job() -> dg.JobDefinition:
    return defs.resolve_job_def("hooked")


@pytest.mark.timeout(120)
def test_hooks_run_for_steps_the_executor_runs_in_threads(dagster_home):
    HOOK_CALLS.clear()
    with DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(get_hooked_job), instance, raise_on_error=False)
        hook_events = [e.event_type_value for e in result.all_events if e.event_type_value.startswith("HOOK")]
    assert not result.success
    assert sorted(HOOK_CALLS) == ["failure:broken", "success:fine"]
    assert hook_events.count("HOOK_COMPLETED") == 2
