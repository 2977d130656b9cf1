# One image for every Ferry process: worker, HTTP API/dashboard, sandbox.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY producers producers
COPY worker worker
COPY sandbox sandbox
RUN pip install --no-cache-dir '.[worker,api,sandbox]' && useradd --create-home ferry
USER ferry
ENTRYPOINT ["ferry"]
