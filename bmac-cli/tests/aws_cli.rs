//! End-to-end tests of the real `bmac` binary building an EKS cluster on a real AWS API server
//! (moto over TLS, `scripts/moto-env.sh`), pointed at it as the README's "Amazon EKS" section
//! tells users to point bmac at any endpoint: `AWS_ENDPOINT_URL` and `AWS_CA_BUNDLE`, static
//! credentials. The spec (`aws_support::eks_spec`) has a network bmac creates, the cluster,
//! two node pools and the audit pipeline into an S3 archive — what moto serves.
//!
//! - [`an_eks_build_is_applied_reapplied_changed_repaired_and_destroyed`]: the first apply,
//!   read back through the SDK; a re-apply that sends moto no mutating call; one pool
//!   rescaled — one in-place update, exactly one `UpdateNodegroupConfig`; hand changes (logging
//!   off, a pool rescaled) shown by `bmac drift` (exit 2) and put right by `bmac apply`; destroy
//!   leaving nothing bmac made but the log group and the unforced archive bucket, and saying so.
//! - [`an_apply_killed_mid_run_resumes_without_creating_anything_twice`]: `bmac apply` over a
//!   slow link (a delaying proxy), SIGKILLed once the first steps are done and others are
//!   calling AWS; the lock broken as the docs say, the next apply completes, and every
//!   resource exists once.
//!
//! What bmac did is read back from moto through the SDK, and what bmac *sent* is moto's own
//! request log (`aws_support::recorder`), each run signing with its own access key — never
//! bmac's state or output.
//!
//! Run: `scripts/moto-env.sh start /tmp/m && . /tmp/m/env && BMAC_E2E=1 cargo test -p bmac-cli
//! --test aws_cli`. Without a server (and without `BMAC_E2E=1`) every test prints a notice and
//! returns.

#![cfg(feature = "aws")]

mod aws_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use aws_sdk_eks::types::{LogSetup, LogType, Logging, NodegroupScalingConfig};
use aws_support::proxy::SlowProxy;
use aws_support::recorder::{mutating, Call};
use aws_support::{eks_spec, moto, Eks};
use common::{ids, unwrapped};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Every step the spec expands to.
const STEPS: &[&str] = &[
    "network",
    "cluster.role",
    "cluster.key",
    "cluster",
    "node_pool.system.role",
    "node_pool.system",
    "node_pool.general.role",
    "node_pool.general",
    "audit.logging",
    "audit.bucket",
    "audit.archive",
];

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

/// The cluster's VPCs (by bmac's cluster tag).
async fn vpcs(eks: &Eks) -> Vec<String> {
    eks.aws
        .ec2
        .describe_vpcs()
        .filters(tag_filter("bmac.dev/cluster", &eks.name))
        .send()
        .await
        .expect("DescribeVpcs")
        .vpcs()
        .iter()
        .filter(|v| owned_by(v.tags(), &eks.name))
        .filter_map(|v| v.vpc_id().map(str::to_owned))
        .collect()
}

/// Whether EC2 tags name `cluster` as the owner.
fn owned_by(tags: &[aws_sdk_ec2::types::Tag], cluster: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some("bmac.dev/cluster") && t.value() == Some(cluster))
}

/// How many of each network resource tagged as the cluster's exist (NAT gateways: not
/// `deleted`). Tags are checked here too: moto's DescribeNatGateways ignores tag filters.
#[derive(Debug, Default, PartialEq, Eq)]
struct NetworkCount {
    vpcs: usize,
    subnets: usize,
    internet_gateways: usize,
    nat_gateways: usize,
    elastic_ips: usize,
    route_tables: usize,
}

async fn network(eks: &Eks) -> NetworkCount {
    let ec2 = &eks.aws.ec2;
    let owned = || tag_filter("bmac.dev/cluster", &eks.name);
    let ours = |tags: &[aws_sdk_ec2::types::Tag]| owned_by(tags, &eks.name);
    let subnets = ec2.describe_subnets().filters(owned()).send().await;
    let igws = ec2
        .describe_internet_gateways()
        .filters(owned())
        .send()
        .await;
    let nats = ec2.describe_nat_gateways().filter(owned()).send().await;
    let eips = ec2.describe_addresses().filters(owned()).send().await;
    let tables = ec2.describe_route_tables().filters(owned()).send().await;
    NetworkCount {
        vpcs: vpcs(eks).await.len(),
        subnets: subnets
            .expect("DescribeSubnets")
            .subnets()
            .iter()
            .filter(|x| ours(x.tags()))
            .count(),
        internet_gateways: igws
            .expect("DescribeInternetGateways")
            .internet_gateways()
            .iter()
            .filter(|x| ours(x.tags()))
            .count(),
        nat_gateways: nats
            .expect("DescribeNatGateways")
            .nat_gateways()
            .iter()
            .filter(|x| ours(x.tags()) && x.state().map(|s| s.as_str()) != Some("deleted"))
            .count(),
        elastic_ips: eips
            .expect("DescribeAddresses")
            .addresses()
            .iter()
            .filter(|x| ours(x.tags()))
            .count(),
        route_tables: tables
            .expect("DescribeRouteTables")
            .route_tables()
            .iter()
            .filter(|x| ours(x.tags()))
            .count(),
    }
}

