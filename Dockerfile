# syntax=docker/dockerfile:1
# The dagctl-dagster image. The code server, the daemon, the webserver and every run Job
# use it, for SQLMesh and dbt projects alike. Its paths and user are those of
# dagctl_dagster/k8s/layout.py; tests/test_k8s_image.py checks this file against that module
# and the Helm values, and the test cluster lays out the same paths and runs as the same uid.
#
#   docker build -t registry.example.com/dagctl-dagster:0.1.0 .
#
# The code (definitions.py, .dagctl/config.yaml, the projects) is at /opt/dagster/projects/repo.
# A git-synced deployment mounts an emptyDir at /opt/dagster/projects and git-sync checks the
# repository out at the same path, so code servers and runs find definitions.py there either way.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/dagster/venv \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /opt/dagster/projects/repo
# The locked dependencies first: this layer is rebuilt only when uv.lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --compile-bytecode --no-dev --group k8s --no-install-project
COPY . .
RUN uv sync --frozen --compile-bytecode --no-dev --group k8s --no-editable
# dbt manifests ship in the image, so loading the code location runs no `dbt parse`
# (a target whose env_var() values differ at run time is parsed once at start-up).
RUN /opt/dagster/venv/bin/dagctl-dagster dbt prepare --config .dagctl/config.yaml

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 1000 dagster \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/dagster --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/dagster_home \
    && chown 1000:1000 /opt/dagster/dagster_home
COPY --from=build /opt/dagster/venv /opt/dagster/venv
COPY --from=build --chown=1000:1000 /opt/dagster/projects/repo /opt/dagster/projects/repo
ENV PATH=/opt/dagster/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
USER 1000:1000
WORKDIR /opt/dagster/projects/repo
