# The image of owtrain's long-running side on Kubernetes: `owtrain ps` (parameter server) and
# `owtrain bridge serve` (event bridge), from the runtime pins in requirements.txt. The action has its
# own, smaller image (Dockerfile.action, scripts/build-image.sh). Build from the repository root:
#   docker build -f deploy/kubernetes/server.Dockerfile -t registry.example.com/owtrain-server:0.1.0 .
# (BuildKit reads server.Dockerfile.dockerignore beside this file instead of the root .dockerignore.)
ARG BASE=python:3.11-slim
FROM ${BASE} AS install
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
COPY requirements.txt /src/
RUN python3 -m venv /opt/venv \
    && pip install "$(grep '^torch==' /src/requirements.txt)" --index-url "${TORCH_INDEX}" \
    && pip install -r /src/requirements.txt
COPY pyproject.toml /src/
COPY owtrain /src/owtrain
COPY actions /src/actions
COPY dataset_packer /src/dataset_packer
COPY param_server /src/param_server
COPY wsk /src/wsk
RUN pip install --no-deps --no-index --no-build-isolation /src

FROM ${BASE}
COPY --from=install /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
RUN useradd --create-home --uid 10001 owtrain
USER 10001
WORKDIR /home/owtrain
ENTRYPOINT ["owtrain"]
CMD ["--help"]
