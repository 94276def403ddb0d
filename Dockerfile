# syntax=docker/dockerfile:1
# The streamproc image: the CLI (`streamproc`) with the workers, the simulator and the tools.
#   docker build -t streamproc:0.1.0 .
#   docker run --rm streamproc:0.1.0 --help
# Pinned by tag; keep the Python minor version equal to the one CI tests (3.11).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# What the wheel is built from: the packages, and the files pyproject.toml force-includes
# into it (schemas/ -> streamproc/_schemas, kafka/pom.xml -> streamproc/_kafka/pom.xml).
# README.md is the package's readme; requirements.lock pins the dependencies.
WORKDIR /build
COPY pyproject.toml README.md requirements.lock ./
COPY streamproc/ streamproc/
COPY agents/ agents/
COPY schemas/ schemas/
COPY kafka/pom.xml kafka/pom.xml
RUN pip install --constraint requirements.lock . \
    && rm -rf /build

# Run as an unprivileged user; Faust keeps its table state under the working directory.
RUN useradd --create-home --uid 10001 --user-group streamproc
USER streamproc
WORKDIR /home/streamproc

# The worker's /metrics, /health, /ready (STREAMPROC_METRICS_PORT; bind 0.0.0.0 in a container).
EXPOSE 9100

ENTRYPOINT ["streamproc"]
CMD ["worker"]
