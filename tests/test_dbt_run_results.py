"""run_results.json → per-node records and the failure report (no dbt process needed)."""

from __future__ import annotations

import dagster as dg
import pytest

from dagctl_dagster.dbt.asset_factory import max_concurrent_models
from dagctl_dagster.dbt.run_results import RunResults

MANIFEST = {
    "nodes": {
        "seed.shop.raw_orders": {"original_file_path": "seeds/raw_orders.csv"},
        "model.shop.stg_orders": {"original_file_path": "models/stg_orders.sql"},
        "model.shop.orders": {"original_file_path": "models/orders.sql"},
        "model.shop.kpis": {"original_file_path": "models/kpis.sql"},
        "model.shop.other": {"original_file_path": "models/other.sql"},
        "test.shop.unique_orders_id.abc": {
            "original_file_path": "models/schema.yml",
            "depends_on": {"nodes": ["model.shop.orders"]},
        },
    },
    "parent_map": {
        "seed.shop.raw_orders": [],
        "model.shop.stg_orders": ["seed.shop.raw_orders"],
        "model.shop.orders": ["model.shop.stg_orders"],
        "model.shop.kpis": ["model.shop.orders"],
        "model.shop.other": ["seed.shop.raw_orders"],
        "test.shop.unique_orders_id.abc": ["model.shop.orders"],
    },
}


def result(unique_id, status, *, rows=None, message=None, seconds=0.25, failures=None):
    adapter_response = {"_message": "OK"} if rows is None else {"rows_affected": rows}
    return {
        "unique_id": unique_id,
        "status": status,
        "execution_time": seconds,
        "adapter_response": adapter_response,
        "message": message,
        "failures": failures,
    }


def test_node_results_carry_status_time_and_rows():
    results = RunResults.from_json(
        {
            "metadata": {"invocation_id": "inv-1"},
            "results": [
                result("seed.shop.raw_orders", "success", rows=200, seconds=0.5),
                result("model.shop.stg_orders", "success"),
                result("model.shop.other", "success", rows=-1),
            ],
        }
    )
    assert results.invocation_id == "inv-1"
    seed = results.node("seed.shop.raw_orders")
    assert (seed.name, seed.resource_type, seed.rows_affected) == ("raw_orders", "seed", 200)
    # Adapters that report nothing (or -1) give no rows_affected rather than a wrong number.
    assert results.node("model.shop.stg_orders").rows_affected is None
    assert results.node("model.shop.other").rows_affected is None
    assert results.outcome(MANIFEST).succeeded


def test_failed_model_names_its_file_and_the_models_skipped_because_of_it():
    results = RunResults.from_json(
        {
            "results": [
                result("seed.shop.raw_orders", "success", rows=200),
                result("model.shop.stg_orders", "error", message="Conversion Error:\n  bad value"),
                result("model.shop.orders", "skipped"),
                result("model.shop.kpis", "skipped"),
                result("model.shop.other", "success"),
            ]
        }
    )
    outcome = results.outcome(MANIFEST)
    assert not outcome.succeeded
    assert [n.name for n in outcome.failed] == ["stg_orders"]
    assert outcome.failed_models == ["model.shop.stg_orders"]
    assert outcome.failure_message("shop") == (
        "dbt build of project 'shop' failed:\n"
        "- model stg_orders (models/stg_orders.sql) error: Conversion Error: bad value\n"
        "skipped downstream: kpis (upstream stg_orders failed); orders (upstream stg_orders failed)"
    )


def test_failed_test_is_named_with_its_model_and_blocks_that_models_children():
    results = RunResults.from_json(
        {
            "results": [
                result("model.shop.orders", "success"),
                result("test.shop.unique_orders_id.abc", "fail", message="Got 3 results", failures=3),
                result("model.shop.kpis", "skipped"),
            ]
        }
    )
    outcome = results.outcome(MANIFEST)
    assert outcome.failed_models == ["model.shop.orders"]  # the model whose test failed
    message = outcome.failure_message("shop")
    assert "- test unique_orders_id on orders fail: Got 3 results" in message
    assert "skipped downstream: kpis (upstream unique_orders_id failed)" in message


@pytest.mark.parametrize(("raw", "expected"), [(None, 5), ("", 5), ("8", 8), (" 2 ", 2)])
def test_max_concurrent_models_sets_dbt_threads(raw, expected):
    environ = {} if raw is None else {"MAX_CONCURRENT_MODELS": raw}
    assert max_concurrent_models(environ) == expected


@pytest.mark.parametrize("raw", ["0", "-3", "five", "2.5"])
def test_invalid_max_concurrent_models_is_a_clear_error(raw):
    with pytest.raises(dg.Failure) as raised:
        max_concurrent_models({"MAX_CONCURRENT_MODELS": raw})
    assert raised.value.description.startswith(
        f"env var MAX_CONCURRENT_MODELS must be a positive integer such as 5 (got {raw!r})"
    )