/// `(min, max, desired)` of a node group.
async fn scaling(eks: &Eks, pool: &str) -> (i32, i32, i32) {
    let out = eks
        .aws
        .eks
        .describe_nodegroup()
        .cluster_name(&eks.name)
        .nodegroup_name(pool)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeNodegroup {pool}: {e:?}"));
    let s = out
        .nodegroup()
        .and_then(|g| g.scaling_config())
        .expect("a node group has scaling");
    (
        s.min_size().unwrap_or(-1),
        s.max_size().unwrap_or(-1),
        s.desired_size().unwrap_or(-1),
    )
}

/// The control-plane log types switched on, sorted.
async fn logging_on(eks: &Eks) -> Vec<String> {
    let out = eks
        .aws
        .eks
        .describe_cluster()
        .name(&eks.name)
        .send()
        .await
        .expect("DescribeCluster");
    let mut on: Vec<String> = out
        .cluster()
        .and_then(|c| c.logging())
        .map(|l| l.cluster_logging())
        .unwrap_or_default()
        .iter()
        .filter(|s| s.enabled() == Some(true))
        .flat_map(|s| s.types())
        .map(|t| t.as_str().to_owned())
        .collect();
    on.sort();
    on
}

/// Reads back what the first apply built: the network, the cluster, both node groups and the
/// audit pipeline.
async fn check_built(eks: &Eks) {
    let aws = &eks.aws;
    let vpc = vpcs(eks).await;
    assert_eq!(vpc.len(), 1, "one VPC: {vpc:?}");
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(&vpc[0]).build())
        .send()
        .await
        .expect("DescribeSubnets");
    assert_eq!(
        subnets.subnets().len(),
        4,
        "a private and a public subnet per zone"
    );

    let cluster = aws
        .eks
        .describe_cluster()
        .name(&eks.name)
        .send()
        .await
        .expect("DescribeCluster");
    let cluster = cluster.cluster().expect("the cluster");
    assert_eq!(cluster.version(), Some("1.30"));
    assert_eq!(
        cluster.status().map(|s| s.as_str()),
        Some("ACTIVE"),
        "{cluster:?}"
    );
    // (moto leaves `vpcId` out of the cluster's VPC config: its subnets say where it is.)
    let mut in_vpc: Vec<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id())
        .collect();
    let mut of_cluster: Vec<&str> = cluster
        .resources_vpc_config()
        .map(|v| v.subnet_ids().iter().map(String::as_str).collect())
        .unwrap_or_default();
    in_vpc.sort_unstable();
    of_cluster.sort_unstable();
    assert_eq!(of_cluster, in_vpc, "the cluster is in the VPC's subnets");

    let groups = aws
        .eks
        .list_nodegroups()
        .cluster_name(&eks.name)
        .send()
        .await
        .expect("ListNodegroups");
    let mut groups = groups.nodegroups().to_vec();
    groups.sort();
    assert_eq!(groups, ["general", "system"]);
    assert_eq!(scaling(eks, "system").await, (1, 3, 1));
    assert_eq!(scaling(eks, "general").await, (2, 5, 2));

    assert_eq!(logging_on(eks).await, ["api", "audit", "authenticator"]);
    aws.s3
        .head_bucket()
        .bucket(&eks.bucket)
        .send()
        .await
        .expect("the archive bucket exists");
    let stream = aws
        .firehose
        .describe_delivery_stream()
        .delivery_stream_name(format!("bmac-{}-audit", eks.name))
        .send()
        .await
        .expect("the Firehose stream exists");
    let arn = stream
        .delivery_stream_description()
        .map(|d| d.delivery_stream_arn().to_owned())
        .expect("a stream has an ARN");
    assert_eq!(
        subscriptions(eks).await,
        [arn],
        "the log group feeds the stream"
    );
}

