# syntax=docker/dockerfile:1.7
# The bundled model runtime: `modeldeploy-runtime fetch` (init container) and `serve`.
#   docker build -f docker/runtime.Dockerfile --build-arg VARIANT=cuda -t modeldeploy/runtime:0.1.0-cuda .
#   docker build -f docker/runtime.Dockerfile --build-arg VARIANT=cpu \
#     --build-arg TORCH_INDEX_URL=<your CPU-only torch wheel index> -t modeldeploy/runtime:0.1.0 .
# Without a Docker daemon: `make images` (buildah, a Python base made from Debian packages).
# The CUDA variant uses torch's default wheels, which carry their CUDA libraries; the CPU
# variant needs a CPU-only wheel index so the image does not ship gigabytes of CUDA.
ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm

# The third-party requirement list (torch among them), read from pyproject.toml. The
# dependencies' layer (gigabytes) is keyed on this list, not on pyproject.toml's bytes: an
# edit elsewhere in that file (the package list, a linter's settings) reuses it, and a code
# change rebuilds only the project's own (small) layer below.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['runtime']))" > requirements.txt

FROM ${PYTHON_IMAGE} AS deps
ARG VARIANT=cpu
ARG TORCH_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY --from=requirements /src/requirements.txt ./
RUN set -eux; \
    case "$VARIANT" in \
      cpu) test -n "$TORCH_INDEX_URL" || { echo "VARIANT=cpu needs --build-arg TORCH_INDEX_URL=<CPU wheel index>" >&2; exit 1; }; \
           extra="--extra-index-url $TORCH_INDEX_URL" ;; \
      cuda) extra="" ;; \
      *) echo "VARIANT must be cpu or cuda, got $VARIANT" >&2; exit 1 ;; \
    esac; \
    python -m venv /opt/venv; \
    /opt/venv/bin/pip install $extra -r requirements.txt

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
 && rm -rf /opt/app/modeldeploy_operator /opt/app/modeldeploy_e2e \
 && PYTHONPATH=/opt/app /opt/app/bin/modeldeploy-runtime --help >/dev/null

# On the deps stage itself, so its venv layer is this image's own: a `COPY --from=deps`
# of the venv would be committed and hashed again on every build (gigabytes for torch).
FROM deps
WORKDIR /
LABEL org.opencontainers.image.title="modeldeploy-runtime" \
      org.opencontainers.image.description="Fetches, loads, warms up and validates a model; serves it once proven." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/app /opt/app
# Non-root, and nothing written outside the mounted cache and /tmp, so the pod can run with
# readOnlyRootFilesystem: true.
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["modeldeploy-runtime"]
CMD ["serve", "--config", "/etc/modeldeploy/runtime.json"]
