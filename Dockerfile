# mlpulse's Python services (mlapi and backend + dashboard) in one image.
#
#   docker build -t mlpulse:local .
#   docker run --rm -p 127.0.0.1:8003:8003 -v mlpulse-data:/data mlpulse:local \
#       mlpulse backend --host 0.0.0.0
#   docker run --rm -p 127.0.0.1:8002:8002 mlpulse:local mlpulse mlapi --host 0.0.0.0
#
# docker-compose.yml builds and runs it for both services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml README.md ./
COPY instrumentation/pyproject.toml ./instrumentation/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(d for p in ('pyproject.toml', 'instrumentation/pyproject.toml') for d in tomllib.load(open(p, 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then mlpulse itself (non-editable) and the dashboard page the backend serves.
COPY instrumentation ./instrumentation
COPY mlpulse ./mlpulse
COPY dashboards ./dashboards
RUN pip install --no-deps ./instrumentation . && rm -rf build *.egg-info instrumentation/build

# An unprivileged user; /data (the backend's MLPULSE_DATA_DIR) is theirs, and a named volume
# mounted there starts with that ownership.
RUN useradd --system --uid 10001 --create-home --home-dir /home/mlpulse mlpulse \
    && mkdir -p /data && chown mlpulse:mlpulse /data
USER mlpulse

ENV MLPULSE_DATA_DIR=/data \
    MLPULSE_DASHBOARD_DIR=/app/dashboards

EXPOSE 8002 8003
CMD ["mlpulse", "--help"]