/// The destinations of the subscription filters on the cluster's log group.
async fn subscriptions(eks: &Eks) -> Vec<String> {
    eks.aws
        .logs
        .describe_subscription_filters()
        .log_group_name(format!("/aws/eks/{}/cluster", eks.name))
        .send()
        .await
        .expect("DescribeSubscriptionFilters")
        .subscription_filters()
        .iter()
        .filter_map(|f| f.destination_arn().map(str::to_owned))
        .collect()
}

/// Asserts that nothing bmac made for the cluster is left but what destroy documents as kept
/// (the log group; the archive bucket when not `force_destroy`) and the KMS key, which AWS
/// only schedules for deletion.
async fn check_destroyed(eks: &Eks) {
    let aws = &eks.aws;
    let name = eks.name.as_str();
    assert!(
        aws.eks.describe_cluster().name(name).send().await.is_err(),
        "the cluster is gone"
    );
    for pool in ["system", "general"] {
        assert!(
            aws.eks
                .describe_nodegroup()
                .cluster_name(name)
                .nodegroup_name(pool)
                .send()
                .await
                .is_err(),
            "node group {pool} is gone"
        );
    }
    assert_eq!(
        network(eks).await,
        NetworkCount::default(),
        "nothing of the network is left"
    );
    // Every page: other tests' resources share the server.
    let templates: Vec<_> = aws
        .ec2
        .describe_launch_templates()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .expect("DescribeLaunchTemplates");
    let ours: Vec<_> = templates
        .iter()
        .filter_map(|t| t.launch_template_name())
        .filter(|n| n.starts_with(&format!("bmac-{name}-")))
        .collect();
    assert!(ours.is_empty(), "launch templates left: {ours:?}");
    let roles: Vec<_> = aws
        .iam
        .list_roles()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .expect("ListRoles");
    let ours: Vec<_> = roles
        .iter()
        .map(|r| r.role_name())
        .filter(|n| n.contains(name))
        .collect();
    assert!(ours.is_empty(), "roles left: {ours:?}");
    assert!(
        aws.firehose
            .describe_delivery_stream()
            .delivery_stream_name(format!("bmac-{name}-audit"))
            .send()
            .await
            .is_err(),
        "the Firehose stream is gone"
    );
    assert!(
        aws.kms
            .describe_key()
            .key_id(format!("alias/bmac/{name}/secrets"))
            .send()
            .await
            .is_err(),
        "the key's alias is gone (the key waits out its deletion window)"
    );

    // Kept, as documented.
    let group = format!("/aws/eks/{name}/cluster");
    let groups = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .expect("DescribeLogGroups");
    assert_eq!(groups.log_groups().len(), 1, "the log group is kept");
    assert_eq!(
        subscriptions(eks).await,
        Vec::<String>::new(),
        "the subscription filter is gone"
    );
    aws.s3
        .head_bucket()
        .bucket(&eks.bucket)
        .send()
        .await
        .expect("the archive bucket is kept (force_destroy = false)");
}

