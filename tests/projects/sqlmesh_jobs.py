"""The `<project>_run` job of a `.dagctl/config.yaml`, reconstructable for in-process runs.

`DAGCTL_TEST_CONFIG` names the config file and `DAGCTL_TEST_JOB` the job, so a test can run
a real `load_definitions` job through `dg.execute_job` in its own process and watch SQLMesh.
"""

from __future__ import annotations

import os

import dagster as dg

from dagctl_dagster import load_definitions


def get_job() -> dg.JobDefinition:
    defs = load_definitions(os.environ["DAGCTL_TEST_CONFIG"])
    return defs.resolve_job_def(os.environ["DAGCTL_TEST_JOB"])


def get_second_job() -> dg.JobDefinition:
    """`get_job` under another code pointer: Dagster keeps one reconstructed job per pointer
    in a process, so a test running a second project in the same process needs this one."""
    return get_job()
