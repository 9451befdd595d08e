//! The `fleetgate` client commands, run as the built binary against a live in-process server:
//! output, JSON mode, exit codes and error reporting.

mod common;

use std::process::Command;

use common::TestServer;
use fleetgate_storage::ops::{self, Attempt, ExchangeAction, ExchangeStart, IdentityPlan};
use serde_json::Value;

const PASSWORD: &str = "fleet-password-1";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    fn json(self) -> Value {
        let text = self.ok();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn failed(self) -> String {
        assert_ne!(self.code, 0, "stdout: {}", self.stdout);
        self.stderr
    }
}

/// Runs `fleetgate ARGS` with the server's URL, no inherited FLEETGATE_* settings, and the
/// given token.
fn run_with(s: &TestServer, token: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetgate"));
    for var in [
        "FLEETGATE_API",
        "FLEETGATE_TOKEN",
        "FLEETGATE_ADMIN_TOKEN",
        "FLEETGATE_ACCOUNT",
        "FLEETGATE_PROVISION_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args).args(["--api", &s.admin_url()]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(s: &TestServer, args: &[&str]) -> Out {
    run_with(s, Some(s.admin_token()), args)
}

fn create_args(cid: &str) -> Vec<&str> {
    vec![
        "request",
        "create",
        "--account",
        "acme",
        "--client-id",
        cid,
        "--username",
        "fleet",
        "--password",
        PASSWORD,
        "--broker-url",
        "mqtts://broker.acme.example:8883",
    ]
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["clientId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn accounts_and_tokens() {
    let s = TestServer::start();
    let out = run(
        &s,
        &["account", "create", "acme", "--min-password-length", "24"],
    )
    .ok();
    assert!(out.contains("acme") && out.contains("24"), "{out}");
    let v = run(
        &s,
        &[
            "account",
            "create",
            "beta",
            "--default-coupling",
            "strict",
            "--json",
        ],
    )
    .json();
    assert_eq!(v["defaultCoupling"], "STRICT");
    let table = run(&s, &["account", "list"]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("name"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(!table.contains("provision "));
    let err = run(&s, &["account", "create", "acme"]).failed();
    assert!(err.contains("409") && err.contains("name:"), "{err}");
    let err = run(&s, &["account", "create", "Bad_Name"]).failed();
    assert!(err.contains("422") && err.contains("name:"), "{err}");

    // Tokens: printed once, usable, revocable.
    let t = run(&s, &["token", "create", "--account", "acme", "--json"]).json();
    let token = t["token"].as_str().unwrap().to_string();
    let id = t["id"].as_str().unwrap().to_string();
    let human = run(&s, &["token", "create", "--account", "acme"]).ok();
    assert!(
        human.contains("fgt_") && human.contains("only this once"),
        "{human}"
    );
    run_with(&s, Some(&token), &create_args("dev-1")).ok();
    let mine = run_with(
        &s,
        Some(&token),
        &["request", "list", "--account", "acme", "--json"],
    )
    .json();
    assert_eq!(ids(&mine), ["dev-1"]);
    let err = run_with(&s, Some(&token), &["request", "list", "--account", "beta"]).failed();
    assert!(err.contains("404"), "{err}");
    let listed = run_with(&s, Some(&token), &["account", "list", "--json"]).json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let out = run(&s, &["token", "revoke", &id, "--account", "acme"]).ok();
    assert!(out.contains("revoked"), "{out}");
    let err = run_with(&s, Some(&token), &["request", "list", "--account", "acme"]).failed();
    assert!(err.contains("401"), "{err}");
    // No token at all.
    let err = run_with(&s, None, &["account", "list"]).failed();
    assert!(err.contains("401") && err.contains("--token"), "{err}");
    // The token can also come from the environment.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetgate"));
    let out = cmd
        .env_remove("FLEETGATE_ADMIN_TOKEN")
        .env("FLEETGATE_TOKEN", s.admin_token())
        .env("FLEETGATE_API", s.admin_url())
        .args(["account", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A server that is not there.
    let out = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .args([
            "account",
            "list",
            "--api",
            "http://127.0.0.1:1",
            "--token",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn request_create_list_show_update_preview_delete() {
    let s = TestServer::start();
    common::create_account(&s, "acme");
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("extra.xml");
    std::fs::write(
        &xml,
        "<configurations><configuration><id>org.example.App</id><properties><property name=\"x\" array=\"false\" encrypted=\"false\" type=\"Integer\"><value>5</value></property></properties></configuration></configurations>",
    )
    .unwrap();
    let mut args = create_args("dev-1");
    args.extend([
        "--activation-key",
        "--vpn",
        "--coupling",
        "strict",
        "--password-length",
        "40",
    ]);
    args.extend(["--additional-configuration", xml.to_str().unwrap()]);
    let out = run(&s, &args).ok();
    assert!(out.contains("dev-1") && out.contains("CREATED"), "{out}");
    assert!(
        out.contains("activationKey") && out.contains("only this once"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD));
    let v = run(&s, &[create_args("dev-2"), vec!["--json"]].concat()).json();
    assert_eq!(v["clientId"], "dev-2");
    assert_eq!(v["connectionCoupling"], "INHERITED");
    let id2 = v["id"].as_str().unwrap().to_string();

    // Errors: exit code and field errors on stderr, nothing on stdout.
    let o = run(&s, &create_args("dev-1"));
    assert_eq!(o.stdout, "");
    let err = o.failed();
    assert!(err.contains("409") && err.contains("clientId:"), "{err}");
    let bad_url: Vec<&str> = create_args("dev-3")
        .into_iter()
        .map(|a| {
            if a.starts_with("mqtts://") {
                "http://x"
            } else {
                a
            }
        })
        .collect();
    let err = run(&s, &bad_url).failed();
    assert!(err.contains("422") && err.contains("brokerUrl:"), "{err}");
    let err = run(&s, &["request", "create", "--client-id", "x"]).failed();
    assert!(err.contains("--account"), "{err}");

    // List: table and JSON, filters, limit.
    let table = run(&s, &["request", "list", "--account", "acme"]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("id") && lines[0].contains("clientId"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].contains("dev-1") && lines[2].contains("dev-2"),
        "{table}"
    );
    let all = run(&s, &["request", "list", "--account", "acme", "--json"]).json();
    assert_eq!(ids(&all), ["dev-1", "dev-2"]);
    let one = run(
        &s,
        &[
            "request",
            "list",
            "--account",
            "acme",
            "--client-id",
            "dev-2",
            "--json",
        ],
    )
    .json();
    assert_eq!(ids(&one), ["dev-2"]);
    let limited = run(
        &s,
        &[
            "request",
            "list",
            "--account",
            "acme",
            "--limit",
            "1",
            "--json",
        ],
    )
    .json();
    assert_eq!(ids(&limited), ["dev-1"]);
    let err = run(
        &s,
        &["request", "list", "--account", "acme", "--status", "NOPE"],
    )
    .failed();
    assert!(err.contains("status:"), "{err}");

    // Show.
    let shown = run(&s, &["request", "show", &id2, "--account", "acme"]).ok();
    assert!(
        shown.contains(&id2) && shown.contains("dev-2") && shown.contains("brokerUrl"),
        "{shown}"
    );
    assert!(!shown.contains("activationKey "), "{shown}");
    let err = run(&s, &["request", "show", "nope", "--account", "acme"]).failed();
    assert!(err.contains("404"), "{err}");

    // Update keeps what is not given; the password is required.
    let err = run(
        &s,
        &["request", "update", &id2, "--account", "acme", "--vpn"],
    )
    .failed();
    assert!(err.contains("--password"), "{err}");
    let v = run(
        &s,
        &[
            "request",
            "update",
            &id2,
            "--account",
            "acme",
            "--vpn",
            "--password",
            PASSWORD,
            "--json",
        ],
    )
    .json();
    assert_eq!(v["vpnAccess"], true);
    assert_eq!(v["clientId"], "dev-2");
    assert_eq!(v["brokerUrl"], "mqtts://broker.acme.example:8883");

    // Preview.
    let xml = run(&s, &["request", "preview", &id2, "--account", "acme"]).ok();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains("<value>dev-2@acme</value>") && xml.contains("<value>********</value>"),
        "{xml}"
    );

    // Delete.
    let out = run(&s, &["request", "delete", &id2, "--account", "acme"]).ok();
    assert!(out.contains("deleted"), "{out}");
    let err = run(&s, &["request", "show", &id2, "--account", "acme"]).failed();
    assert!(err.contains("404"), "{err}");
    let err = run(&s, &["request", "delete", &id2, "--account", "acme"]).failed();
    assert!(err.contains("404"), "{err}");
}

#[test]
fn bulk_from_csv_and_json_lines() {
    let s = TestServer::start();
    common::create_account(&s, "acme");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("fleet.csv");
    std::fs::write(
        &csv,
        format!(
            "clientId,provisionUsername,provisionPassword,brokerUrl,generateActivationKey,vpnAccess,passwordLength\n\
             csv-1,fleet,{PASSWORD},mqtt://h:1883,false,true,32\n\
             csv-2,fleet,{PASSWORD},mqtt://h:1883,true,,\n\
             \"csv-3\",fleet,{PASSWORD},mqtt://h:1883,,false,\n"
        ),
    )
    .unwrap();
    let out = run(
        &s,
        &[
            "request",
            "bulk",
            csv.to_str().unwrap(),
            "--account",
            "acme",
        ],
    )
    .ok();
    assert!(out.contains("3 requests created"), "{out}");
    assert!(out.contains("activationKey"), "{out}");
    let all = run(&s, &["request", "list", "--account", "acme", "--json"]).json();
    assert_eq!(ids(&all), ["csv-1", "csv-2", "csv-3"]);
    let items = all["items"].as_array().unwrap();
    assert_eq!(items[0]["vpnAccess"], true);
    assert_eq!(items[0]["passwordLength"], 32);
    assert_eq!(items[1]["generateActivationKey"], true);
    assert_eq!(items[2]["vpnAccess"], false);

    let jsonl = dir.path().join("fleet.jsonl");
    let row = |cid: &str| {
        serde_json::json!({
            "clientId": cid, "provisionUsername": "fleet", "provisionPassword": PASSWORD,
            "brokerUrl": "mqtt://h:1883", "reserveUser": false,
        })
        .to_string()
    };
    std::fs::write(&jsonl, format!("{}\n\n{}\n", row("jl-1"), row("jl-2"))).unwrap();
    let v = run(
        &s,
        &[
            "request",
            "bulk",
            jsonl.to_str().unwrap(),
            "--account",
            "acme",
            "--json",
        ],
    )
    .json();
    let created = v["created"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[1]["clientId"], "jl-2");
    assert_eq!(created[1]["reserveUser"], false);
    // --format overrides the extension.
    let txt = dir.path().join("more.txt");
    std::fs::write(&txt, format!("{}\n", row("jl-3"))).unwrap();
    let err = run(
        &s,
        &[
            "request",
            "bulk",
            txt.to_str().unwrap(),
            "--account",
            "acme",
        ],
    )
    .failed();
    assert!(err.contains("--format"), "{err}");
    run(
        &s,
        &[
            "request",
            "bulk",
            txt.to_str().unwrap(),
            "--format",
            "jsonl",
            "--account",
            "acme",
        ],
    )
    .ok();

    // A bad row: nothing created, the row and its line named, non-zero exit.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{}\n\n{}\n",
            row("b-1"),
            row("b-2"),
            row("b-3").replace("mqtt://h:1883", "nope")
        ),
    )
    .unwrap();
    let err = run(
        &s,
        &[
            "request",
            "bulk",
            bad.to_str().unwrap(),
            "--account",
            "acme",
        ],
    )
    .failed();
    assert!(err.contains("422"), "{err}");
    assert!(err.contains("[row 2, line 4] brokerUrl:"), "{err}");
    assert!(err.contains("nothing was created"), "{err}");
    let all = run(&s, &["request", "list", "--account", "acme", "--json"]).json();
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
    assert!(!ids(&all).iter().any(|c| c.starts_with("b-")));
    // A conflicting row in a CSV.
    let dup = dir.path().join("dup.csv");
    std::fs::write(
        &dup,
        format!("clientId,provisionUsername,provisionPassword,brokerUrl\nnew-1,fleet,{PASSWORD},mqtt://h\ncsv-1,fleet,{PASSWORD},mqtt://h\n"),
    )
    .unwrap();
    let err = run(
        &s,
        &[
            "request",
            "bulk",
            dup.to_str().unwrap(),
            "--account",
            "acme",
        ],
    )
    .failed();
    assert!(
        err.contains("409") && err.contains("[row 1, line 3] clientId:"),
        "{err}"
    );
    let err = run(
        &s,
        &["request", "bulk", "/nonexistent.csv", "--account", "acme"],
    )
    .failed();
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn executions_and_devices() {
    let s = TestServer::start();
    common::create_account(&s, "acme");
    let v = run(&s, &[create_args("dev-1"), vec!["--json"]].concat()).json();
    let id = v["id"].as_str().unwrap().to_string();
    let start = s
        .app()
        .store
        .write(ops::begin_exchange(
            Attempt {
                request_id: id.clone(),
                protocol: "3.1.1".into(),
                peer: "127.0.0.1:50000".into(),
                now: s.app().clock.now(),
            },
            "r-1".into(),
            ExchangeAction::Provision(IdentityPlan {
                username: "dev-1@acme".into(),
                password_hash: "hs".into(),
                configurations: 1,
            }),
            fleetgate_storage::ProvisioningProtocol::ProvV1,
        ))
        .unwrap();
    let ExchangeStart::Started { execution_id, .. } = start else {
        panic!("{start:?}")
    };
    let table = run(&s, &["executions", "list", &id, "--account", "acme"]).ok();
    assert!(
        table.contains(&execution_id) && table.contains("RUNNING") && table.contains("3.1.1"),
        "{table}"
    );
    let shown = run(
        &s,
        &[
            "executions",
            "show",
            &id,
            &execution_id,
            "--account",
            "acme",
        ],
    )
    .ok();
    assert!(
        shown.contains("log:") && shown.contains("INFO") && shown.contains("exchange started"),
        "{shown}"
    );
    let v = run(
        &s,
        &[
            "executions",
            "show",
            &id,
            &execution_id,
            "--account",
            "acme",
            "--json",
        ],
    )
    .json();
    assert!(v["log"].as_array().unwrap().len() >= 3);
    let err = run(&s, &["request", "delete", &id, "--account", "acme"]).failed();
    assert!(err.contains("409") && err.contains("force"), "{err}");

    let devices = run(&s, &["device", "list", "--account", "acme"]).ok();
    assert!(
        devices.contains("dev-1") && devices.contains("NEVER_CONNECTED"),
        "{devices}"
    );
    let d = run(
        &s,
        &["device", "show", "dev-1", "--account", "acme", "--json"],
    )
    .json();
    assert_eq!(d["reservedUser"], "dev-1@acme");
    let err = run(&s, &["device", "show", "nope", "--account", "acme"]).failed();
    assert!(err.contains("404"), "{err}");

    let out = run(
        &s,
        &["request", "delete", &id, "--force", "--account", "acme"],
    )
    .ok();
    assert!(out.contains("deleted"), "{out}");
}

#[test]
fn known_endpoints() {
    let s = TestServer::start();
    let added = run(
        &s,
        &[
            "endpoint",
            "add",
            "eu-cluster",
            "mqtts://mqtt.eu.example:8883",
            "--kind",
            "rabbitmq",
        ],
    )
    .ok();
    assert!(
        added.contains("eu-cluster") && added.contains("rabbitmq"),
        "{added}"
    );
    let v = run(&s, &["endpoint", "list", "--json"]).json();
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fleetgate", "eu-cluster"]);
    let err = run(&s, &["endpoint", "add", "x", "http://h"]).failed();
    assert!(err.contains("url"), "{err}");
    run(&s, &["endpoint", "delete", "eu-cluster"]).ok();
    let err = run(&s, &["endpoint", "delete", "eu-cluster"]).failed();
    assert!(err.contains("not found") || err.contains("404"), "{err}");
}

#[test]
fn jobs_create_list_show_targets_executions_delete() {
    let s = TestServer::start();
    run(&s, &["account", "create", "acme"]).ok();
    for cid in ["dev-1", "dev-2"] {
        run(&s, &["device", "create", cid, "--account", "acme"]).ok();
    }
    let file = s.dir.path().join("job.json");
    std::fs::write(
        &file,
        r#"{"name": "nightly uname", "targets": ["dev-1"],
            "steps": [{"type": "command", "command": "uname", "arguments": ["-a"]}],
            "schedule": {"trigger": "CRON", "cron": "0 3 * * *"}, "maxAttempts": 2}"#,
    )
    .unwrap();
    let created = run(
        &s,
        &["job", "create", file.to_str().unwrap(), "--account", "acme"],
    )
    .ok();
    assert!(
        created.contains("nightly uname") && created.contains("CRON"),
        "{created}"
    );
    let list = run(&s, &["job", "list", "--account", "acme", "--json"]).json();
    let id = list["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["items"][0]["maxAttempts"], 2);
    let shown = run(&s, &["job", "show", &id, "--account", "acme"]).ok();
    assert!(shown.contains("PENDING=1 RUNNING=0"), "{shown}");
    let changed = run(
        &s,
        &[
            "job",
            "targets",
            &id,
            "--add",
            "dev-2",
            "--account",
            "acme",
            "--json",
        ],
    )
    .json();
    assert_eq!(changed["targets"], serde_json::json!(["dev-1", "dev-2"]));
    // A timed job has no execution before its first firing.
    let execs = run(
        &s,
        &["job", "executions", &id, "--account", "acme", "--json"],
    )
    .json();
    assert_eq!(execs["items"], serde_json::json!([]));
    let err = run(
        &s,
        &[
            "job",
            "executions",
            &id,
            "--status",
            "DONE",
            "--account",
            "acme",
        ],
    )
    .failed();
    assert!(err.contains("--status DONE"), "{err}");
    // Bad input: the server's field error, and nothing created.
    std::fs::write(
        &file,
        r#"{"name": "x", "targets": ["ghost"], "steps": [{"type": "command", "command": "u"}],
            "schedule": {"trigger": "NOW"}}"#,
    )
    .unwrap();
    let err = run(
        &s,
        &["job", "create", file.to_str().unwrap(), "--account", "acme"],
    )
    .failed();
    assert!(err.contains("targets") && err.contains("ghost"), "{err}");
    run(&s, &["job", "delete", &id, "--account", "acme"]).ok();
    let list = run(&s, &["job", "list", "--account", "acme", "--json"]).json();
    assert_eq!(list["items"], serde_json::json!([]));
}