/// The steps a human `bmac plan` lists as changing.
fn planned_changes(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|l| l.contains(" will be ") || l.contains(" must be replaced"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_build_is_applied_reapplied_changed_repaired_and_destroyed() {
    let Some(moto) = moto() else { return };
    let t0 = Instant::now();
    let eks = Eks::new(moto, eks_spec).await;
    let rec = &eks.recorder;

    // The spec has no policy engine (moto runs no cluster to install one in): apply refuses
    // it on the baseline, before any AWS call, unless told to go ahead.
    let refused = eks
        .bmac(&["apply", "--auto-approve"])
        .expect(3, "lint refusal");
    assert!(
        unwrapped(&refused.stderr()).contains("BMAC005"),
        "{}",
        refused.stderr()
    );
    assert_eq!(
        refused.calls(rec),
        Vec::<Call>::new(),
        "refused before any AWS call"
    );

    // 1. The first apply builds every step; read back through the SDK.
    let first = eks.apply("first apply");
    let succeeded = ids(&first.events(), "step_succeeded");
    for step in STEPS {
        assert!(
            succeeded.iter().any(|s| s == step),
            "{step} did not succeed: {succeeded:?}"
        );
    }
    let created = mutating(&first.calls(rec));
    for action in [
        "CreateVpc",
        "CreateCluster",
        "CreateNodegroup",
        "CreateDeliveryStream",
    ] {
        assert!(
            created.iter().any(|a| a == action),
            "no {action} in {created:?}"
        );
    }
    check_built(&eks).await;

    // 2. Re-applying the same spec observes everything and changes nothing: no mutating call
    // reaches AWS.
    let again = eks.apply("re-apply");
    assert!(
        ids(&again.events(), "step_started").is_empty(),
        "a no-op apply started steps: {}",
        again.stdout()
    );
    let calls = again.calls(rec);
    for read in [
        "DescribeVpcs",
        "DescribeCluster",
        "DescribeNodegroup",
        "DescribeDeliveryStream",
    ] {
        assert!(
            calls.iter().any(|c| c.action == read),
            "the re-apply did not observe with {read}: {calls:?}"
        );
    }
    assert_eq!(
        mutating(&calls),
        Vec::<String>::new(),
        "the re-apply wrote to AWS"
    );

    // 3. One pool rescaled: the plan shows one in-place update, the apply sends exactly one
    // UpdateNodegroupConfig, for that pool.
    eks.sandbox
        .edit_spec("max = 5\ndesired = 2", "max = 8\ndesired = 4");
    let plan = eks
        .bmac(&["plan", "--detailed-exitcode"])
        .expect(2, "plan after rescaling");
    let text = plan.stdout();
    assert_eq!(planned_changes(&text), ["node_pool.general"], "{text}");
    assert!(
        text.contains("node_pool.general (node_pool) will be updated in place"),
        "{text}"
    );
    assert!(
        text.contains("~ /scaling/max: 5 → 8") && text.contains("~ /scaling/desired: 2 → 4"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{text}"
    );
    assert_eq!(
        mutating(&plan.calls(rec)),
        Vec::<String>::new(),
        "plan wrote"
    );
    let scaled = eks.apply("apply the rescaling");
    let calls = scaled.calls(rec);
    assert_eq!(mutating(&calls), ["UpdateNodegroupConfig"], "{calls:?}");
    let update = calls.iter().find(|c| c.mutating).expect("the update");
    assert!(
        update.path.ends_with(&format!(
            "/clusters/{}/node-groups/general/update-config",
            eks.name
        )),
        "{update:?}"
    );
    assert_eq!(scaling(&eks, "general").await, (2, 8, 4));
    assert_eq!(
        scaling(&eks, "system").await,
        (1, 3, 1),
        "the other pool is untouched"
    );

    // 4. Hand changes: control-plane logging off, the system pool rescaled.
    let all_off = LogSetup::builder()
        .types(LogType::Api)
        .types(LogType::Audit)
        .types(LogType::Authenticator)
        .enabled(false)
        .build();
    eks.aws
        .eks
        .update_cluster_config()
        .name(&eks.name)
        .logging(Logging::builder().cluster_logging(all_off).build())
        .send()
        .await
        .expect("UpdateClusterConfig by hand");
    eks.aws
        .eks
        .update_nodegroup_config()
        .cluster_name(&eks.name)
        .nodegroup_name("system")
        .scaling_config(
            NodegroupScalingConfig::builder()
                .min_size(1)
                .max_size(6)
                .desired_size(2)
                .build(),
        )
        .send()
        .await
        .expect("UpdateNodegroupConfig by hand");
    assert_eq!(logging_on(&eks).await, Vec::<String>::new());

    let drift = eks.bmac(&["drift"]).expect(2, "drift after hand changes");
    let text = drift.stdout();
    for line in [
        "~ node_pool.system (node_pool) changed outside bmac:",
        "    /scaling/desired: applied 1 → now 2",
        "    /scaling/max: applied 3 → now 6",
        "~ audit.logging (audit_logging) changed outside bmac:",
        "    /log_types: applied [\"api\",\"audit\",\"authenticator\"] → now []",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("node_pool.general"), "{text}");
    assert_eq!(
        mutating(&drift.calls(rec)),
        Vec::<String>::new(),
        "drift wrote"
    );

    // The plan puts them right in place; the archive, fed by the logging step's outputs, is
    // re-checked.
    let plan = eks
        .bmac(&["plan", "--detailed-exitcode"])
        .expect(2, "plan after hand changes");
    let text = plan.stdout();
    assert_eq!(
        planned_changes(&text),
        ["node_pool.system", "audit.logging", "audit.archive"],
        "{text}"
    );
    assert!(text.contains("~ /scaling/max: 6 → 3"), "{text}");
    let repair = eks.apply("apply after the hand changes");
    let calls = repair.calls(rec);
    assert_eq!(
        sorted(mutating(&calls)),
        ["UpdateClusterConfig", "UpdateNodegroupConfig"],
        "{calls:?}"
    );
    assert_eq!(logging_on(&eks).await, ["api", "audit", "authenticator"]);
    assert_eq!(scaling(&eks, "system").await, (1, 3, 1));
    eks.bmac(&["drift"]).expect(0, "drift after the repair");

    let key_id = eks
        .aws
        .kms
        .describe_key()
        .key_id(format!("alias/bmac/{}/secrets", eks.name))
        .send()
        .await
        .expect("the Secrets key")
        .key_metadata()
        .map(|k| k.key_id().to_owned())
        .expect("a key has an id");

    // 5. Destroy: everything bmac made goes but the log group and the unforced bucket, and
    // the run says what it kept.
    let destroy = eks
        .bmac(&["destroy", "--auto-approve"])
        .expect(0, "destroy");
    let said = destroy.stderr();
    assert!(
        said.contains(&format!("kept log group /aws/eks/{}/cluster", eks.name)),
        "{said}"
    );
    assert!(
        said.contains(&format!("kept bucket {}", eks.bucket)),
        "{said}"
    );
    let calls = destroy.calls(rec);
    let deleted = mutating(&calls);
    assert!(
        deleted.iter().any(|a| a == "DeleteCluster") && deleted.iter().any(|a| a == "DeleteVpc"),
        "{deleted:?}"
    );
    assert!(
        !deleted
            .iter()
            .any(|a| a == "DeleteLogGroup" || *a == format!("DELETE /{}", eks.bucket)),
        "destroy deleted what it keeps: {deleted:?}"
    );
    check_destroyed(&eks).await;
    let key = eks
        .aws
        .kms
        .describe_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("DescribeKey");
    assert_eq!(
        key.key_metadata()
            .and_then(|k| k.key_state())
            .map(|s| s.as_str()),
        Some("PendingDeletion"),
        "KMS keys are scheduled for deletion, as documented"
    );
    eprintln!("lifecycle took {:.1}s", t0.elapsed().as_secs_f64());
}

/// What a killed run had printed when it was killed.
struct Killed {
    /// The access key it signed with.
    key: String,
    /// Steps it reported done.
    succeeded: BTreeSet<String>,
    /// Steps it had started and not finished.
    running: BTreeSet<String>,
}

/// The steps the journal holds an `applied` record of.
fn journaled_applied(eks: &Eks) -> BTreeSet<String> {
    std::fs::read_to_string(eks.sandbox.state_dir().join("journal.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.find('{').map(|at| &line[at..]))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|r| r["record"] == "applied")
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

/// Starts `bmac apply` through `proxy`; once it has reported a step done and the journal
/// holds that step's result, SIGKILLs it. Returns what it had reported by then.
fn apply_killed_after_first_step(eks: &Eks, proxy: &SlowProxy) -> Killed {
    let (mut child, key) = eks.spawn(
        &proxy.endpoint(),
        &[
            "--output",
            "json",
            "apply",
            "--auto-approve",
            "--allow-lint-errors",
        ],
    );
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(event);
            }
        }
    });
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = rx.recv_timeout(left) else {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("the apply reported no finished step within a minute: {events:?}");
        };
        events.push(event.clone());
        match event["event"].as_str() {
            Some("step_succeeded") => break event["id"].as_str().unwrap_or_default().to_owned(),
            Some("step_failed") | Some("run_finished") => {
                let _ = kill(pid, Signal::SIGKILL);
                panic!("the apply ended before it could be killed: {events:?}");
            }
            _ => {}
        }
    };
    // The executor reports a step done when it queues the step's result; the journal commits
    // it with its next batch. Kill once the result is durable, so the resume has a step that
    // is done and recorded as well as steps in flight.
    let recorded = Instant::now() + Duration::from_secs(10);
    while !journaled_applied(eks).contains(&first) {
        assert!(
            Instant::now() < recorded,
            "{first} never reached the journal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(pid, Signal::SIGKILL).expect("SIGKILL bmac");
    let status = child.wait().expect("wait for bmac");
    reader.join().expect("the reader thread");
    events.extend(rx.try_iter());
    assert!(status.code().is_none(), "bmac was killed: {status:?}");
    let started: BTreeSet<String> = ids(&events, "step_started").into_iter().collect();
    let succeeded: BTreeSet<String> = ids(&events, "step_succeeded").into_iter().collect();
    let running = started.difference(&succeeded).cloned().collect();
    Killed {
        key,
        succeeded,
        running,
    }
}

/// How many times each create of a resource AWS lets exist twice (no unique name) was called.
fn creates(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in calls {
        if matches!(
            c.action.as_str(),
            "CreateVpc"
                | "CreateSubnet"
                | "CreateInternetGateway"
                | "CreateRouteTable"
                | "AllocateAddress"
                | "CreateNatGateway"
                | "CreateKey"
                | "CreateLaunchTemplate"
        ) {
            *counts.entry(c.action.clone()).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_mid_run_resumes_without_creating_anything_twice() {
    let Some(moto) = moto() else { return };
    let t0 = Instant::now();
    let eks = Eks::new(moto, eks_spec).await;
    let upstream: SocketAddr = eks
        .moto
        .endpoint
        .trim_start_matches("https://")
        .parse()
        .expect("BMAC_MOTO_ENDPOINT is https://127.0.0.1:PORT");
    // 150 ms per request on the wire: the network alone makes a few dozen calls in order, so
    // the first steps finish while it is still building.
    let proxy = SlowProxy::start(upstream, Duration::from_millis(150));

    let killed = apply_killed_after_first_step(&eks, &proxy);
    assert!(
        !killed.running.is_empty(),
        "the kill landed with steps in flight: done {:?}",
        killed.succeeded
    );
    // What the journal says: steps done and recorded are applied, steps whose calls were
    // running (and any done whose result was not yet committed) are in doubt, steps never
    // started are not in state.
    let applied = eks.sandbox.ids_with_status("applied");
    let in_doubt = eks.sandbox.ids_with_status("in doubt");
    assert!(!applied.is_empty(), "a step was done and recorded");
    assert!(
        applied.is_subset(&killed.succeeded),
        "applied {applied:?}, reported done {:?}",
        killed.succeeded
    );
    assert!(
        killed.running.is_subset(&in_doubt),
        "steps running at the kill are in doubt: running {:?}, in doubt {in_doubt:?}",
        killed.running
    );
    assert!(
        applied.len() + in_doubt.len() < STEPS.len(),
        "some steps had not started"
    );

    // The resume: break the stale lock as `bmac state list` says, apply again.
    eks.sandbox.unlock_stale();
    let resumed = eks.apply("the resumed apply");
    let started = ids(&resumed.events(), "step_started");
    assert!(
        started.iter().all(|s| !applied.contains(s)),
        "the resume redid steps the journal had: {started:?} vs {applied:?}"
    );
    let after: BTreeSet<String> = eks.sandbox.ids_with_status("applied");
    let all: BTreeSet<String> = STEPS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(after, all, "every step is applied after the resume");
    check_built(&eks).await;

    // Nothing was created twice: each create of a resource that has no unique name was sent
    // once over both runs, as many times as there are such resources …
    let both = eks.recorder.calls_of(&[&killed.key, &resumed.key]);
    // Two zones, one NAT gateway: a private and a public subnet per zone, the public route
    // table and a private one per zone, one Elastic IP for the NAT; a launch template per pool.
    let expected: BTreeMap<String, usize> = [
        ("AllocateAddress", 1),
        ("CreateInternetGateway", 1),
        ("CreateKey", 1),
        ("CreateLaunchTemplate", 2),
        ("CreateNatGateway", 1),
        ("CreateRouteTable", 3),
        ("CreateSubnet", 4),
        ("CreateVpc", 1),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_owned(), n))
    .collect();
    assert_eq!(
        creates(&both),
        expected,
        "{:#?}",
        both.iter().map(|c| &c.action).collect::<Vec<_>>()
    );
    // … and what exists is one of each.
    assert_eq!(
        network(&eks).await,
        NetworkCount {
            vpcs: 1,
            subnets: 4,
            internet_gateways: 1,
            nat_gateways: 1,
            elastic_ips: 1,
            route_tables: 3,
        }
    );
    let clusters = eks
        .aws
        .eks
        .list_clusters()
        .send()
        .await
        .expect("ListClusters");
    assert_eq!(
        clusters
            .clusters()
            .iter()
            .filter(|c| **c == eks.name)
            .count(),
        1
    );
    eks.bmac(&["plan", "--detailed-exitcode"])
        .expect(0, "plan after the resume");

    eks.bmac(&["destroy", "--auto-approve"])
        .expect(0, "destroy after the resume");
    check_destroyed(&eks).await;
    eprintln!("kill and resume took {:.1}s", t0.elapsed().as_secs_f64());
}
