"""Where things live in the dagctl-dagster image and its pods: the one list of those paths.

The ``Dockerfile``, ``helm-values/dagster-values.yaml``, the run launcher's defaults and the
test cluster all use these; ``tests/test_k8s_image.py`` fails when one of them drifts.

- The code (``definitions.py``, ``.dagctl/config.yaml``, the projects) is at :data:`CODE_DIR`
  in every process of a deployment: baked into the image there, and in a git-synced
  deployment checked out there by git-sync (an emptyDir at :data:`CODE_ROOT` hides the
  baked copy; git-sync's ``--link`` is :data:`CODE_LINK`). So the code origin a code server
  reports is valid in every run pod, whatever the project's framework.
- The Python environment is :data:`VENV_DIR`, first on ``PATH``.
- Processes run as :data:`IMAGE_UID` / :data:`IMAGE_GID`, which own nothing in the image
  but :data:`DAGSTER_HOME` and the baked code.
"""

from __future__ import annotations

from typing import Final

IMAGE_UID: Final = 1000
IMAGE_GID: Final = 1000
IMAGE_USER: Final = "dagster"

VENV_DIR: Final = "/opt/dagster/venv"
CODE_ROOT: Final = "/opt/dagster/projects"
CODE_LINK: Final = "repo"
CODE_DIR: Final = f"{CODE_ROOT}/{CODE_LINK}"
DAGSTER_HOME: Final = "/opt/dagster/dagster_home"
# Where the daemon and webserver mount the `dagctl-config` ConfigMap (the launcher reads it).
DAGCTL_CONFIG_DIR: Final = "/opt/dagster/dagctl"
DAGCTL_CONFIG_PATH: Final = f"{DAGCTL_CONFIG_DIR}/config.yaml"

# The official Dagster Helm chart this repository's values are written and tested for
# (its version follows the dagster package's; `helm ... --version` in docs/kubernetes.md).
DAGSTER_CHART_VERSION: Final = "1.13.27"
GIT_SYNC_IMAGE: Final = "registry.k8s.io/git-sync/git-sync:v4.4.0"
