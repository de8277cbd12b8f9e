"""Kubernetes run Jobs: the run launcher, its manifests and ``dagctl-dagster k8s``.

Needs the ``k8s`` extra (dagster-k8s, kubernetes); without it, importing this package says so.
"""

from dagctl_dagster.extras import require_extra

require_extra("k8s", "dagctl_dagster.k8s (DagctlK8sRunLauncher, `dagctl-dagster k8s`)")
