//! `bmac-gcp-test-server`: a local server for the Google Cloud REST APIs that bmac's GKE
//! provider calls, for which no emulator exists (GKE, Compute networks, IAM, Resource
//! Manager, Cloud KMS, Cloud Logging, Cloud Monitoring, Artifact Registry, OAuth and IAM
//! credentials), and Cloud Storage bucket administration, which fake-gcs-server does not serve
//! (see [`storage`]). It speaks the REST paths and JSON the official google-cloud-rust crates
//! send (`$alt=json;enum-encoding=int`), parses and answers with those crates' own serde model
//! types, and refuses fields they do not define; Cloud Storage's JSON API has no such crate,
//! so its shapes are the server's own strict types, after the API's reference.
//!
//! ```text
//! bmac-gcp-test-server --env-file PATH [--delay-ms N] [--cluster-endpoint HOST:PORT]
//!     [--cluster-ca FILE] [--allow-anonymous] [--project ID]... [--exit-with-stdin]
//! ```
//!
//! One process, one listener per service on 127.0.0.1 (real Google services are distinct
//! hosts). Once all listen, PATH is written atomically with `export
//! CLOUDSDK_API_ENDPOINT_OVERRIDES_<SERVICE>=http://127.0.0.1:PORT` lines and
//! `BMAC_GCP_OAUTH=http://127.0.0.1:PORT/token`. State is in memory; long-running changes
//! complete `--delay-ms` (default 200) after they start. Every listener also answers the
//! control endpoints under `/_bmac/` (see [`server`]). With `--exit-with-stdin` the server
//! exits when its standard input closes: a test that spawns it with a pipe never leaves it
//! running, however the test process ends (even aborted).

mod artifactregistry;
mod compute;
mod container;
mod core;
mod iam;
mod kms;
mod logging;
mod monitoring;
mod oauth;
mod policy;
mod resourcemanager;
mod server;
mod storage;

use std::time::Duration;

use server::{Config, Service};

fn usage() -> ! {
    eprintln!(
        "usage: bmac-gcp-test-server --env-file PATH [--delay-ms N] [--cluster-endpoint HOST:PORT] \
         [--cluster-ca FILE] [--allow-anonymous] [--project ID]... [--exit-with-stdin]"
    );
    std::process::exit(2)
}

fn parse_args() -> (std::path::PathBuf, Config) {
    let mut env_file = None;
    let mut exit_with_stdin = false;
    let mut config = Config {
        delay: Duration::from_millis(200),
        cluster_endpoint: None,
        cluster_ca: None,
        allow_anonymous: false,
        projects: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--env-file" => env_file = Some(std::path::PathBuf::from(value())),
            "--delay-ms" => {
                config.delay = Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--cluster-endpoint" => config.cluster_endpoint = Some(value()),
            "--cluster-ca" => {
                let path = value();
                let pem = std::fs::read(&path).unwrap_or_else(|e| {
                    eprintln!("bmac-gcp-test-server: cannot read {path}: {e}");
                    std::process::exit(2)
                });
                config.cluster_ca = Some(server::base64(&pem));
            }
            "--allow-anonymous" => config.allow_anonymous = true,
            "--project" => config.projects.push(value()),
            "--exit-with-stdin" => exit_with_stdin = true,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if exit_with_stdin {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0)
        });
    }
    (env_file.unwrap_or_else(|| usage()), config)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (env_file, config) = parse_args();
    let state = server::shared(config);
    let mut lines = Vec::new();
    for service in Service::ALL {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| {
                eprintln!("bmac-gcp-test-server: cannot listen on 127.0.0.1: {e}");
                std::process::exit(1)
            });
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        lines.push(service.env_line(port));
        tokio::spawn(server::serve(listener, service, state.clone()));
    }
    let tmp = env_file.with_extension("tmp");
    let text = lines.join("\n") + "\n";
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &env_file)) {
        eprintln!(
            "bmac-gcp-test-server: cannot write {}: {e}",
            env_file.display()
        );
        std::process::exit(1);
    }
    eprintln!(
        "bmac-gcp-test-server: listening; wrote {}",
        env_file.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .unwrap_or_else(|e| {
            eprintln!("bmac-gcp-test-server: {e}");
            std::process::exit(1)
        });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
