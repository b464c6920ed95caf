# The pipeline's image: the package installed from this checkout, run as an unprivileged user.
# docker-compose.yml uses it for the Prefect server, the one-shot deploy and the worker, so all
# three run the same Prefect version. Only the paths the pipeline needs are copied (no venv,
# no lake data).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    GX_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    VDP_LAKE_ROOT=/data/lake

WORKDIR /app
COPY pyproject.toml README.md prefect.yaml ./
COPY flows ./flows
COPY warehouse_sql ./warehouse_sql
COPY expectations ./expectations
RUN pip install -e '.[dask]'

# Deployments record /app as their working directory (prefect.yaml has no pull step), so the
# worker must run the code from the same path: it does, in this image.
RUN useradd --create-home --uid 10001 vdp \
    && mkdir -p /data/lake /home/vdp/.prefect \
    && chown -R vdp /data/lake /home/vdp/.prefect
USER vdp
VOLUME ["/data/lake"]

CMD ["prefect", "worker", "start", "--pool", "vdp-process"]
