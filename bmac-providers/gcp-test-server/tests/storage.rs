//! The test server's Cloud Storage JSON API (bucket administration, bucket IAM policies and
//! the few object calls) driven over raw HTTP, as bmac's own client speaks it. Every test
//! starts its own server.

mod support;

use serde_json::{json, Value};
use support::{http, http_full, http_raw, Server};

const PROJECT: &str = "bmac-test-project";

/// The storage listener's root.
fn gcs(server: &Server) -> String {
    server.url("STORAGE")
}

/// Inserts `body` as a bucket of `project`; the status and the answer.
fn insert(server: &Server, project: &str, body: Value) -> (u16, Value) {
    http(
        "POST",
        &format!("{}/storage/v1/b?project={project}", gcs(server)),
        Some(&body),
        None,
    )
}

fn bucket(server: &Server, name: &str) -> (u16, Value) {
    http(
        "GET",
        &format!("{}/storage/v1/b/{name}", gcs(server)),
        None,
        None,
    )
}

fn patch(server: &Server, name: &str, query: &str, body: Value) -> (u16, Value) {
    http(
        "PATCH",
        &format!("{}/storage/v1/b/{name}{query}", gcs(server)),
        Some(&body),
        None,
    )
}

fn upload(server: &Server, bucket: &str, query: &str, data: &[u8]) -> (u16, Value) {
    let (status, _, body) = http_raw(
        "POST",
        &format!(
            "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&{query}",
            gcs(server)
        ),
        data,
        None,
    );
    (status, body)
}

fn edit(server: &Server, name: &str, patch: Value) -> (u16, Value) {
    http(
        "POST",
        &format!("{}/_bmac/edit", gcs(server)),
        Some(&json!({"name": name, "patch": patch})),
        None,
    )
}

/// The `errors[0].reason` of a JSON API error body.
fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

