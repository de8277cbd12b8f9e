"""Print, as JSON, what a `.dagctl/config.yaml` gives Dagster: whether the whole repository
loads as the webserver loads it, and every asset with its group and code version.

    python definitions_dump.py CONFIG

Run in a process of its own, as a code server is: the loads of every project of the config
happen in one process, one after the other.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from dagctl_dagster import load_definitions


def dump(config: str) -> dict[str, object]:
    defs = load_definitions(config)
    try:
        dg.Definitions.validate_loadable(defs)
        loadable_error = None
    except Exception as exc:  # reported, so that the assets are still compared
        loadable_error = f"{type(exc).__name__}: {exc}"
    graph = defs.resolve_asset_graph()
    assets = {
        key.to_user_string(): {"group": node.group_name, "code_version": node.code_version}
        for key in graph.get_all_asset_keys()
        if (node := graph.get(key)).is_executable
    }
    return {"loadable_error": loadable_error, "assets": assets}


if __name__ == "__main__":
    print(json.dumps(dump(sys.argv[1]), sort_keys=True))
