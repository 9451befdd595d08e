//! A full disk, with the real binary: the data dir is on a small filesystem the test mounts
//! (tmpfs with `size=`, else a loop-mounted ext4 image; neither possible, e.g. not root: the
//! test fails and says so). It is filled with provision requests created through the API and a
//! ballast file, until the API refuses a write. Then:
//!
//! - writes are refused cleanly: the admin API answers 503 `application/problem+json`, a
//!   device's PROV-V1 exchange (which must write before it replies) gets reply code 500, a
//!   5.0 retained PUBLISH (durable before its PUBACK) gets a PUBACK failure code; reads go on
//!   (lists, an enrolled device's operational CONNECT);
//! - the refusals are logged once (once a minute at most), not once per request;
//! - nothing acknowledged is lost: every request answered 201 is listed, before and after a
//!   restart;
//! - service resumes by itself: once the ballast is deleted the next write succeeds, without a
//!   restart, and the refused device enrolls;
//! - after a clean stop, redb's integrity check passes on the database file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::binary::Broker;
use common::raw::{Client, Msg, Options};
use fleetgate_kura::{Encoding, ProvReply, ProvRequest};

/// Size of the filesystem the data dir lives on.
const FS_SIZE_MIB: u64 = 24;

/// A small filesystem mounted for the test; unmounted (and its image removed) on drop.
struct SmallFs {
    mount: tempfile::TempDir,
    image: Option<PathBuf>,
}

impl SmallFs {
    fn mount() -> SmallFs {
        let mount = tempfile::tempdir().unwrap();
        let dir = mount.path().to_str().unwrap().to_string();
        let size = format!("size={FS_SIZE_MIB}m");
        let tmpfs = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "fleetgate-diskfull", &dir])
            .output();
        if matches!(&tmpfs, Ok(o) if o.status.success()) {
            return SmallFs { mount, image: None };
        }
        // No tmpfs (e.g. in a container without the capability): a loop-mounted ext4 image.
        let image =
            std::env::temp_dir().join(format!("fleetgate-diskfull-{}.img", std::process::id()));
        let loop_mount = std::fs::File::create(&image)
            .and_then(|f| f.set_len(FS_SIZE_MIB << 20))
            .ok()
            .and_then(|()| {
                Command::new("mkfs.ext4")
                    .args(["-q", "-F", image.to_str().unwrap()])
                    .status()
                    .ok()
            })
            .filter(|s| s.success())
            .and_then(|_| {
                Command::new("mount")
                    .args(["-o", "loop", image.to_str().unwrap(), &dir])
                    .output()
                    .ok()
            });
        match loop_mount {
            Some(o) if o.status.success() => SmallFs {
                mount,
                image: Some(image),
            },
            other => {
                let _ = std::fs::remove_file(&image);
                panic!(
                    "this test needs a small filesystem for the data dir and could mount none: \
                     `mount -t tmpfs -o {size}` said {:?}; a loop-mounted ext4 image said {:?}. \
                     Run it as root (CI does), with tmpfs or loop devices available.",
                    tmpfs.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()),
                    other.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()),
                )
            }
        }
    }

    fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Free bytes on the filesystem (`df`, so that the test needs no unsafe statvfs).
    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df --output=avail")
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .status();
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}

const PASSWORD: &str = "fleet-password-1";

fn request_body(cid: &str) -> serde_json::Value {
    serde_json::json!({
        "clientId": cid,
        "provisionUsername": "fleet-acme",
        "provisionPassword": PASSWORD,
        "confirmProvisionPassword": PASSWORD,
        "brokerUrl": "mqtt://127.0.0.1:1884",
    })
}

/// One PROV-V1 exchange (JSON, MQTT 3.1.1): the reply's code and, on success, the
/// operational (username, password).
fn enroll(b: &Broker, cid: &str) -> (u16, Option<(String, String)>) {
    let mut d = Client::connect(
        b.provisioning,
        &Options::v3(cid).login("fleet-acme", PASSWORD),
    );
    assert_eq!(
        d.subscribe(&format!("$EDC/provision/{cid}/PROV-V1/REPLY/#"), 1),
        1
    );
    let request = Msg::new(
        &format!("$EDC/provision/{cid}/PROV-V1/EXEC/provision"),
        ProvRequest::new("r-1").encode(Encoding::Json),
    );
    assert_eq!(d.publish(request.qos(1)), 0);
    let reply = d.receive();
    drop(d);
    let (_, reply) = fleetgate_kura::decode_reply(&reply.payload).unwrap();
    match reply {
        ProvReply::Success(ok) => (200, Some((ok.username, ok.password))),
        ProvReply::Failure(f) => (f.code, None),
    }
}

