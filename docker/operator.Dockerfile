# syntax=docker/dockerfile:1.7
# The operator image: `modeldeploy-operator` (kopf) with no ML libraries.
#   docker build -f docker/operator.Dockerfile -t modeldeploy/operator:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract/modeldeploy_contract contract/modeldeploy_contract
COPY operator/modeldeploy_operator operator/modeldeploy_operator
COPY runtime/modeldeploy_runtime runtime/modeldeploy_runtime
COPY e2e/modeldeploy_e2e e2e/modeldeploy_e2e
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install '.[operator]' \
 && rm -rf /opt/venv/lib/python3*/site-packages/modeldeploy_runtime /opt/venv/lib/python3*/site-packages/modeldeploy_e2e \
 && /opt/venv/bin/modeldeploy-operator --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modeldeploy-operator" \
      org.opencontainers.image.description="Kubernetes operator for safe ML model rollouts." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8081 9090
ENTRYPOINT ["modeldeploy-operator"]
