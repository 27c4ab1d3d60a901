# syntax=docker/dockerfile:1
# The agent server (Rust, libtorch 2.13 from the torch wheel) as a small runtime image.
#
#   docker build -f docker/agent-server.Dockerfile -t malcolm/agent-server .   # from the repo root
#   docker run --rm -p 5555:5555 -p 50051:50051 malcolm/agent-server           # = agent-server serve
#   docker run --rm malcolm/agent-server env --connect tcp://HOST:5555        # embedded simulator
#
# Stage 1 builds with the same recipe as scripts/setup.sh (a virtualenv with torch==2.13.0, tch
# finds libtorch through it with LIBTORCH_USE_PYTORCH=1). Stage 2 keeps only the binary and the
# shared libraries it loads. Every flag of the CLI has a MALCOLM_* environment variable.

ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=debian:12.12-slim

FROM ${RUST_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The build tools of scripts/setup.sh (today the crates vendor protoc and compile libzmq
# themselves; the packages keep the build working where a crate looks for the system ones),
# and python3-venv for the torch wheel. The compilers come with the rust image.
# Versions are pinned by the base image tags (one Debian point release); pinning each Debian
# package as well would break the build at the next security update of the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      protobuf-compiler libzmq3-dev pkg-config cmake python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ARG TORCH_VERSION=2.13.0
ENV MALCOLM_VENV=/opt/venv \
    LIBTORCH_USE_PYTORCH=1 \
    PATH=/opt/venv/bin:${PATH}
# Its own layer, before the sources: the wheel is large and changes only with TORCH_VERSION.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}"

WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY policies ./policies
COPY rack-sim ./rack-sim
COPY agents ./agents
COPY serve ./serve
COPY lab ./lab
COPY agent-ffi ./agent-ffi
COPY agent-server ./agent-server
# Cache mounts keep the crate registry and the build tree (the libtorch glue takes minutes)
# between builds; the binary is copied out of the cached target dir in the same step.
# Cargo.lock is used as scripts/run.sh uses it (no --locked: entries it lacks are resolved).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p agent-server \
 && install -D -m 0755 target/release/agent-server /out/bin/agent-server
# The runtime needs exactly the libraries the binary resolves from the venv: libtorch_cpu,
# libc10, libgomp, and (in the CUDA build of the wheel) the CUDA runtime and CUPTI that
# libtorch_cpu links. Copying what ldd resolves there, rather than all of torch/lib, keeps the
# image about 1 GB smaller (libtorch_cuda is never loaded) and still complete.
RUN mkdir -p /out/lib \
 && ldd /out/bin/agent-server | awk '$3 ~ "^/opt/venv/" { print $3 }' | sort -u > /out/libs.txt \
 && xargs -r cp -L -t /out/lib < /out/libs.txt \
 && grep -q libtorch_cpu /out/libs.txt \
 && LD_LIBRARY_PATH=/out/lib ldd /out/bin/agent-server | { ! grep 'not found'; } \
 && rm /out/libs.txt

FROM ${RUNTIME_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# libstdc++6 for the binary and libtorch; libgomp comes with libtorch. ZeroMQ is built into
# the binary (the zmq crate compiles libzmq statically), so no libzmq5 is needed. The font is
# what the `train` plots are drawn with.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/lib/ /opt/libtorch/lib/
COPY --from=builder /out/bin/agent-server /usr/local/bin/agent-server
# The binary's rpath names the builder's venv, which does not exist here.
ENV LD_LIBRARY_PATH=/opt/libtorch/lib \
    MALCOLM_BIND=tcp://0.0.0.0:5555 \
    MALCOLM_CONTROL=0.0.0.0:50051 \
    MALCOLM_HEALTH_ADDR=127.0.0.1:50051
RUN groupadd --system --gid 10001 malcolm \
 && useradd --system --uid 10001 --gid malcolm --home-dir /data --shell /usr/sbin/nologin malcolm \
 && mkdir -p /data/checkpoints /data/traces /data/results \
 && chown -R malcolm:malcolm /data \
 && agent-server --version
USER 10001:10001
# `train` and `eval` write their default results/<name> folder under /data/results.
WORKDIR /data
VOLUME ["/data/checkpoints", "/data/traces", "/data/results"]
EXPOSE 5555 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["agent-server", "health"]
ENTRYPOINT ["agent-server"]
CMD ["serve"]
