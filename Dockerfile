# Porter itself (not the agent image: that is container/Dockerfile).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY porter ./porter
COPY container ./container
RUN uv sync --frozen --no-dev
ENV PORTER_HOST=0.0.0.0 PORTER_PORT=8080 PORTER_DATABASE=/data/porter.db
EXPOSE 8080
CMD ["uv", "run", "--no-dev", "porter", "serve"]
