"""Each `dagctl-dagster` command loads only the libraries it uses: a command that reads a
config or a claim store starts without Dagster, dagster-k8s and the Kubernetes client (most of
a command's start), and `k8s render` loads them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("dagster", "dagster_k8s", "kubernetes")
EXAMPLE_CONFIG = Path(__file__).parent.parent / ".dagctl" / "config.yaml"
PROBE = (
    "import sys; from dagctl_dagster.cli import main; code = main(sys.argv[1:]); "
    f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))"
)


def loaded_by(*command: str, cwd: Path) -> str:
    """The command's exit code and which of HEAVY it imported, from a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *command], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_config_and_claims_commands_start_without_dagster_and_kubernetes(tmp_path: Path):
    assert loaded_by("validate", "--config-only", "--config", str(EXAMPLE_CONFIG), cwd=tmp_path) == "0 []"
    store = f"sqlite:///{tmp_path / 'claims.sqlite'}"
    assert loaded_by("claims", "list", "--url", store, cwd=tmp_path) == "0 []"


def test_k8s_render_loads_dagster_k8s_and_the_kubernetes_client(tmp_path: Path):
    rendered = loaded_by("k8s", "render", "--project", "sqlmesh_example", "--config", str(EXAMPLE_CONFIG), cwd=tmp_path)
    assert rendered == f"0 {sorted(HEAVY)}"
