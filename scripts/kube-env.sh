#!/usr/bin/env bash
# A real Kubernetes API (kube-apiserver 1.20.2 + etcd 3.4) on 127.0.0.1 for bmac's tests.
#
# Usage:
#   scripts/kube-env.sh install        apt-get install etcd, Go 1.19, ...; build kube-apiserver
#                                      from Debian's `kubernetes` source package once and cache it
#                                      under ${XDG_CACHE_HOME:-~/.cache}/bmac/ (about 5+ min cold)
#   scripts/kube-env.sh start  DIR     fresh PKI, tokens, etcd + kube-apiserver on free loopback
#                                      ports; writes DIR/kubeconfig and DIR/env (source it)
#   scripts/kube-env.sh stop   DIR     stop both processes (TERM, KILL after 10 s); idempotent
#   scripts/kube-env.sh status DIR     exit 0 when running and ready, 1 otherwise
#
# DIR/kubeconfig contexts: bmac-admin (token, group system:masters; current context),
# bmac-admin-cert (client certificate, O=system:masters) and bmac-limited (token of user
# bmac-limited, no groups: RBAC forbids it nearly everything).
# DIR/env:  export KUBECONFIG=DIR/kubeconfig; export BMAC_KUBE_SERVER=https://127.0.0.1:PORT
# Tokens are also in DIR/admin.token and DIR/limited.token, the CA in DIR/pki/ca.crt.
#
# EKS tokens: the apiserver also authenticates bearer tokens through a token webhook
# (--authentication-token-webhook-config-file, TokenReview authentication.k8s.io/v1): the
# project's scripts/eks-authenticator.py on a loopback HTTPS port (serving certificate from the
# same test CA), which checks `k8s-aws-v1.` tokens as aws-iam-authenticator does, verifies
# their SigV4 signature with moto's test credentials (testing/testing), asks moto's STS who
# signed them and maps that ARN through DIR/eks/access-entries.json (re-read on every review;
# empty at start, so no EKS identity is mapped until a test writes an entry). It is always
# started, and fails closed: when BMAC_MOTO_ENDPOINT and BMAC_MOTO_CA (scripts/moto-env.sh's
# DIR/env) are not set at `start`, it rejects every EKS token, saying so; the static-token and
# client-certificate contexts work either way. Start moto first to get working EKS tokens.
# DIR/env then also exports BMAC_EKS_CLUSTER (the cluster id tokens must be signed for),
# BMAC_EKS_ACCESS_ENTRIES (that file) and BMAC_EKS_AUTHENTICATOR (its /authenticate URL).
#
# GKE tokens: the same webhook authenticates Google access tokens (`ya29.`) as GKE does, as
# the Google account's e-mail address (no groups), asking the token's issuer — bmac's Google
# Cloud API test server — through its tokeninfo endpoint. That server starts after this one,
# so the webhook reads its URL for every review from DIR/gke/tokeninfo-url, exported as
# BMAC_GKE_TOKENINFO_FILE: scripts/gcp-env.sh start, run with this DIR/env sourced, writes it
# there. Until then (or once that server is stopped) every Google token is rejected. What the
# account may do is RBAC's: no binding is made here (a test binds the account it uses, as GKE
# gives a project owner cluster-admin).
#
# Environment: KUBE_APISERVER (use this binary instead of the cached build),
#              KUBE_ENV_READY_TIMEOUT (seconds, default 60),
#              KUBE_ENV_EKS_CLUSTER (the authenticator's cluster id, default bmac-eks-e2e),
#              BMAC_MOTO_ENDPOINT, BMAC_MOTO_CA (the STS the authenticator asks; see above).
# Only loopback addresses are used. Everything is built and fetched from the package sources the
# machine's own apt configuration names; no host names are written here.
set -euo pipefail

readonly K8S_SRC_VERSION='1.20.5+really1.20.2-1.1+deb12u1'
readonly CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/bmac"
readonly APISERVER_CACHE_DIR="$CACHE_ROOT/kube-apiserver-$K8S_SRC_VERSION"
readonly APT_PACKAGES=(golang-1.19-go etcd-server etcd-client golang-github-modern-go-reflect2-dev
  openssl curl python3 make rsync dpkg-dev)