#[test]
fn buckets_are_inserted_read_listed_patched_and_deleted() {
    support::run(async {
        let server = Server::start(&["--allow-anonymous"]);
        let (status, b) = insert(
            &server,
            PROJECT,
            json!({
                "name": "bmac-archive",
                "location": "europe-west1",
                "labels": {"bmac-cluster": "prod", "team": "platform"},
                "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"},
                "retentionPolicy": {"retentionPeriod": "86400"},
                "lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {"age": 30}}]},
            }),
        );
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["kind"], "storage#bucket");
        assert_eq!(b["id"], "bmac-archive");
        assert_eq!(b["metageneration"], "1");
        assert_eq!(b["location"], "EUROPE-WEST1");
        assert_eq!(b["locationType"], "region");
        assert_eq!(b["storageClass"], "STANDARD");
        assert_eq!(b["etag"], "CAE=");
        let number = b["projectNumber"]
            .as_str()
            .expect("a string project number");
        assert_eq!(number.len(), 12);
        assert!(b["timeCreated"].as_str().unwrap().ends_with('Z'), "{b}");
        let iam = &b["iamConfiguration"];
        assert_eq!(iam["uniformBucketLevelAccess"]["enabled"], true);
        assert!(iam["uniformBucketLevelAccess"]["lockedTime"].is_string());
        assert_eq!(iam["bucketPolicyOnly"], iam["uniformBucketLevelAccess"]);
        assert_eq!(iam["publicAccessPrevention"], "enforced");
        assert_eq!(b["retentionPolicy"]["retentionPeriod"], "86400");
        assert!(b["retentionPolicy"]["effectiveTime"].is_string());
        assert!(b["retentionPolicy"].get("isLocked").is_none());
        assert_eq!(b["lifecycle"]["rule"][0]["condition"]["age"], 30);
        assert_eq!(bucket(&server, "bmac-archive"), (200, b.clone()));

        // Taken names: by this project, by another.
        let (status, e) = insert(&server, PROJECT, json!({"name": "bmac-archive"}));
        assert_eq!((status, reason(&e)), (409, "conflict"));
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("you already own it"));
        let (status, e) = insert(&server, "other-project", json!({"name": "bmac-archive"}));
        assert_eq!(status, 409);
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not available"));
        for bad in [
            "ab",
            "Bmac",
            "-bmac",
            "192.168.0.1",
            "goog-logs",
            "my-google-logs",
        ] {
            let (status, e) = insert(&server, PROJECT, json!({"name": bad}));
            assert_eq!((status, reason(&e)), (400, "invalid"), "{bad}: {e}");
        }
        let (status, e) = http(
            "POST",
            &format!("{}/storage/v1/b", gcs(&server)),
            Some(&json!({"name": "no-project"})),
            None,
        );
        assert_eq!((status, reason(&e)), (400, "required"));
        let (status, e) = insert(&server, PROJECT, json!({"name": "strict", "bogus": 1}));
        assert_eq!(status, 400, "unknown fields are refused: {e}");

        // 404 in GCS's error shape.
        let (status, e) = bucket(&server, "nobody");
        assert_eq!(status, 404);
        assert_eq!(e["error"]["code"], 404);
        assert_eq!(
            e["error"]["message"],
            "The specified bucket does not exist."
        );
        assert_eq!(reason(&e), "notFound");

        // Listing: the project's buckets, by prefix, in pages.
        insert(&server, PROJECT, json!({"name": "bmac-backups"}));
        insert(&server, PROJECT, json!({"name": "team-data"}));
        insert(&server, "other-project", json!({"name": "bmac-theirs"}));
        let list = |query: &str| {
            http(
                "GET",
                &format!("{}/storage/v1/b?project={PROJECT}{query}", gcs(&server)),
                None,
                None,
            )
            .1
        };
        let names = |v: &Value| -> Vec<String> {
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| b["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let all = list("");
        assert_eq!(all["kind"], "storage#buckets");
        assert_eq!(names(&all), ["bmac-archive", "bmac-backups", "team-data"]);
        assert_eq!(
            names(&list("&prefix=bmac-")),
            ["bmac-archive", "bmac-backups"]
        );
        let first = list("&maxResults=2");
        assert_eq!(names(&first), ["bmac-archive", "bmac-backups"]);
        let token = first["nextPageToken"].as_str().unwrap();
        let rest = list(&format!("&maxResults=2&pageToken={token}"));
        assert_eq!(names(&rest), ["team-data"]);
        assert!(rest.get("nextPageToken").is_none());
        assert!(
            list("&prefix=none").get("items").is_none(),
            "no items, no key"
        );

        // PATCH merges what it names and bumps the metageneration; a stale one is 412.
        let (status, p) = patch(
            &server,
            "bmac-archive",
            "?ifMetagenerationMatch=1",
            json!({"labels": {"team": null, "env": "prod"}, "retentionPolicy": {"retentionPeriod": 172800}}),
        );
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["metageneration"], "2");
        assert_eq!(p["labels"], json!({"bmac-cluster": "prod", "env": "prod"}));
        assert_eq!(p["retentionPolicy"]["retentionPeriod"], "172800");
        assert_eq!(p["iamConfiguration"], b["iamConfiguration"], "untouched");
        assert_eq!(p["lifecycle"], b["lifecycle"]);
        assert_ne!(p["etag"], b["etag"]);
        let (status, e) = patch(
            &server,
            "bmac-archive",
            "?ifMetagenerationMatch=1",
            json!({"labels": {"x": "y"}}),
        );
        assert_eq!((status, reason(&e)), (412, "conditionNotMet"));
        for bad in [
            json!({"labels": {"Upper": "x"}}),
            json!({"labels": {"k": "has space"}}),
            json!({"iamConfiguration": {"publicAccessPrevention": "sometimes"}}),
            json!({"lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {}}]}}),
            json!({"lifecycle": {"rule": [{"action": {"type": "Shred"}, "condition": {"age": 1}}]}}),
            json!({"retentionPolicy": {"retentionPeriod": "0"}}),
            json!({"retentionPolicy": {"retentionPeriod": "3155760001"}}),
            json!({"notAField": true}),
        ] {
            let (status, e) = patch(&server, "bmac-archive", "", bad.clone());
            assert_eq!(status, 400, "{bad}: {e}");
        }
        let (_, p) = patch(
            &server,
            "bmac-archive",
            "",
            json!({"retentionPolicy": null, "lifecycle": null}),
        );
        assert!(
            p.get("retentionPolicy").is_none() && p.get("lifecycle").is_none(),
            "{p}"
        );
        let (_, p) = patch(
            &server,
            "bmac-archive",
            "",
            json!({"iamConfiguration": {"uniformBucketLevelAccess": {"enabled": false}}}),
        );
        let iam = &p["iamConfiguration"];
        assert_eq!(iam["uniformBucketLevelAccess"], json!({"enabled": false}));
        assert_eq!(iam["bucketPolicyOnly"], json!({"enabled": false}));
        assert_eq!(iam["publicAccessPrevention"], "enforced");

        // A hand edit is a change like any other: a new metageneration.
        let (status, e) = edit(
            &server,
            "b/bmac-archive",
            json!({"iamConfiguration": {"publicAccessPrevention": "inherited"}}),
        );
        assert_eq!(status, 200, "{e}");
        let (_, now) = bucket(&server, "bmac-archive");
        assert_eq!(
            now["iamConfiguration"]["publicAccessPrevention"],
            "inherited"
        );
        assert_eq!(
            now["metageneration"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            p["metageneration"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                + 1
        );

        // Deleted: 204 with no body, then 404.
        let (status, head, body) = http_full(
            "DELETE",
            &format!("{}/storage/v1/b/bmac-backups", gcs(&server)),
            None,
            None,
        );
        assert_eq!(status, 204, "{head}");
        assert_eq!(body, Value::Null);
        assert_eq!(bucket(&server, "bmac-backups").0, 404);
    });
}

#[test]
fn a_retention_policy_protects_objects_and_once_locked_only_grows() {
    support::run(async {
        let server = Server::start(&["--allow-anonymous"]);
        let (status, _) = insert(
            &server,
            PROJECT,
            json!({"name": "bmac-audit", "retentionPolicy": {"retentionPeriod": "86400"}}),
        );
        assert_eq!(status, 200);
        let (status, o) = upload(&server, "bmac-audit", "name=logs/2026/01/a.json", b"{}");
        assert_eq!(status, 200, "{o}");
        assert_eq!(o["kind"], "storage#object");
        assert_eq!(o["name"], "logs/2026/01/a.json");
        assert_eq!(o["bucket"], "bmac-audit");
        assert_eq!(o["size"], "2");
        assert_eq!(o["metageneration"], "1");
        assert!(o["generation"].as_str().unwrap().parse::<u64>().is_ok());
        assert!(o["retentionExpirationTime"].is_string(), "{o}");
        let (status, e) = upload(&server, "bmac-audit", "name=x", b"");
        assert_eq!(status, 200, "{e}");
        let (status, e) = upload(
            &server,
            "bmac-audit",
            "name=x&ifGenerationMatch=0",
            b"again",
        );
        assert_eq!((status, reason(&e)), (412, "conditionNotMet"));
        let (status, _, e) = http_raw(
            "POST",
            &format!("{}/upload/storage/v1/b/bmac-audit/o?name=y", gcs(&server)),
            b"",
            None,
        );
        assert_eq!((status, reason(&e)), (400, "required"));

        let objects = |server: &Server| -> Vec<String> {
            let (_, list) = http(
                "GET",
                &format!("{}/storage/v1/b/bmac-audit/o", gcs(server)),
                None,
                None,
            );
            assert_eq!(list["kind"], "storage#objects");
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(objects(&server), ["logs/2026/01/a.json", "x"]);
        let delete_object = |name: &str| {
            http(
                "DELETE",
                &format!("{}/storage/v1/b/bmac-audit/o/{name}", gcs(&server)),
                None,
                None,
            )
        };
        // Young objects are retained: not deleted, not overwritten; the bucket is not empty.
        let (status, e) = delete_object("logs%2F2026%2F01%2Fa.json");
        assert_eq!((status, reason(&e)), (403, "retentionPolicyNotMet"), "{e}");
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bmac-audit/logs/2026/01/a.json"));
        let (status, e) = upload(&server, "bmac-audit", "name=x", b"new");
        assert_eq!((status, reason(&e)), (403, "retentionPolicyNotMet"));
        let (status, e) = http(
            "DELETE",
            &format!("{}/storage/v1/b/bmac-audit", gcs(&server)),
            None,
            None,
        );
        assert_eq!((status, reason(&e)), (409, "conflict"));
        assert_eq!(delete_object("nothing").0, 404);

        // Locking: needs the current metageneration.
        let lock = |query: &str| {
            http(
                "POST",
                &format!(
                    "{}/storage/v1/b/bmac-audit/lockRetentionPolicy{query}",
                    gcs(&server)
                ),
                None,
                None,
            )
        };
        assert_eq!(reason(&lock("").1), "required");
        let (status, e) = lock("?ifMetagenerationMatch=7");
        assert_eq!((status, reason(&e)), (412, "conditionNotMet"));
        let (status, b) = lock("?ifMetagenerationMatch=1");
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["retentionPolicy"]["isLocked"], true);
        assert_eq!(b["metageneration"], "2");

        // Locked: lowered or removed is 403, by the API or by hand; raised is fine.
        for attempt in [
            json!({"retentionPolicy": {"retentionPeriod": "3600"}}),
            json!({"retentionPolicy": null}),
        ] {
            let (status, e) = patch(&server, "bmac-audit", "", attempt.clone());
            assert_eq!((status, reason(&e)), (403, "forbidden"), "{attempt}: {e}");
            assert_eq!(edit(&server, "b/bmac-audit", attempt).0, 403);
        }
        let (status, b) = patch(
            &server,
            "bmac-audit",
            "?ifMetagenerationMatch=2",
            json!({"retentionPolicy": {"retentionPeriod": "172800", "isLocked": false}}),
        );
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["retentionPolicy"]["retentionPeriod"], "172800");
        assert_eq!(
            b["retentionPolicy"]["isLocked"], true,
            "isLocked is read-only"
        );

        // An object older than the period may go (its age set by hand).
        let (status, o) = edit(
            &server,
            "b/bmac-audit/o/logs/2026/01/a.json",
            json!({"timeCreated": "2020-01-01T00:00:00Z"}),
        );
        assert_eq!(status, 200, "{o}");
        assert_eq!(o["retentionExpirationTime"], "2020-01-03T00:00:00Z");
        assert_eq!(delete_object("logs%2F2026%2F01%2Fa.json").0, 204);
        assert_eq!(objects(&server), ["x"]);

        // A bucket without a policy has nothing to lock.
        insert(&server, PROJECT, json!({"name": "bmac-plain"}));
        let (status, e) = http(
            "POST",
            &format!(
                "{}/storage/v1/b/bmac-plain/lockRetentionPolicy?ifMetagenerationMatch=1",
                gcs(&server)
            ),
            None,
            None,
        );
        assert_eq!((status, reason(&e)), (400, "invalid"));
    });
}

fn policy(server: &Server, bucket: &str, query: &str) -> (u16, Value) {
    http(
        "GET",
        &format!("{}/storage/v1/b/{bucket}/iam{query}", gcs(server)),
        None,
        None,
    )
}

fn set_policy(server: &Server, bucket: &str, body: Value) -> (u16, Value) {
    http(
        "PUT",
        &format!("{}/storage/v1/b/{bucket}/iam", gcs(server)),
        Some(&body),
        None,
    )
}

#[test]
fn bucket_iam_policies_keep_etags_bindings_and_versions() {
    support::run(async {
        let server = Server::start(&["--allow-anonymous"]);
        insert(
            &server,
            PROJECT,
            json!({"name": "bmac-logs", "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"}}),
        );
        insert(&server, PROJECT, json!({"name": "bmac-fine-grained"}));
        let (status, p) = policy(&server, "bmac-logs", "");
        assert_eq!(status, 200);
        assert_eq!(p["kind"], "storage#policy");
        assert_eq!(p["resourceId"], "projects/_/buckets/bmac-logs");
        assert_eq!(p["version"], 1);
        assert_eq!(p["etag"], "CAE=");
        assert_eq!(
            p["bindings"],
            json!([
                {"role": "roles/storage.legacyBucketOwner", "members": [format!("projectEditor:{PROJECT}"), format!("projectOwner:{PROJECT}")]},
                {"role": "roles/storage.legacyBucketReader", "members": [format!("projectViewer:{PROJECT}")]},
            ])
        );

        // A read-modify-write with the etag read; the same etag again is stale.
        let mut want = p.clone();
        want["bindings"].as_array_mut().unwrap().push(json!({
            "role": "roles/storage.objectCreator",
            "members": ["serviceAccount:writer@example.iam.gserviceaccount.com"],
        }));
        let (status, written) = set_policy(&server, "bmac-logs", want.clone());
        assert_eq!(status, 200, "{written}");
        assert_ne!(written["etag"], p["etag"]);
        assert_eq!(written["bindings"], want["bindings"]);
        assert_eq!(policy(&server, "bmac-logs", "").1, written);
        let (status, e) = set_policy(&server, "bmac-logs", want);
        assert_eq!((status, reason(&e)), (412, "conditionNotMet"));
        // Without an etag a write overwrites; emptied bindings are dropped.
        let (status, p) = set_policy(
            &server,
            "bmac-logs",
            json!({"bindings": [{"role": "roles/storage.objectViewer", "members": ["group:audit@example.com"]}, {"role": "roles/storage.admin", "members": []}]}),
        );
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["bindings"].as_array().unwrap().len(), 1);

        for bad in [
            json!({"bindings": [{"role": "storage.admin", "members": ["user:a@example.com"]}]}),
            json!({"bindings": [{"role": "roles/storage.admin", "members": ["someone"]}]}),
            json!({"bindings": [], "auditConfigs": []}),
        ] {
            let (status, e) = set_policy(&server, "bmac-logs", bad.clone());
            assert_eq!(status, 400, "{bad}: {e}");
        }
        let (status, e) = set_policy(
            &server,
            "bmac-logs",
            json!({"bindings": [{"role": "roles/storage.objectViewer", "members": ["allUsers"]}]}),
        );
        assert_eq!(
            (status, reason(&e)),
            (412, "conditionNotMet"),
            "public access prevented"
        );

        // Conditions: version 3, uniform access, and read back only at version 3.
        let conditional = json!({"role": "roles/storage.objectViewer", "members": ["user:temp@example.com"],
            "condition": {"title": "until 2030", "expression": "request.time < timestamp(\"2030-01-01T00:00:00Z\")"}});
        let (status, _) = set_policy(
            &server,
            "bmac-logs",
            json!({"bindings": [conditional.clone()], "version": 1}),
        );
        assert_eq!(status, 400, "conditions need version 3");
        let (status, _) = set_policy(
            &server,
            "bmac-fine-grained",
            json!({"bindings": [conditional.clone()], "version": 3}),
        );
        assert_eq!(status, 400, "conditions need uniform access");
        let (status, p) = set_policy(
            &server,
            "bmac-logs",
            json!({"bindings": [conditional.clone()], "version": 3}),
        );
        assert_eq!(status, 200, "{p}");
        let (status, e) = policy(&server, "bmac-logs", "");
        assert_eq!(status, 400, "{e}");
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("optionsRequestedPolicyVersion=3"));
        let (status, got) = policy(&server, "bmac-logs", "?optionsRequestedPolicyVersion=3");
        assert_eq!(status, 200);
        assert_eq!(got["version"], 3);
        assert_eq!(got["bindings"], json!([conditional]));

        // A hand edit of the policy: a new etag.
        let (status, edited) = edit(&server, "b/bmac-logs:iamPolicy", json!({"bindings": []}));
        assert_eq!(status, 200, "{edited}");
        assert_ne!(edited["etag"], got["etag"]);
        assert_eq!(policy(&server, "bmac-logs", "").1["bindings"], Value::Null);
        assert_eq!(policy(&server, "nobody", "").0, 404);
    });
}

