# Sourced by scripts/omnetpp-*.sh: finds OMNeT++ (OMNETPP_ROOT, or opp_run on PATH) and
# builds the simple modules. Sets OMNETPP_ROOT, OPP_RUN, OPP_SCAVETOOL, MALCOLM_OMNETPP_LIB.
# Returns 1 (without exiting) when OMNeT++ is absent, after saying so.
malcolm_find_omnetpp() {
  if [ -z "${OMNETPP_ROOT:-}" ] && command -v opp_run >/dev/null 2>&1; then
    OMNETPP_ROOT="$(cd "$(dirname "$(readlink -f "$(command -v opp_run)")")/.." && pwd)"
  fi
  if [ -z "${OMNETPP_ROOT:-}" ] || [ ! -x "$OMNETPP_ROOT/bin/opp_run" ]; then
    echo "OMNeT++ not found (set OMNETPP_ROOT or put opp_run on PATH): skipping the OMNeT++ part"
    return 1
  fi
  export OMNETPP_ROOT
  OPP_RUN="$OMNETPP_ROOT/bin/opp_run"
  OPP_SCAVETOOL="$OMNETPP_ROOT/bin/opp_scavetool"
  export PATH="$OMNETPP_ROOT/bin:$PATH"
  export LD_LIBRARY_PATH="$OMNETPP_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  return 0
}

# Builds omnetpp/build/libmalcolm_omnetpp.so (and the core) quietly; prints the log on failure.
malcolm_build_modules() {
  local root="$1" build="$1/omnetpp/build" log
  mkdir -p "$build"
  log="$build/last-module-build.log"
  if ! { cmake -S "$root/omnetpp" -B "$build" -DOMNETPP_ROOT="$OMNETPP_ROOT" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
         cmake --build "$build" -j "${MALCOLM_CPP_JOBS:-2}" --target malcolm_omnetpp; } >"$log" 2>&1; then
    cat "$log"
    echo "OMNeT++ module build failed (log: $log)" >&2
    return 1
  fi
  MALCOLM_OMNETPP_LIB="$build/libmalcolm_omnetpp.so"
}