fn listed(b: &Broker) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/accounts/acme/provision-requests?limit=1000&after={c}"),
            None => "/api/v1/accounts/acme/provision-requests?limit=1000".to_string(),
        };
        let (status, body) = b.request("GET", &path, None);
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            ids.push(item["clientId"].as_str().unwrap().to_string());
        }
        match body["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

#[test]
fn a_full_disk_refuses_writes_cleanly_loses_nothing_and_recovers_by_itself() {
    let fs = SmallFs::mount();
    let data = fs.path().join("data");
    let mut b = Broker::start_on("", &data);
    let (status, body) = b.post("/api/v1/accounts", &serde_json::json!({ "name": "acme" }));
    assert_eq!(status, 201, "{body}");

    // Two devices prepared while there is room: one enrolls now, one is kept for later.
    for cid in ["early", "late"] {
        let (status, body) = b.post(
            "/api/v1/accounts/acme/provision-requests",
            &request_body(cid),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (code, creds) = enroll(&b, "early");
    assert_eq!(code, 200);
    let (early_user, early_pass) = creds.unwrap();

    // Ballast: all but 3 MiB of what is free (the store refuses below its 2 MiB reserve).
    let ballast = fs.path().join("ballast");
    let keep = 3 << 20;
    let size = fs.free().saturating_sub(keep);
    std::fs::write(&ballast, vec![0xA5u8; usize::try_from(size).unwrap()]).unwrap();

    // Requests through the API until a write is refused.
    let mut acknowledged = vec!["early".to_string(), "late".to_string()];
    let refusal = (0..100_000)
        .find_map(|i| {
            let cid = format!("fill-{i}");
            let (status, body) = b.post(
                "/api/v1/accounts/acme/provision-requests",
                &request_body(&cid),
            );
            match status {
                201 => {
                    acknowledged.push(cid);
                    None
                }
                _ => Some((status, body)),
            }
        })
        .expect("the filesystem never filled");
    let (status, problem) = refusal;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["status"], 503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("storage is full"),
        "{problem}"
    );
    eprintln!(
        "{} requests acknowledged before the first refusal; {} bytes free",
        acknowledged.len(),
        fs.free()
    );

    // Every later write is refused the same way, with problem+json.
    for i in 0..50 {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let r = agent
            .post(&format!(
                "http://{}/api/v1/accounts/acme/provision-requests",
                b.admin
            ))
            .header("Authorization", "Bearer binary-admin-token-0123456789")
            .header("Content-Type", "application/json")
            .send(request_body(&format!("refused-{i}")).to_string())
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(
            r.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
    }
    // A device whose exchange needs a write gets reply 500; reads go on.
    assert_eq!(enroll(&b, "late").0, 500);
    let mut op = b.operational_connect(&Options::v3("early").login(&early_user, &early_pass));
    assert_eq!(op.connack_code, 0);
    op.ping();
    assert!(op.recv(common::raw::WAIT).is_some());
    op.disconnect();
    let mut retainer = Client::connect(b.sandbox, &Options::v5("retainer"));
    let code = retainer.publish(Msg::new("full/retained", "during").qos(1).retain());
    assert!(
        code >= 0x80,
        "a retained PUBLISH on a full disk was acknowledged ({code:#04x})"
    );
    retainer.disconnect();
    let mut listed_now = listed(&b);
    listed_now.sort();
    acknowledged.sort();
    assert_eq!(
        listed_now, acknowledged,
        "an acknowledged request is missing"
    );

    // Logged once, not once per refused request.
    let log = b.log();
    let lines = log.matches("the data dir's filesystem is full").count();
    assert_eq!(lines, 1, "expected one full-disk line:\n{log}");

    // Space returns: the next write succeeds without a restart, and the device enrolls.
    std::fs::remove_file(&ballast).unwrap();
    let (status, body) = b.post(
        "/api/v1/accounts/acme/provision-requests",
        &request_body("after"),
    );
    assert_eq!(status, 201, "{body}");
    acknowledged.push("after".into());
    assert_eq!(enroll(&b, "late").0, 200);
    assert!(b.log().contains("writes are accepted again"));
    let mut retainer = Client::connect(b.sandbox, &Options::v5("retainer"));
    assert_eq!(
        retainer.publish(Msg::new("full/retained", "after").qos(1).retain()),
        0
    );
    retainer.disconnect();

    // Nothing acknowledged lost across a restart; the file passes redb's integrity check.
    b.stop();
    let db = data.join(fleetgate_storage::DB_FILE);
    assert!(
        fleetgate_storage::check_integrity(&db).expect("integrity check"),
        "redb integrity check failed"
    );
    b.start_again();
    let mut listed_now = listed(&b);
    listed_now.sort();
    acknowledged.sort();
    assert_eq!(listed_now, acknowledged);
    let mut reader = Client::connect(b.sandbox, &Options::v5("reader"));
    assert_eq!(reader.subscribe("full/retained", 1), 1);
    assert_eq!(reader.receive().payload, b"after");
    reader.disconnect();
    b.stop();
}
