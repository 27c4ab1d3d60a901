# Sourced by the project's scripts: where the torch virtualenv lives and what tch needs to build.
# Outside the source tree so a clean clone reuses it; override with MALCOLM_VENV.
export TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
export MALCOLM_VENV="${MALCOLM_VENV:-$HOME/.cache/malcolm-strict/venv}"
# torch-sys finds libtorch through the venv's python when this is set.
export LIBTORCH_USE_PYTORCH=1
export PATH="$MALCOLM_VENV/bin:$PATH"
if [ -d "$MALCOLM_VENV" ]; then
  _torch_lib="$(ls -d "$MALCOLM_VENV"/lib/python3*/site-packages/torch/lib 2>/dev/null | head -n1 || true)"
  # The binaries carry an rpath to this directory (agent-server/build.rs); this is a fallback
  # for tools that load libtorch some other way (cargo test harnesses of dependent crates).
  [ -n "$_torch_lib" ] && export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  unset _torch_lib
fi
