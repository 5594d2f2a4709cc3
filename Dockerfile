# alprd in a container: the daemon, its models (installed with the package under
# /usr/local/share/alprd/models, where it finds them) and the synthetic demo renderer.
# Config is mounted at /config; spool, unit key and audit log live on the volume /var/lib/alprd.
#   docker build -t alprd .
#   docker run --rm -v ./my.yaml:/config/alprd.yaml:ro -v alprd-data:/var/lib/alprd alprd
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The plate fonts `alprd synth` renders the demo video with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY alprd ./alprd
COPY config ./config
COPY models ./models
RUN pip install '.[synth]' && cd / && rm -rf /src

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/alprd --shell /usr/sbin/nologin alprd \
    && install -d -o alprd -g alprd -m 0750 /var/lib/alprd \
    && install -d -m 0755 /config

USER alprd
WORKDIR /var/lib/alprd
VOLUME ["/var/lib/alprd"]

ENTRYPOINT ["alprd"]
CMD ["run", "-c", "/config/alprd.yaml"]
