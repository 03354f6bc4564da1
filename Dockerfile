# sol-stake: one image for every process of the Procfile (release, worker, web); the command picks one.
# Tartiflette compiles libgraphqlparser at install time, hence cmake and g++ in the build stage only.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ make libffi-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --upgrade "pip>=24" \
 && /venv/bin/pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY stream_app stream_app
COPY http_app http_app
COPY migrations migrations
# Installing the project registers the `redis://` Faust transport entry point and the `solstake` command.
RUN /venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim-bookworm
RUN useradd --system --create-home --uid 10001 solstake
COPY --from=build /venv /venv
WORKDIR /app
COPY Procfile ./
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SOLSTAKE_PROFILE=production \
    PORT=3007
USER solstake
EXPOSE 3007 9108
CMD ["python", "-m", "http_app"]
