# syntax=docker/dockerfile:1.7
# The operator image: `modeldeploy-operator` (kopf) with no ML libraries.
#   docker build -f docker/operator.Dockerfile -t modeldeploy/operator:0.1.0 .
# Without a Docker daemon: `make images` (buildah, a Python base made from Debian packages).
ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm

# The third-party requirement list, read from pyproject.toml. The dependencies' layer is
# keyed on this list, not on pyproject.toml's bytes: an edit elsewhere in that file (the
# package list, a linter's settings) reuses it, and a code change rebuilds only the
# project's own (small) layer below.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['operator']))" > requirements.txt

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY --from=requirements /src/requirements.txt ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -r requirements.txt

FROM deps AS build
COPY pyproject.toml README.md ./
COPY contract/modeldeploy_contract contract/modeldeploy_contract
COPY operator/modeldeploy_operator operator/modeldeploy_operator
COPY runtime/modeldeploy_runtime runtime/modeldeploy_runtime
COPY e2e/modeldeploy_e2e e2e/modeldeploy_e2e
# The project goes to its own prefix (/opt/app, on PYTHONPATH) so the final image holds
# the dependencies and the project as two layers. One wheel holds every package; the
# image keeps only what it runs.
RUN /opt/venv/bin/pip install --no-deps --target /opt/app . \
 && rm -rf /opt/app/modeldeploy_runtime /opt/app/modeldeploy_e2e \
 && PYTHONPATH=/opt/app /opt/app/bin/modeldeploy-operator --help >/dev/null

# On the deps stage itself, so its venv layer is this image's own: a `COPY --from=deps`
# of the venv would be committed and hashed again on every build (gigabytes for torch).
FROM deps
WORKDIR /
LABEL org.opencontainers.image.title="modeldeploy-operator" \
      org.opencontainers.image.description="Kubernetes operator for safe ML model rollouts." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/app /opt/app
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8081 9090
ENTRYPOINT ["modeldeploy-operator"]
