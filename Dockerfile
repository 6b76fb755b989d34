# The executor server image (not the sandbox: that one is executor/sandbox_image/Dockerfile).
# With a registry: FROM python:3.11-slim, dependencies from PyPI. Offline (scripts/up.sh):
# BASE_IMAGE is the locally debootstrapped base and build/wheels holds every dependency.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
LABEL org.selfalign.role="server"
COPY . /src
RUN if ls /src/build/wheels/*.whl >/dev/null 2>&1; then \
      python3 -m pip install --no-cache-dir --break-system-packages --no-index \
        --find-links /src/build/wheels selfalign; \
    else \
      python3 -m pip install --no-cache-dir --break-system-packages /src; \
    fi \
 && rm -rf /src
EXPOSE 50051 8080 9100
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python3", "-m", "executor", "health", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["python3", "-m", "executor", "serve", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9100"]
