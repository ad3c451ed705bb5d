#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts the servers the
# integration tests need (etcd + kube-apiserver, moto for the AWS provider, and for the GCP
# provider fake-gcs-server and the project's own Google Cloud API test server, on 127.0.0.1),
# runs format, lint and every test with BMAC_E2E=1 (so a test that cannot reach its server
# fails instead of skipping), then stops the servers. Build caches live outside the clone, under ~/.cache/bmac.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bmac/target}"
export BMAC_E2E=1
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

run_dir="$root/target/test-env"
cleanup() {
  if [ -d "$run_dir/kube" ]; then
    bash scripts/kube-env.sh stop "$run_dir/kube" || true
  fi
  if [ -d "$run_dir/moto" ]; then
    bash scripts/moto-env.sh stop "$run_dir/moto" || true
  fi
  if [ -d "$run_dir/gcp" ]; then
    bash scripts/gcp-env.sh stop "$run_dir/gcp" || true
  fi
}
trap cleanup EXIT

# moto first: the apiserver's EKS token webhook asks moto's STS (kube-env.sh reads its env).
step "AWS API server (moto, over TLS)"
bash scripts/moto-env.sh install
bash scripts/moto-env.sh start "$run_dir/moto"
# shellcheck disable=SC1091
source "$run_dir/moto/env"

if [ -f scripts/kube-env.sh ]; then
  step "Kubernetes test environment (etcd + kube-apiserver)"
  bash scripts/kube-env.sh install
  bash scripts/kube-env.sh start "$run_dir/kube"
  # shellcheck disable=SC1091
  source "$run_dir/kube/env"
fi

# After the apiserver: the GKE clusters the test server makes report its address and CA, and
# the apiserver's token webhook learns where to ask about the server's Google tokens (gcp-env.sh
# writes its tokeninfo URL to BMAC_GKE_TOKENINFO_FILE, from the kube env sourced above).
step "Google Cloud APIs (fake-gcs-server and bmac-gcp-test-server)"
bash scripts/gcp-env.sh install
# Operations take 3 s, long enough for the CLI test that kills an apply while the cluster's
# create operation runs (bmac-cli/tests/gcp_cli.rs).
GCP_ENV_DELAY_MS=3000 GCP_ENV_CLUSTER_CA="$run_dir/kube/pki/ca.crt" \
  bash scripts/gcp-env.sh start "$run_dir/gcp"
# shellcheck disable=SC1091
source "$run_dir/gcp/env"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "The README's main job (the quickstart on the simulated cloud) and the Rust examples"
job=$(mktemp -d)
cp -r examples "$job/"
cargo run -q --locked -p bmac-cli -- --spec "$job/examples/quickstart.toml" apply --auto-approve >"$job/apply.log" 2>&1 \
  || { cat "$job/apply.log"; exit 1; }
tail -n 1 "$job/apply.log"
cargo run -q --locked -p bmac-cli -- --spec "$job/examples/quickstart.toml" plan --detailed-exitcode
cargo run -q --locked -p bmac --example embed >/dev/null
cargo run -q --locked -p bmac-providers --example custom_step
rm -rf "$job"

step "cargo test (whole workspace)"
cargo test --workspace --all-features --locked --no-fail-fast
