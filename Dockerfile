# CPU image for every skinscreen command (ingest, worker, db upgrade, status...).
# Workers score with ONNX Runtime; tensorflow-cpu comes along because it is a runtime dependency.
# The shipped model is package data (skinscreen/models/shipped/default/), so nothing is downloaded at run time.
#   docker build -t skinscreen .
#   docker run --rm skinscreen --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TF_CPP_MIN_LOG_LEVEL=2

# A fixed uid, so that inbox permissions can be granted to it on the host (the inbox only needs to be readable).
RUN useradd --create-home --uid 10001 skinscreen \
    && mkdir -p /models /var/lib/skinscreen/heatmaps \
    && chown skinscreen /models /var/lib/skinscreen/heatmaps
# Named volumes mounted there (docker-compose.yml: models, heatmaps) start with this owner.

WORKDIR /src
COPY . .
RUN pip install . && rm -rf /src

USER skinscreen
WORKDIR /home/skinscreen
ENTRYPOINT ["skinscreen"]
CMD ["--help"]
