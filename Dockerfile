# Image for the scale-out stack (docker-compose.yml): the Streamlit app and, with another command,
# the REST API. The embedded default needs no Docker.
FROM python:3.11.7-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MEM0_TELEMETRY=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
# llama-cpp-python (the offline model) is compiled by pip: it needs a C/C++ toolchain. Portable
# CPU build (no -march=native) so the image runs on any x86-64 host.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home --uid 10001 optimus && mkdir -p /data && chown optimus /data
USER optimus
EXPOSE 8501 8000
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501"]
