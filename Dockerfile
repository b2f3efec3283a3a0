# The pgmlops HTTP service: `docker build -t pgmlops . && docker run -p 8000:8000 pgmlops`.
# State (SQLite database, artifacts, log spill) defaults to /data/.pgmlops; mount a volume there
# or point PGMLOPS_DATABASE_URL / PGMLOPS_ARTIFACT_ROOT at PostgreSQL and an object store.
# A pgmlops.yaml in /data is read at start-up. /artifacts is owned by the server's user, so a
# volume mounted there (deploy/docker-compose.yml) can be shared by several containers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package (not editable), then drop the sources.
COPY pyproject.toml README.md /tmp/pgmlops/
COPY src /tmp/pgmlops/src
RUN pip install /tmp/pgmlops && rm -rf /tmp/pgmlops

# Never run as root.
RUN groupadd --system --gid 10001 pgmlops \
    && useradd --system --uid 10001 --gid pgmlops --home-dir /data --shell /usr/sbin/nologin pgmlops \
    && mkdir -p /data /artifacts \
    && chown pgmlops:pgmlops /data /artifacts
WORKDIR /data
VOLUME ["/data"]
USER pgmlops:pgmlops

EXPOSE 8000
# The slim image has no curl: probe /health with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

CMD ["pgmlops", "serve", "--host", "0.0.0.0", "--port", "8000"]
