# syntax=docker/dockerfile:1
# OMNeT++ 6.1 (Cmdenv only) with the Malcolm-Strict simple modules, as an environment process
# that connects to the agent server.
#
#   docker build -f docker/omnetpp.Dockerfile -t malcolm/omnetpp .      # from the repo root
#   docker run --rm -e MALCOLM_AGENT=tcp://HOST:5555 malcolm/omnetpp Hetero
#
# OMNeT++ is installed the way its install guide says: the official release archive (the
# "core" archive of omnetpp.org's 6.1.0 download page: the simulation kernel and command-line
# tools, no IDE), checked against the SHA-1 that page publishes, then `. setenv`,
# `./configure` with Qtenv and OSG off in configure.user, and `make`. INET is not used. Our
# framework-free core and the simple modules are built on top with omnetpp/CMakeLists.txt.

ARG DEBIAN_IMAGE=debian:12.12-slim

FROM ${DEBIAN_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# OMNeT++'s build needs a C++ toolchain, bison, flex, perl, python3 (its configure checks it),
# SQLite and zlib; our modules need CMake, protobuf and ZeroMQ (cppzmq). Versions are pinned
# by the base image tag (one Debian point release); pinning each package as well would break
# the build at the next security update of the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential bison flex perl python3 pkg-config libsqlite3-dev zlib1g-dev \
      curl ca-certificates \
      cmake protobuf-compiler libprotobuf-dev libzmq3-dev cppzmq-dev \
 && rm -rf /var/lib/apt/lists/*

ARG OMNETPP_VERSION=6.1.0
ARG OMNETPP_SHA1=4e643421035b322d91b9bfbb273c2ee165af82a0
RUN curl -fsSL -o /tmp/omnetpp.tgz \
      "https://github.com/omnetpp/omnetpp/releases/download/omnetpp-${OMNETPP_VERSION}/omnetpp-${OMNETPP_VERSION}-core.tgz" \
 && echo "${OMNETPP_SHA1}  /tmp/omnetpp.tgz" | sha1sum -c - \
 && mkdir -p /opt/omnetpp \
 && tar -xzf /tmp/omnetpp.tgz -C /opt/omnetpp --strip-components=1 \
 && rm /tmp/omnetpp.tgz
WORKDIR /opt/omnetpp
# Cmdenv only: no Qtenv/OSG (no GUI in a container), GCC rather than clang, NED loaded at run
# time (netbuilder), release libraries only; the object files are dropped afterwards.
RUN { [ -f configure.user ] || cp configure.user.dist configure.user; } \
 && sed -i -e 's/^WITH_QTENV=.*/WITH_QTENV=no/' -e 's/^WITH_OSG=.*/WITH_OSG=no/' \
      -e 's/^WITH_OSGEARTH=.*/WITH_OSGEARTH=no/' -e 's/^WITH_NETBUILDER=.*/WITH_NETBUILDER=yes/' \
      -e 's/^PREFER_CLANG=.*/PREFER_CLANG=no/' -e 's/^PREFER_LLD=.*/PREFER_LLD=no/' \
      -e 's/^WITH_SCAVE_PYTHON_BINDINGS=.*/WITH_SCAVE_PYTHON_BINDINGS=no/' \
      -e 's/^WITH_BACKTRACE=.*/WITH_BACKTRACE=no/' configure.user \
 && . ./setenv \
 && ./configure \
 && make -j"$(nproc)" MODE=release base \
 && rm -rf out \
 && bin/opp_run -v

# Our modules, with the same CMake build as scripts/omnetpp-env.sh (tests off: they run in
# the project's test command, not in the image).
WORKDIR /src
COPY proto ./proto
COPY omnetpp ./omnetpp
# The embedded agent's C header (the library itself is not in this image: it brings libtorch).
COPY agent-ffi/include ./agent-ffi/include
RUN cmake -S omnetpp -B /build -DOMNETPP_ROOT=/opt/omnetpp -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DMALCOLM_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target malcolm_omnetpp \
 && install -D -m 0755 /build/libmalcolm_omnetpp.so /out/lib/libmalcolm_omnetpp.so

FROM ${DEBIAN_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# What opp_run, the OMNeT++ libraries and our library load: libstdc++, SQLite (result files
# code in liboppscave), protobuf and ZeroMQ (the bridge client).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 libsqlite3-0 libprotobuf32 libzmq5 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/omnetpp/bin /opt/omnetpp/bin
COPY --from=builder /opt/omnetpp/lib /opt/omnetpp/lib
COPY --from=builder /opt/omnetpp/include /opt/omnetpp/include
COPY --from=builder /opt/omnetpp/Version /opt/omnetpp/Makefile.inc /opt/omnetpp/configure.user /opt/omnetpp/
COPY --from=builder /out/lib/libmalcolm_omnetpp.so /opt/malcolm/lib/libmalcolm_omnetpp.so
COPY ned /opt/malcolm/ned
COPY ini /opt/malcolm/ini
COPY proto/testdata /opt/malcolm/proto/testdata
COPY docker/omnetpp-entrypoint.sh /usr/local/bin/malcolm-omnetpp
ENV OMNETPP_ROOT=/opt/omnetpp \
    PATH=/opt/omnetpp/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/omnetpp/lib \
    MALCOLM_OMNETPP_LIB=/opt/malcolm/lib/libmalcolm_omnetpp.so \
    MALCOLM_OMNETPP_HOME=/opt/malcolm \
    MALCOLM_RESULT_DIR=/data/results/omnetpp
RUN groupadd --system --gid 10001 malcolm \
 && useradd --system --uid 10001 --gid malcolm --home-dir /data --shell /usr/sbin/nologin malcolm \
 && mkdir -p /data/results \
 && chown -R malcolm:malcolm /data \
 && opp_run -v
USER 10001:10001
WORKDIR /opt/malcolm/ini
VOLUME ["/data/results"]
ENTRYPOINT ["malcolm-omnetpp"]
