"""A job whose slow model watches the claim store while a fast sibling finishes.

`DAGCTL_TEST_RECORD` names a JSON file the slow model writes: the claims it saw when the
fast model's claim was gone (or when it gave up waiting, after `WAIT_SECONDS`).
"""

from __future__ import annotations

import json
import os
import time

import dagster as dg

from dagctl_dagster.execution.claims import ClaimStore
from dagctl_dagster.execution.executor import claim_aware_executor

WAIT_SECONDS = 30.0


@dg.asset(key_prefix=["release"])
def fast() -> None:
    return None


@dg.asset(key_prefix=["release"])
def slow(context) -> None:  # an AssetExecutionContext
    store = ClaimStore.from_environment(instance=context.instance)
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        while True:
            held = {claim.model: claim.run_id for claim in store.list_claims()}
            if "release/fast" not in held or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        store.dispose()
    with open(os.environ["DAGCTL_TEST_RECORD"], "w") as handle:
        json.dump({"held_while_slow_ran": held, "run_id": context.run_id}, handle)


release_job = dg.define_asset_job(
    "release", selection=dg.AssetSelection.assets(fast, slow), executor_def=claim_aware_executor
)

defs = dg.Definitions(assets=[fast, slow], jobs=[release_job])


def get_release_job() -> dg.JobDefinition:
    return defs.resolve_job_def("release")
