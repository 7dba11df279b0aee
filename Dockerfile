# Tamas gateway image: `docker build -t tamas .` (docker-compose.yml builds it too).
#
# One process, `tamas serve`: HTTP API, web UI and websockets on 8080, FastAGI on 4573, the
# AMI link out to the PBX. Configure it with TAMAS_* variables (tamas/config.py); the data
# directory (/data) holds the stored recordings and, without PostgreSQL, the SQLite file.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg: recordings are transcoded (pydub) before they are stored.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# Never root at run time.
RUN groupadd --system --gid 10001 tamas \
    && useradd --system --uid 10001 --gid tamas --home-dir /data --shell /usr/sbin/nologin tamas \
    && mkdir -p /data \
    && chown tamas:tamas /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tamas ./tamas
COPY crm ./crm
COPY cti ./cti
COPY screenpop ./screenpop
COPY recordings ./recordings
RUN pip install . && rm -rf /app/build

USER tamas
ENV TAMAS_DATA_DIR=/data \
    TAMAS_HTTP_HOST=0.0.0.0 \
    TAMAS_HTTP_PORT=8080 \
    TAMAS_AGI_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 8080 4573

# Liveness only: /readyz (database, Redis, PBX link) is for the load balancer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

CMD ["tamas", "serve"]
