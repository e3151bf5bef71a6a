# One image for every role: store-metaserver, store-dataserver and storectl.
# docker-compose.yml runs one metaserver and four dataservers from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY store ./store
COPY metaserver ./metaserver
COPY dataserver ./dataserver
RUN pip install . && rm -rf /src/build

# Servers run as an unprivileged user; a new named volume copies the owner of /data.
RUN useradd --system --uid 10001 --home-dir /data store \
    && mkdir -p /data \
    && chown store:store /data
USER store
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7000 7100

# docker-compose.yml sets each service's command; alone, the image runs a metaserver.
CMD ["store-metaserver", "--dir", "/data", "--listen", "0.0.0.0:7000"]
