# The pipeline's image: the package built from this checkout and installed as a wheel (not an
# editable install: the image runs what users install), run as an unprivileged user.
# docker-compose.yml uses it for the Prefect server, the one-shot deploy and the worker, so all
# three run the same Prefect version. Only the paths the package is built from are copied (no
# venv, no lake data), and removed once installed.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    GX_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    VDP_LAKE_ROOT=/data/lake

WORKDIR /src
COPY pyproject.toml README.md ./
COPY flows ./flows
COPY warehouse_sql ./warehouse_sql
COPY expectations ./expectations
RUN pip install '.[dask]' && rm -rf /src/*

# Deployments record /app as their working directory and flows/pipeline.py as their entrypoint
# (prefect.yaml has no pull step): /app/flows is a link to the installed package, so the worker
# runs the installed code, with the SQL and suites inside it.
WORKDIR /app
COPY prefect.yaml ./
RUN ln -s "$(python -c 'import flows, pathlib; print(pathlib.Path(flows.__file__).parent)')" flows \
    && python -c 'import flows.warehouse_sql, flows.expectations, flows.pipeline' \
    && useradd --create-home --uid 10001 vdp \
    && mkdir -p /data/lake /home/vdp/.prefect \
    && chown -R vdp /data/lake /home/vdp/.prefect
USER vdp
VOLUME ["/data/lake"]

CMD ["prefect", "worker", "start", "--pool", "vdp-process"]
