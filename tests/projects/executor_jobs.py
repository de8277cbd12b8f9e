"""Small jobs for executor tests: each asset records when it starts and ends.

`DAGCTL_TEST_RECORD` names a JSON-lines file that every asset appends
{"model", "event": "start"|"end", "t"} to; `DAGCTL_TEST_FAIL` names assets that raise;
`DAGCTL_TEST_FLAKY` names assets that fail on their first attempt only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import dagster as dg

from dagctl_dagster.execution.executor import claim_aware_executor

_write_lock = threading.Lock()
SLEEP_SECONDS = float(os.environ.get("DAGCTL_TEST_SLEEP", "0.4"))


def _record(model: str, event: str) -> None:
    path = os.environ.get("DAGCTL_TEST_RECORD")
    if not path:
        return
    with _write_lock, open(path, "a") as handle:
        handle.write(json.dumps({"model": model, "event": event, "t": time.time()}) + "\n")


def _model(name: str, deps: list[str], retry: bool = False) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        key_prefix=["exec"],
        deps=[dg.AssetKey(["exec", d]) for d in deps],
        retry_policy=dg.RetryPolicy(max_retries=1) if retry else None,
    )
    def _asset(context) -> dg.MaterializeResult:
        _record(name, "start")
        time.sleep(SLEEP_SECONDS)
        _record(name, "end")
        if name in os.environ.get("DAGCTL_TEST_FAIL", "").split(","):
            raise RuntimeError(f"model {name} failed on purpose")
        flaky_marker = Path(os.environ.get("DAGCTL_TEST_RECORD", "/nonexistent") + f".{name}.tried")
        if name in os.environ.get("DAGCTL_TEST_FLAKY", "").split(",") and not flaky_marker.exists():
            flaky_marker.touch()
            raise RuntimeError(f"model {name} fails on its first attempt")
        return dg.MaterializeResult(metadata={"duration_s": SLEEP_SECONDS})

    return _asset


# Wide: ten independent models, then two joins.
WIDE = [_model(f"w{i}", []) for i in range(10)] + [_model("join_a", ["w0", "w1"]), _model("join_b", ["w2", "w3"])]
# Failure: root -> bad -> after_bad -> after_after; root -> good -> after_good; lone.
FAILURE = [
    _model("root", []),
    _model("bad", ["root"]),
    _model("after_bad", ["bad"]),
    _model("after_after", ["after_bad"]),
    _model("good", ["root"], retry=True),
    _model("after_good", ["good"]),
    _model("lone", []),
]

wide_job = dg.define_asset_job("wide", selection=dg.AssetSelection.assets(*WIDE), executor_def=claim_aware_executor)
failure_job = dg.define_asset_job(
    "failure", selection=dg.AssetSelection.assets(*FAILURE), executor_def=claim_aware_executor
)

defs = dg.Definitions(assets=[*WIDE, *FAILURE], jobs=[wide_job, failure_job])


def get_wide_job() -> dg.JobDefinition:
    return defs.resolve_job_def("wide")


def get_failure_job() -> dg.JobDefinition:
    return defs.resolve_job_def("failure")
