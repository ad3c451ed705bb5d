#!/usr/bin/env bash
# A real AWS API server (moto, from PyPI) on 127.0.0.1 for bmac's AWS tests, over TLS.
#
# Usage:
#   scripts/moto-env.sh install        a Python venv with moto[server] under
#                                      ${XDG_CACHE_HOME:-~/.cache}/bmac/ (once; ~1 min cold)
#   scripts/moto-env.sh start  DIR     a test CA and a serving certificate for 127.0.0.1, then
#                                      moto_server on a free loopback port; writes DIR/env
#   scripts/moto-env.sh stop   DIR     stop it (TERM, KILL after 10 s); idempotent
#   scripts/moto-env.sh status DIR     exit 0 when running and answering, 1 otherwise
#
# DIR/env:  export BMAC_MOTO_ENDPOINT=https://127.0.0.1:PORT
#           export BMAC_MOTO_CA=DIR/pki/ca.crt   (the trust root of its certificate)
# Tests point the AWS SDK at it with AWS_ENDPOINT_URL and AWS_CA_BUNDLE, as a user would point
# the AWS CLI at a proxy. moto serves TLS so that an S3 bucket policy denying plain HTTP
# (aws:SecureTransport=false), which moto enforces, behaves as on AWS. AWS-managed IAM policies
# (AmazonEKSClusterPolicy …) are loaded (MOTO_IAM_LOAD_MANAGED_POLICIES=true). Every request
# moto receives is recorded (its request recorder, MOTO_ENABLE_RECORDING) to DIR/moto.recording,
# so tests can count the calls a run made (GET /moto-api/recorder/download-recording).
#
# Environment: MOTO_ENV_READY_TIMEOUT (seconds, default 30).
# Only loopback addresses are used; packages come from the registry pip is configured with.
set -euo pipefail

readonly MOTO_VERSION='5.2.5'
readonly CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/bmac"
readonly VENV="$CACHE_ROOT/moto-venv-$MOTO_VERSION"

log() { printf '[moto-env] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

cmd_install() {
  if [[ -f "$VENV/.complete" ]]; then
    log "moto $MOTO_VERSION already installed in $VENV"
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is needed"
  command -v openssl >/dev/null || as_root apt-get install -y -qq openssl >/dev/null
  local t0
  t0=$(now_ms)
  # A venv's scripts name their interpreter by absolute path, so it is built in place and
  # marked complete last; a half-made one is rebuilt.
  rm -rf "$VENV"
  mkdir -p "$CACHE_ROOT"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  touch "$VENV/.complete"
  log "moto $MOTO_VERSION installed in $VENV in $(elapsed "$t0")"
}

answers() { # dir -> 0 when moto answers its own API over TLS
  local dir="$1"
  [[ -f "$dir/moto.port" ]] || return 1
  curl -fsS --max-time 3 --cacert "$dir/pki/ca.crt" \
    "https://127.0.0.1:$(<"$dir/moto.port")/moto-api/" >/dev/null 2>&1
}

cmd_start() {
  local dir="${1:?usage: moto-env.sh start DIR}"
  dir=$(abs_dir "$dir")
  [[ -f "$VENV/.complete" ]] || die "moto is not installed: run scripts/moto-env.sh install"
  if pid_alive "$dir" moto && answers "$dir"; then
    log "already running in $dir (https://127.0.0.1:$(<"$dir/moto.port"))"
    return 0
  fi
  cmd_stop "$dir"
  rm -rf "$dir/pki" "$dir/env" "$dir/moto.port" "$dir/moto.log" "$dir/moto.recording"
  local t0 port i timeout
  t0=$(now_ms)
  pki_init "$dir"
  pki_sign "$dir" moto "/CN=moto" "$LOOPBACK_SERVER_EXT
subjectAltName=IP:127.0.0.1,DNS:localhost"
  port=$(free_ports 1)
  echo "$port" >"$dir/moto.port"
  MOTO_IAM_LOAD_MANAGED_POLICIES=true \
    MOTO_ENABLE_RECORDING=True MOTO_RECORDER_FILEPATH="$dir/moto.recording" \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" \
    -s -c "$dir/pki/moto.crt" -k "$dir/pki/moto.key" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  timeout="${MOTO_ENV_READY_TIMEOUT:-30}"
  for ((i = 0; i < timeout * 10; i++)); do
    answers "$dir" && break
    started_alive "$dir" moto || { tail -n 20 "$dir/moto.log" >&2; die "moto exited"; }
    sleep 0.1
  done
  answers "$dir" || { tail -n 20 "$dir/moto.log" >&2; cmd_stop "$dir"; die "moto not ready in ${timeout}s"; }
  cat >"$dir/env" <<EOF
export BMAC_MOTO_ENDPOINT=https://127.0.0.1:$port
export BMAC_MOTO_CA=$dir/pki/ca.crt
EOF
  log "moto ready at https://127.0.0.1:$port in $(elapsed "$t0")"
  log "use: . $dir/env"
}

cmd_stop() {
  local dir="${1:?usage: moto-env.sh stop DIR}"
  [[ -d "$dir" ]] || { log "nothing to stop in $dir"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  stop_one "$dir" moto
}

cmd_status() {
  local dir="${1:?usage: moto-env.sh status DIR}"
  [[ -d "$dir" ]] || { echo "not running (no $dir)"; return 1; }
  dir=$(cd "$dir" && pwd -P)
  if pid_alive "$dir" moto && answers "$dir"; then
    echo "moto: ready at https://127.0.0.1:$(<"$dir/moto.port")"
  else
    echo "moto: not running"
    return 1
  fi
}

dispatch "$@"