#[test]
fn the_storage_listener_checks_tokens_takes_faults_and_logs_requests() {
    support::run(async {
        let server = Server::start(&["--project", PROJECT]);
        assert!(gcs(&server).starts_with("http://127.0.0.1:"));
        let (status, health) = http("GET", &format!("{}/_bmac/health", gcs(&server)), None, None);
        assert_eq!((status, health["service"].as_str()), (200, Some("storage")));

        let url = format!("{}/storage/v1/b?project={PROJECT}", gcs(&server));
        let (status, _) = http("GET", &url, None, None);
        assert_eq!(status, 401, "no token");
        let (status, token) = http(
            "POST",
            &server.env["BMAC_GCP_OAUTH"],
            Some(&json!({
                "grant_type": "refresh_token",
                "client_id": "bmac-test-client.apps.googleusercontent.com",
                "client_secret": "bmac-test-client-secret",
                "refresh_token": "bmac-test-refresh-token",
            })),
            None,
        );
        assert_eq!(status, 200);
        let token = token["access_token"].as_str().unwrap().to_owned();
        let (status, made) = http(
            "POST",
            &url,
            Some(&json!({"name": "bmac-tokens"})),
            Some(&token),
        );
        assert_eq!(status, 200, "{made}");
        let (status, _) = http(
            "GET",
            &format!("{}/storage/v1/b?project=someone-elses", gcs(&server)),
            None,
            Some(&token),
        );
        assert_eq!(status, 403, "a project this server does not have");

        let (status, _) = http(
            "POST",
            &format!("{}/_bmac/faults", gcs(&server)),
            Some(
                &json!({"method": "GET", "path_prefix": "/storage/v1/b/", "status": 503, "count": 1}),
            ),
            None,
        );
        assert_eq!(status, 200);
        let one = format!("{}/storage/v1/b/bmac-tokens", gcs(&server));
        let (status, head, _) = http_full("GET", &one, None, Some(&token));
        assert_eq!(status, 503);
        assert!(
            head.to_ascii_lowercase().contains("\r\nretry-after: 1"),
            "{head}"
        );
        assert_eq!(http("GET", &one, None, Some(&token)).0, 200);

        let log = server.requests("storage");
        let seen: Vec<(String, bool, u64)> = log
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap().to_owned(),
                    r["mutating"].as_bool().unwrap(),
                    r["status"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("GET".to_owned(), false, 401),
                ("POST".to_owned(), true, 200),
                ("GET".to_owned(), false, 403),
                ("GET".to_owned(), false, 503),
                ("GET".to_owned(), false, 200),
            ]
        );
        assert_eq!(log[0]["principal"], Value::Null);
        assert_eq!(log[1]["principal"], "user:bmac-test@example.com");
        assert_eq!(log[1]["query"], format!("project={PROJECT}"));
    });
}
