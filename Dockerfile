# autodev's image. The build stage makes the venv with uv from uv.lock (runtime dependencies only); the final
# stage gets that venv and the sources, git and bubblewrap (the sandbox for a repository's commands), and runs
# as an unprivileged user. autodev's venv is not on PATH: the repositories' commands must not find its python.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir uv==0.13.8
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# --no-default-groups: neither the dev tools nor the profilers of the bench group (both default groups).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-default-groups --no-install-project
COPY autodev ./autodev
COPY bot ./bot
COPY engine ./engine
COPY github_app ./github_app
COPY web ./web
COPY workers ./workers
COPY docs ./docs
COPY AGENTS.md app.yml alembic.ini .env.example ./
RUN uv sync --frozen --no-default-groups \
 && .venv/bin/python -m compileall -q autodev bot engine github_app web workers

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 autodev \
 && useradd --system --uid 10001 --gid autodev --create-home --home-dir /home/autodev autodev \
 && mkdir /data && chown autodev:autodev /data
# The sources stay owned by root: the service cannot change its own code.
COPY --from=build /app /app
WORKDIR /app
ENV DATA_DIR=/data PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
VOLUME /data
EXPOSE 8000
CMD ["/app/.venv/bin/autodev", "web", "--host", "0.0.0.0", "--port", "8000"]
