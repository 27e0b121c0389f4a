# API and CPU worker image (prediction files are scored on the CPU).
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU wheels of torch keep this image small; the GPU worker has its own Dockerfile.gpu.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY scoring ./scoring
COPY grader_api ./grader_api
COPY worker ./worker
COPY reference_models ./reference_models
COPY datasets ./datasets
RUN pip install .

RUN useradd --system --uid 10001 --home /srv/heldout heldout \
 && mkdir -p /srv/heldout/storage /srv/heldout/data \
 && chown -R heldout /srv/heldout
USER heldout
EXPOSE 8000
CMD ["grade", "serve", "--host", "0.0.0.0", "--port", "8000"]
