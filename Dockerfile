# One image recipe for every chatbus service. SERVICE names its folder under services/
# (gateway, agent-support, agent-sales, memory, cost); the package is chatbus-<SERVICE> and its
# console script of the same name starts it. Build from the repository root:
#   docker build --build-arg SERVICE=gateway --build-arg PORT=8080 -t chatbus-gateway .
# Only shared/ and that one service go into the image; other services and devkit/ (the
# development tooling, chatbus-dev) are not copied.
# No BuildKit cache mounts: Railway refuses cache mounts without its own id prefix.
# On Railway, set the service variable SERVICE: Railway passes variables named by ARG to the build.

FROM python:3.11-slim-bookworm AS build
ARG SERVICE
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<folder under services/>" >&2; exit 1; }
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# 1. Third-party dependencies only: this layer is rebuilt when the lockfile changes.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-workspace --package chatbus-${SERVICE}

# 2. The code: shared/ and this service, installed into the venv (not editable).
COPY shared shared
COPY services/${SERVICE} services/${SERVICE}
RUN uv sync --frozen --no-dev --no-editable --package chatbus-${SERVICE}


FROM python:3.11-slim-bookworm AS runtime
ARG SERVICE
ARG PORT=8080
RUN groupadd --system --gid 10001 chatbus \
 && useradd --system --uid 10001 --gid chatbus --create-home --home-dir /home/chatbus chatbus \
 && mkdir -p /app/data \
 && chown chatbus:chatbus /app/data
# Root-owned and read-only to the service user: it cannot change its own code.
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=${PORT} \
    DATA_DIR=/app/data \
    CHATBUS_SERVICE=chatbus-${SERVICE} \
    OTEL_SERVICE_NAME=chatbus-${SERVICE}
WORKDIR /app
USER chatbus:chatbus
EXPOSE ${PORT}
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['PORT'], timeout=4)"]
# exec: the service is PID 1 and receives SIGTERM itself (it drains before exiting).
CMD ["/bin/sh", "-c", "exec \"$CHATBUS_SERVICE\""]
