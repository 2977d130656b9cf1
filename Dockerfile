# One image for every Ferry process: worker, HTTP API + dashboard, Flower, and the demo's sandbox.
# Multi-arch (linux/amd64, linux/arm64): every dependency installs from a wheel (--only-binary), so
# nothing compiles and the build fails rather than sneak a compiler in. The image talks to the
# compose file's Redis (REDIS_URL); the embedded Redis (the `embedded` extra, x86_64-only wheels)
# is for laptops and is not installed.
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry.example/ferry:0.1.0 --push .
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY producers producers
COPY worker worker
COPY sandbox sandbox
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/ferry \
 && /opt/ferry/bin/pip install --no-cache-dir --only-binary=:all: \
        "$(ls /wheels/ferry-*.whl)[worker,api,flower,sandbox,otel]"

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/ferry/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FERRY_HOME=/var/lib/ferry/home
# A fixed numeric uid, so secret files can be made readable to it and runAsNonRoot can check it.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ferry --create-home ferry
COPY --from=build /opt/ferry /opt/ferry
USER 10001:10001
# The working directory stays empty: `python -m` and celery put it first on sys.path, where a data
# folder named like a package (sandbox/, redis/) would shadow the real one.
WORKDIR /var/lib/ferry
EXPOSE 8080
ENTRYPOINT ["ferry"]
CMD ["--help"]
