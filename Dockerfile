# syntax=docker/dockerfile:1
# The dispatchbot image: `dispatchbot run --mode http` on port 3000, as a non-root user.
#   docker build -t dispatchbot .
# The same package set as `make install` (torch pinned first, then this project), less the
# [dev] extras; training runs elsewhere (see docs/operations.md).

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# The one torch pin of the image; tests/deploy check that the Makefile pins the same.
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first, from PyTorch's CPU index: the bot only embeds on the CPU, and PyPI's build
# would bring several GB of CUDA libraries. The project's torch range accepts this one.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY migrations ./migrations
COPY retrieval ./retrieval
COPY serving ./serving
COPY store ./store
RUN pip install .

# Export the embedding model to ONNX now (EMBEDDING_BACKEND=onnx, the default), so that no
# container spends its start on it and a read-only root filesystem is enough at run time.
WORKDIR /
RUN MODELS_DIR=/models python -c \
    "from retrieval.embedding import load_embedder_for; from store.settings import Settings; load_embedder_for(Settings())"


FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric id, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 dispatchbot \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/dispatchbot --shell /usr/sbin/nologin dispatchbot \
 && install -d -o 10001 -g 10001 /var/lib/dispatchbot /models/adapters
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /models/embeddings /models/embeddings

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    DISPATCHBOT_DATA_DIR=/var/lib/dispatchbot \
    MODELS_DIR=/models

USER 10001:10001
WORKDIR /var/lib/dispatchbot
EXPOSE 3000
# Liveness only (no curl in slim images): /readyz also checks the database, Qdrant and the
# model, which an orchestrator should not restart the bot for.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]
ENTRYPOINT ["dispatchbot"]
CMD ["run", "--mode", "http", "--port", "3000"]
