# syntax=docker/dockerfile:1
# The scoring service image: ONNX Runtime + FastAPI, no torch.
#
# Stage 1 builds the project wheel; stage 2 installs only its `serve` extra, so the image carries
# the service and the thin `nae` command line but none of the training stack. Bundles under
# models/ are baked in as the embedded default; mount another directory over /app/models to serve
# others. Every service setting is an NAE_* environment variable (service/settings.py).
# The health check is the service's strict readiness: healthy only while the models directory
# holds at least one bundle and none was refused (NAE_STRICT_READINESS=false: once it was read).
# The service writes nothing: run it with a read-only root filesystem (docker-compose.yml does).
# tests/deploy/test_image_install.py repeats these install steps in a fresh venv, since CI has no
# Docker engine.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY training/ training/
COPY service/ service/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1
RUN useradd --system --uid 10001 --no-create-home --home-dir /app nae
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir "$(find /wheels -name 'nae_trigger-*.whl')[serve]"
WORKDIR /app
COPY models/ /app/models/
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
CMD ["nae", "serve", "--models", "/app/models", "--host", "0.0.0.0", "--port", "8000"]
