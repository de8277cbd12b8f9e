"""Check names of a SQLMesh model's audits: one per audit application, unique per model."""

from __future__ import annotations

import dagster as dg
from sqlmesh.core.dialect import parse
from sqlmesh.core.model import load_sql_based_model

from dagctl_dagster.sqlmesh.translator import DagsterSQLMeshTranslator, audit_identity


def test_an_audit_applied_twice_gets_two_checks_and_the_factory_finds_each_by_its_arguments():
    model = load_sql_based_model(
        parse(
            """
            MODEL (
              name shop.orders,
              kind FULL,
              audits (not_null(columns := [id]), not_null(columns := [amount]), not_null(columns := [id]))
            );
            SELECT 1 AS id, 2 AS amount
            """
        )
    )
    translator = DagsterSQLMeshTranslator("shop")

    specs = translator.get_check_specs(model, dg.AssetKey(["shop", "orders"]))
    names = translator.get_check_names(model)

    assert [spec.name for spec in specs] == ["not_null", "not_null_2", "not_null_3"]
    # Two distinct applications (by arguments); SQLMesh reports each with its arguments.
    assert len(names) == 2 and set(names.values()) <= {spec.name for spec in specs}
    amount = next(identity for identity in names if "amount" in identity[1])
    assert amount[0] == "not_null" and names[amount] == "not_null_2"
    assert audit_identity("not_null", {}) == ("not_null", "")
