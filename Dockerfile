# One image for every part of cmvoice: worker, beat, receiver, flower and the simulator.
#   docker build -t cmvoice .
#   docker run --rm cmvoice --help
# Wheels are built in a first stage (a compiler is at hand there, for any dependency without a
# wheel for this platform), so the final image carries no build tools.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cmvoice ./cmvoice
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMVOICE_DATA_DIR=/data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels cmvoice \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 cmvoice \
    && mkdir -p /data \
    && chown cmvoice:cmvoice /data
# Never root: a worker runs user-supplied hooks, and Celery warns against root.
USER cmvoice
WORKDIR /home/cmvoice
# /data holds beat's schedule: mount a named volume there (it starts owned by this user).
# receiver, simulator, flower
EXPOSE 8090 8091 5555
ENTRYPOINT ["cmvoice"]
CMD ["--help"]