readonly SYSTEM_SOURCES=/etc/apt/sources.list.d/debian.sources
readonly REFLECT2_DEBIAN=/usr/share/gocode/src/github.com/modern-go/reflect2
AUTHENTICATOR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/eks-authenticator.py"
readonly AUTHENTICATOR

log() { printf '[kube-env] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

apiserver_bin() {
  if [[ -n "${KUBE_APISERVER:-}" ]]; then
    printf '%s\n' "$KUBE_APISERVER"
  else
    printf '%s\n' "$APISERVER_CACHE_DIR/kube-apiserver"
  fi
}

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------
cmd_install() {
  local t0; t0=$(now_ms)
  log "apt-get install ${APT_PACKAGES[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${APT_PACKAGES[@]}" >/dev/null
  # etcd-server's package may start a system etcd on 127.0.0.1:2379; we never rely on it (our
  # instances use free ports) but do not leave an unwanted service running either.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    log "note: a system etcd service is running (ignored; kube-env uses its own instances)"
  fi

  local bin="$APISERVER_CACHE_DIR/kube-apiserver"
  if [[ -x "$bin" ]]; then
    log "cached: $bin"
    log "install done in $(elapsed "$t0")"
    return 0
  fi

  mkdir -p "$CACHE_ROOT"
  # One build at a time per cache (concurrent CI jobs / terminals).
  exec 9>"$CACHE_ROOT/kube-apiserver.lock"
  flock 9
  if [[ -x "$bin" ]]; then
    log "cached (built by a concurrent install): $bin"
    log "install done in $(elapsed "$t0")"
    return 0
  fi

  local work
  work=$(mktemp -d "$CACHE_ROOT/kube-build.XXXXXX")
  # shellcheck disable=SC2064
  trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT
  local build_log="$CACHE_ROOT/kube-apiserver-build.log"

  [[ -r "$SYSTEM_SOURCES" ]] || die "$SYSTEM_SOURCES not found; cannot derive source lines"
  # Private deb-src copy of the machine's own apt sources (same mirrors, suites, keys).
  mkdir -p "$work/apt/lists/partial" "$work/src"
  sed -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' "$SYSTEM_SOURCES" \
    >"$work/apt/deb-src.sources"
  grep -q '^Types: deb-src' "$work/apt/deb-src.sources" ||
    die "no 'Types: deb' stanza in $SYSTEM_SOURCES"
  local apt_opts=(
    -o "Dir::Etc::SourceList=$work/apt/deb-src.sources"
    -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$work/apt/lists"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
  )
  # apt drops privileges to _apt, which cannot write below a private home directory.
  [[ $EUID -eq 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)

  log "fetching source package kubernetes=$K8S_SRC_VERSION"
  apt-get "${apt_opts[@]}" -qq update
  (cd "$work/src" && apt-get "${apt_opts[@]}" -qq source --download-only \
    "kubernetes=$K8S_SRC_VERSION" >/dev/null)
  (cd "$work/src" && dpkg-source -x "kubernetes_${K8S_SRC_VERSION}.dsc" k >"$work/dpkg-source.log" 2>&1) ||
    { cat "$work/dpkg-source.log" >&2; die "dpkg-source -x failed"; }
  local k="$work/src/k"

  # The vendored reflect2 v1.0.1 breaks on Go >= 1.18: use Debian's v1.0.2.
  [[ -d "$REFLECT2_DEBIAN" ]] || die "$REFLECT2_DEBIAN missing (golang-github-modern-go-reflect2-dev)"
  rm -rf "$k/vendor/github.com/modern-go/reflect2"
  cp -a "$REFLECT2_DEBIAN" "$k/vendor/github.com/modern-go/reflect2"
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' \
    "$k/go.mod" "$k/vendor/modules.txt"

  log "building kube-apiserver (log: $build_log; several minutes)"
  local gobase="$CACHE_ROOT/go"
  mkdir -p "$gobase/path" "$gobase/cache"
  # No GOFLAGS: hack/lib/golang.sh would turn e.g. -mod=vendor into a bogus build tag (vendor
  # mode is automatic anyway). The Kubernetes build scripts set their own GOPATH/GOCACHE inside
  # the (temporary) source tree; ours only catch anything run outside them.
  if ! (cd "$k" && env -u GOFLAGS -u GOROOT \
      PATH="/usr/lib/go-1.19/bin:$PATH" CGO_ENABLED=0 GO111MODULE=on \
      GOPATH="$gobase/path" GOCACHE="$gobase/cache" GOPROXY=off GOTOOLCHAIN=local \
      HOME="$work/home" \
      make WHAT=cmd/kube-apiserver >"$build_log" 2>&1); then
    tail -n 40 "$build_log" >&2
    die "kube-apiserver build failed"
  fi
  local out="$k/_output/bin/kube-apiserver"
  [[ -x "$out" ]] || { tail -n 40 "$build_log" >&2; die "no $out after the build"; }
  "$out" --version >&2

  # Atomic publish: copy into a temp dir on the same filesystem, then rename the directory.
  local stage
  stage=$(mktemp -d "$CACHE_ROOT/kube-apiserver-stage.XXXXXX")
  cp "$out" "$stage/kube-apiserver"
  chmod 0755 "$stage" "$stage/kube-apiserver"
  rm -rf "$APISERVER_CACHE_DIR"
  mv "$stage" "$APISERVER_CACHE_DIR"
  log "built $bin"
  log "install done in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# start / stop / status
# ---------------------------------------------------------------------------------------------
readyz() { # dir -> 0 when the apiserver answers /readyz with the admin token
  local dir="$1" port
  [[ -f "$dir/apiserver.port" && -f "$dir/admin.token" ]] || return 1
  port=$(<"$dir/apiserver.port")
  curl -fsS --max-time 3 --cacert "$dir/pki/ca.crt" \
    -H "Authorization: Bearer $(<"$dir/admin.token")" \
    "https://127.0.0.1:$port/readyz" >/dev/null 2>&1
}

cmd_stop() {
  local dir="${1:?usage: kube-env.sh stop DIR}"
  [[ -d "$dir" ]] || { log "nothing to stop in $dir"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  stop_one "$dir" kube-apiserver
  stop_one "$dir" eks-authenticator
  stop_one "$dir" etcd
}

cmd_status() {
  local dir="${1:?usage: kube-env.sh status DIR}" rc=0 n
  [[ -d "$dir" ]] || { echo "not running (no $dir)"; return 1; }
  dir=$(cd "$dir" && pwd -P)
  for n in etcd eks-authenticator kube-apiserver; do
    if pid_alive "$dir" "$n"; then echo "$n: running (pid $(<"$dir/$n.pid"))"
    else echo "$n: not running"; rc=1; fi
  done
  if readyz "$dir"; then
    echo "apiserver: ready at https://127.0.0.1:$(<"$dir/apiserver.port")"
    echo "KUBECONFIG=$dir/kubeconfig"
  else
    echo "apiserver: not ready"; rc=1
  fi
  return "$rc"
}

gen_pki() { # dir
  pki_init "$1"
  pki_sign "$1" apiserver "/CN=kube-apiserver" "$LOOPBACK_SERVER_EXT
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  pki_sign "$1" admin "/O=system:masters/CN=bmac-admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  (
    cd "$1/pki"
    umask 077
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 0644 sa.pub
  )
}

write_kubeconfig() { # dir port
  local dir="$1" port="$2"
  b64() { base64 -w0 <"$1"; }
  (
    umask 077
    cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bmac-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(b64 "$dir/pki/ca.crt")
users:
- name: bmac-admin
  user:
    token: $(<"$dir/admin.token")
- name: bmac-admin-cert
  user:
    client-certificate-data: $(b64 "$dir/pki/admin.crt")
    client-key-data: $(b64 "$dir/pki/admin.key")
- name: bmac-limited
  user:
    token: $(<"$dir/limited.token")
contexts:
- name: bmac-admin
  context:
    cluster: bmac-test
    user: bmac-admin
    namespace: default
- name: bmac-admin-cert
  context:
    cluster: bmac-test
    user: bmac-admin-cert
    namespace: default
- name: bmac-limited
  context:
    cluster: bmac-test
    user: bmac-limited
    namespace: default
current-context: bmac-admin
preferences: {}
EOF
  )
}

# The EKS and GKE token webhook (see the header): its certificate, credentials, empty access
# entries and the apiserver's webhook kubeconfig under DIR/eks, DIR/gke for the tokeninfo URL
# gcp-env.sh writes, then the server, waited for.
start_authenticator() { # dir port
  local dir="$1" port="$2" cluster="${KUBE_ENV_EKS_CLUSTER:-bmac-eks-e2e}" i
  local sts=()
  pki_sign "$dir" eks-authenticator "/CN=eks-authenticator" "$LOOPBACK_SERVER_EXT
subjectAltName=IP:127.0.0.1,DNS:localhost"
  (
    umask 077
    mkdir -p "$dir/eks" "$dir/gke"
    printf '%s\n' "$cluster" >"$dir/eks/cluster"
    # moto's test credentials (what bmac's test harnesses use); STS verifies with the secret.
    printf '{"testing": "testing"}\n' >"$dir/eks/credentials.json"
    printf '{"accessEntries": []}\n' >"$dir/eks/access-entries.json"
    cat >"$dir/eks/webhook.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: eks-authenticator
  cluster:
    server: https://127.0.0.1:$port/authenticate
    certificate-authority: $dir/pki/ca.crt
users:
- name: kube-apiserver
  user: {}
contexts:
- name: webhook
  context:
    cluster: eks-authenticator
    user: kube-apiserver
current-context: webhook
EOF
  )
  if [[ -n "${BMAC_MOTO_ENDPOINT:-}" && -n "${BMAC_MOTO_CA:-}" ]]; then
    sts=(--sts-endpoint "$BMAC_MOTO_ENDPOINT" --sts-ca "$BMAC_MOTO_CA")
  else
    log "note: BMAC_MOTO_ENDPOINT/BMAC_MOTO_CA not set: the EKS authenticator rejects every token"
  fi
  setsid python3 "$AUTHENTICATOR" --port "$port" --cluster-id "$cluster" \
    --credentials "$dir/eks/credentials.json" --access-entries "$dir/eks/access-entries.json" \
    --tls-cert "$dir/pki/eks-authenticator.crt" --tls-key "$dir/pki/eks-authenticator.key" \
    --gke-tokeninfo-file "$dir/gke/tokeninfo-url" \
    "${sts[@]}" </dev/null >"$dir/eks-authenticator.log" 2>&1 &
  echo $! >"$dir/eks-authenticator.pid"
  for ((i = 0; i < 100; i++)); do
    curl -fsS --max-time 1 --cacert "$dir/pki/ca.crt" "https://127.0.0.1:$port/healthz" \
      >/dev/null 2>&1 && return 0
    started_alive "$dir" eks-authenticator ||
      { tail -n 30 "$dir/eks-authenticator.log" >&2; die "eks-authenticator exited"; }
    sleep 0.1
  done
  tail -n 30 "$dir/eks-authenticator.log" >&2
  stop_one "$dir" eks-authenticator
  die "eks-authenticator not answering on port $port"
}

cmd_start() {
  local dir="${1:?usage: kube-env.sh start DIR}"
  local t0; t0=$(now_ms)
  local apiserver; apiserver=$(apiserver_bin)
  [[ -x "$apiserver" ]] || die "$apiserver not found; run: $0 install"
  command -v etcd >/dev/null || die "etcd not found; run: $0 install"
  command -v openssl >/dev/null || die "openssl not found; run: $0 install"

  dir=$(abs_dir "$dir")
  local marker="$dir/.bmac-kube-env"
  if [[ -f "$marker" ]]; then
    if pid_alive "$dir" etcd && pid_alive "$dir" eks-authenticator &&
      pid_alive "$dir" kube-apiserver && readyz "$dir"; then
      log "already running in $dir (https://127.0.0.1:$(<"$dir/apiserver.port"))"
      return 0
    fi
    cmd_stop "$dir"
  elif [[ -n "$(ls -A "$dir")" ]]; then
    die "$dir is not empty and not a kube-env directory; refusing to wipe it"
  fi
  # Fresh state every start (the PKI, tokens and etcd data are throwaway).
  rm -rf "${dir:?}/pki" "$dir/etcd-data" "$dir"/*.pid "$dir"/*.log "$dir/kubeconfig" \
    "$dir/env" "$dir"/*.token "$dir/tokens.csv" "$dir"/*.port "$dir/eks" "$dir/gke"
  chmod 0700 "$dir"
  : >"$marker"

  gen_pki "$dir"
  (
    umask 077
    openssl rand -hex 24 >"$dir/admin.token"
    openssl rand -hex 24 >"$dir/limited.token"
    # token,user,uid,"groups"
    printf '%s,bmac-admin,bmac-admin,"system:masters"\n%s,bmac-limited,bmac-limited\n' \
      "$(<"$dir/admin.token")" "$(<"$dir/limited.token")" >"$dir/tokens.csv"
  )

  local ports etcd_client etcd_peer api_port authn_port
  mapfile -t ports < <(free_ports 4)
  etcd_client=${ports[0]} etcd_peer=${ports[1]} api_port=${ports[2]} authn_port=${ports[3]}
  echo "$api_port" >"$dir/apiserver.port"
  start_authenticator "$dir" "$authn_port"

  # setsid: own session, so the servers outlive this script and a ^C in the caller's terminal.
  (umask 077; mkdir -p "$dir/etcd-data")
  setsid etcd --name bmac-kube-env --data-dir "$dir/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_client" \
    --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "bmac-kube-env=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync=true --logger=zap --log-level=warn \
    </dev/null >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"

  local i
  for ((i = 0; i < 150; i++)); do
    curl -fsS --max-time 1 "http://127.0.0.1:$etcd_client/health" >/dev/null 2>&1 && break
    started_alive "$dir" etcd || { tail -n 30 "$dir/etcd.log" >&2; die "etcd exited"; }
    sleep 0.1
  done

  setsid "$apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_client" \
    --bind-address=127.0.0.1 --secure-port "$api_port" --insecure-port=0 \
    --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" --token-auth-file "$dir/tokens.csv" \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --api-audiences=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=RBAC \
    --authentication-token-webhook-config-file "$dir/eks/webhook.kubeconfig" \
    --authentication-token-webhook-version=v1 \
    --profiling=false \
    </dev/null >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"

  local timeout="${KUBE_ENV_READY_TIMEOUT:-60}" deadline
  deadline=$(( $(date +%s) + timeout ))
  until readyz "$dir"; do
    if ! started_alive "$dir" kube-apiserver || (( $(date +%s) >= deadline )); then
      log "kube-apiserver not ready after $(elapsed "$t0"); last lines of $dir/kube-apiserver.log:"
      tail -n 40 "$dir/kube-apiserver.log" >&2 || true
      cmd_stop "$dir" || true
      exit 1
    fi
    sleep 0.2
  done

  write_kubeconfig "$dir" "$api_port"
  cat >"$dir/env" <<EOF
export KUBECONFIG=$dir/kubeconfig
export BMAC_KUBE_SERVER=https://127.0.0.1:$api_port
export BMAC_EKS_CLUSTER=$(<"$dir/eks/cluster")
export BMAC_EKS_ACCESS_ENTRIES=$dir/eks/access-entries.json
export BMAC_EKS_AUTHENTICATOR=https://127.0.0.1:$authn_port/authenticate
export BMAC_GKE_TOKENINFO_FILE=$dir/gke/tokeninfo-url
EOF
  log "kube-apiserver ready at https://127.0.0.1:$api_port in $(elapsed "$t0")"
  log "use: . $dir/env"
}

dispatch "$@"
