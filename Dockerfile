# Lockgate: slim Python, non-root, health-checked.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY providers ./providers
# gateway/sample_policies links here: the package ships the sample policies from it.
COPY policies ./policies
RUN pip install ".[postgres,redis,otel]" && useradd --system --uid 10001 --home-dir /var/lib/lockgate --create-home lockgate
USER lockgate
WORKDIR /var/lib/lockgate
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["lockgate"]
# Without --config this serves the quickstart (mock model); mount your gateway.yaml and pass
# `serve --config /etc/lockgate/gateway.yaml` for anything real.
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
