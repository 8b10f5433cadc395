# ingress-audit: the kube-apiserver audit webhook backend.
#
#   docker build -t ingress-audit:dev .
#   docker run --read-only --tmpfs /tmp -v "$PWD/data:/var/lib/ingress-audit" \
#     -v "$PWD/config.yaml:/etc/ingress-audit/config.yaml:ro" -p 9440:9440 ingress-audit:dev
#
# Without Docker: buildah on a Python base made with debootstrap, passed as PYTHON_IMAGE (see
# docs/deploy.md, "Building the image without Docker"; tests/scenarios/test_image.py does it).
#
# Runs as UID/GID 10001 on a read-only root filesystem: only the data dir (data_dir in the
# config, /var/lib/ingress-audit in manifests/) and /tmp must be writable volumes. The config
# is a mounted file; see manifests/base/config.yaml. Probes: GET /healthz (alive) and
# GET /readyz (every output writable) on the webhook port, over https when server.tls is set.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# The wheel, then a virtualenv with it and its dependencies (binary wheels, and pure-Python
# sources such as nkeys: no compiler is needed); only the virtualenv goes into the runtime image.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/ingress-audit \
    && /opt/ingress-audit/bin/pip install --no-cache-dir /wheels/*.whl \
    && /opt/ingress-audit/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0.dev0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ingress-audit" \
      org.opencontainers.image.description="kube-apiserver audit webhook backend: a record of who touched the entry points of a cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PATH=/opt/ingress-audit/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
RUN groupadd --system --gid 10001 ingress-audit \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin ingress-audit \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/ingress-audit \
    && install -d -m 0755 /etc/ingress-audit
COPY --from=build /opt/ingress-audit /opt/ingress-audit
USER 10001:10001
WORKDIR /var/lib/ingress-audit
EXPOSE 9440
# The port and scheme come from the mounted config, so the check asks for them: set
# INGRESS_AUDIT_HEALTH_URL when serving https or another port. Kubernetes ignores HEALTHCHECK
# and uses the probes in manifests/base/deployment.yaml instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; r.urlopen(os.environ.get('INGRESS_AUDIT_HEALTH_URL', 'http://127.0.0.1:9440/healthz'), timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["ingress-audit"]
CMD ["serve", "--config", "/etc/ingress-audit/config.yaml"]
