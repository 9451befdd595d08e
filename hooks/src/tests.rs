//! Facade tests over a temporary store: what each CONNECT decides and what it writes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use fleetgate_auth_hook::credentials::{Argon2Params, fast_hash};
use fleetgate_auth_hook::{NoMetrics, Timestamp};
use fleetgate_storage::ops::{
    ExchangeAction, ExchangeStart, IdentityPlan, NewRequest, ReplyFate, UserPlan,
};
use fleetgate_storage::validate::{AccountSpec, RequestSpec};
use fleetgate_storage::{Coupling, Outcome, StoreOptions, Tx};
use parking_lot::Mutex;

use super::*;

const PASSWORD: &str = "provision-pass";
const DEVICE_PASSWORD: &str = "Gen3rated-Passw0rd!";

struct ManualClock(Mutex<Timestamp>);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock()
    }
}

fn t(s: i64) -> Timestamp {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    hooks: Hooks,
    clock: Arc<ManualClock>,
}

fn fixture(limits: LimitConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &StoreOptions::default(), None).unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(t(0))));
    store
        .write(ops::ensure_provisioning_account("pa".into(), t(0)))
        .unwrap();
    store
        .write(ops::create_account(
            AccountSpec {
                name: "acme".into(),
                min_password_length: 20,
                default_coupling: Coupling::Loose,
            },
            t(0),
        ))
        .unwrap();
    let hooks = Hooks::new(
        store.clone(),
        VerifyPool::new(1, 100, Duration::from_secs(10)),
        limits,
        "pa".into(),
        clock.clone(),
        Arc::new(NoMetrics),
    );
    Fixture {
        _dir: dir,
        store,
        hooks,
        clock,
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

impl Fixture {
    /// A provision request for `client_id` with provision user `username`, open in
    /// `[from, to)`, coupled and reserved as asked.
    fn request(
        &self,
        client_id: &str,
        username: &str,
        window: (i64, Option<i64>),
        coupling: Coupling,
        reserve_user: bool,
    ) -> String {
        let spec = RequestSpec {
            client_id: client_id.into(),
            provision_username: username.into(),
            provision_password: PASSWORD.into(),
            broker_url: "mqtt://broker:1883".into(),
            activates_on: t(window.0),
            expires_on: window.1.map(t),
            generate_activation_key: false,
            reserve_user,
            connection_coupling: coupling,
            vpn_access: false,
            password_length: None,
            additional_configuration: None,
            warnings: Vec::new(),
        };
        let hash = Argon2Params::cheap_for_tests().hash(PASSWORD).unwrap();
        let created = self
            .store
            .write(ops::create_requests(
                "acme".into(),
                vec![NewRequest {
                    spec,
                    user: UserPlan::New { hash },
                    activation_key_hash: None,
                }],
                false,
                t(0),
            ))
            .unwrap();
        created[0].id.clone()
    }

    /// A device provisioned through a completed exchange: user `CID@acme`, password
    /// [`DEVICE_PASSWORD`].
    fn provisioned(&self, client_id: &str, coupling: Coupling, reserve_user: bool) {
        let id = self.request(
            client_id,
            &format!("prov-{client_id}"),
            (0, None),
            coupling,
            reserve_user,
        );
        let start = self
            .store
            .write(ops::begin_exchange(
                attempt(&id),
                format!("device-{client_id}"),
                ExchangeAction::Provision(IdentityPlan {
                    username: format!("{client_id}@acme"),
                    password_hash: fast_hash(DEVICE_PASSWORD),
                    configurations: 0,
                }),
                fleetgate_storage::ProvisioningProtocol::ProvV1,
            ))
            .unwrap();
        let ExchangeStart::Started {
            running: Some(running),
            ..
        } = start
        else {
            panic!("exchange not started");
        };
        self.store
            .write(ops::finish_exchange(running, ReplyFate::Acknowledged, t(0)))
            .unwrap();
    }

    fn connect(
        &self,
        endpoint: EndpointKind,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Session, Refusal> {
        block_on(
            self.hooks
                .authenticate(endpoint, &facts(client_id, Some(username), Some(password))),
        )
    }

    fn request_record(&self, id: &str) -> fleetgate_storage::ProvisionRequest {
        self.store.read().unwrap().request(id).unwrap().unwrap()
    }

    fn executions(&self, id: &str) -> Vec<fleetgate_storage::Execution> {
        self.store.read().unwrap().executions(id).unwrap()
    }

    fn status(&self, client_id: &str) -> Option<ConnectionStatus> {
        self.store
            .read()
            .unwrap()
            .device_connection("acme", client_id)
            .unwrap()
            .map(|c| c.status)
    }

    fn verified(&self) -> u64 {
        self.hooks.pool().stats().verified.load(Ordering::Relaxed)
    }
}

fn attempt(request_id: &str) -> Attempt {
    Attempt {
        request_id: request_id.into(),
        protocol: "3.1.1".into(),
        peer: "127.0.0.1:1".into(),
        now: t(0),
    }
}

fn facts(client_id: &str, username: Option<&str>, password: Option<&str>) -> ConnectFacts {
    ConnectFacts {
        client_id: client_id.into(),
        username: username.map(Into::into),
        password: password.map(|p| p.as_bytes().to_vec()),
        peer: SocketAddr::from(([127, 0, 0, 1], 40_000)),
        protocol: Protocol::V311,
    }
}

// ---------------------------------------------------------------------------------------------
// Provisioning.

#[test]
fn provisioning_accepts_the_right_credentials_in_the_window_and_writes_nothing() {
    let f = fixture(LimitConfig::default());
    let id = f.request("dev-1", "fleet", (0, Some(100)), Coupling::Loose, false);
    let s = f
        .connect(EndpointKind::Provisioning, "dev-1", "fleet", PASSWORD)
        .unwrap();
    assert_eq!(
        s.as_provisioning(),
        Some(&ProvisioningSession {
            client_id: "dev-1".into(),
            request_id: id.clone(),
            target_account: "acme".into(),
        })
    );
    assert_eq!(s.as_device(), None);
    assert_eq!(s.client_id(), "dev-1");
    // A shared credential's second CONNECT is a cache hit: no second argon2 run.
    f.connect(EndpointKind::Provisioning, "dev-1", "fleet", PASSWORD)
        .unwrap();
    assert_eq!(f.verified(), 1);
    let r = f.request_record(&id);
    assert_eq!(r.last_rejection, None);
    assert!(f.executions(&id).is_empty());
    // Provisioning sessions have no registry status.
    block_on(f.hooks.connected(&s));
    block_on(f.hooks.disconnected(&s));
    assert_eq!(f.status("dev-1"), None);
}

#[test]
fn provisioning_credential_failures_update_last_rejection_but_create_no_execution() {
    let f = fixture(LimitConfig::default());
    let id = f.request("dev-1", "fleet", (0, None), Coupling::Loose, false);
    for (client_id, username, password, reason) in [
        ("dev-1", "fleet", "wrong", Some("wrong password")),
        ("dev-1", "other", PASSWORD, Some("user name does not match")),
        // No request for the client ID: nothing to record it on.
        ("dev-2", "fleet", PASSWORD, None),
    ] {
        *f.clock.0.lock() = t(5);
        assert_eq!(
            f.connect(EndpointKind::Provisioning, client_id, username, password),
            Err(Refusal::BadCredentials),
            "{client_id} {username}"
        );
        if let Some(reason) = reason {
            let r = f.request_record(&id).last_rejection.unwrap();
            assert_eq!(r.reason, format!("bad user name or password: {reason}"));
            assert_eq!(r.at, t(5));
        }
    }
    // A missing user name or password is a credential failure too.
    assert_eq!(
        block_on(
            f.hooks
                .authenticate(EndpointKind::Provisioning, &facts("dev-1", None, None))
        ),
        Err(Refusal::BadCredentials)
    );
    assert!(f.executions(&id).is_empty());
}

#[test]
fn provisioning_outside_the_window_records_a_rejected_execution() {
    let f = fixture(LimitConfig::default());
    let early = f.request("dev-1", "fleet-1", (10, None), Coupling::Loose, false);
    let late = f.request("dev-2", "fleet-2", (0, Some(3)), Coupling::Loose, false);
    *f.clock.0.lock() = t(5);
    for (client_id, user, id, reason) in [
        (
            "dev-1",
            "fleet-1",
            &early,
            "the activation window has not opened yet (activatesOn)",
        ),
        (
            "dev-2",
            "fleet-2",
            &late,
            "the activation window has closed (expiresOn)",
        ),
    ] {
        assert_eq!(
            f.connect(EndpointKind::Provisioning, client_id, user, PASSWORD),
            Err(Refusal::NotAuthorized)
        );
        let executions = f.executions(id);
        assert_eq!(executions.len(), 1, "{client_id}");
        assert_eq!(executions[0].outcome, Outcome::Rejected);
        assert_eq!(executions[0].peer, "127.0.0.1:40000");
        assert!(
            executions[0].log.iter().any(|l| l.message.contains(reason)),
            "{:?}",
            executions[0].log
        );
        assert_eq!(f.request_record(id).last_rejection, None);
    }
}

#[test]
fn provisioning_refuses_invalid_client_ids_before_anything_else() {
    let f = fixture(LimitConfig::default());
    for client_id in ["", "a/b", "+", "#", "$SYS"] {
        assert_eq!(
            f.connect(EndpointKind::Provisioning, client_id, "fleet", PASSWORD),
            Err(Refusal::InvalidClientId)
        );
        assert_eq!(
            f.connect(EndpointKind::Operational, client_id, "x@acme", PASSWORD),
            Err(Refusal::InvalidClientId)
        );
    }
    assert_eq!(f.verified(), 0);
}

#[test]
fn a_banned_client_id_is_refused_without_verifying_even_the_right_password() {
    let f = fixture(LimitConfig {
        max_failures: 2,
        ..LimitConfig::default()
    });
    f.request("dev-1", "fleet", (0, None), Coupling::Loose, false);
    for _ in 0..2 {
        assert_eq!(
            f.connect(EndpointKind::Provisioning, "dev-1", "fleet", "wrong"),
            Err(Refusal::BadCredentials)
        );
    }
    let before = f.verified();
    assert_eq!(
        f.connect(EndpointKind::Provisioning, "dev-1", "fleet", PASSWORD),
        Err(Refusal::Banned)
    );
    assert_eq!(f.verified(), before);
    // The ban ends.
    *f.clock.0.lock() = t(301);
    assert!(
        f.connect(EndpointKind::Provisioning, "dev-1", "fleet", PASSWORD)
            .is_ok()
    );
}

#[test]
fn provisioning_sessions_are_confined_to_their_exchange_topics() {
    let f = fixture(LimitConfig::default());
    f.request("dev-1", "fleet", (0, None), Coupling::Loose, false);
    let s = f
        .connect(EndpointKind::Provisioning, "dev-1", "fleet", PASSWORD)
        .unwrap();
    for (action, allowed) in [
        (
            Action::Publish("$EDC/pa/dev-1/PROV-V1/EXEC/provision"),
            true,
        ),
        (Action::Subscribe("$EDC/pa/dev-1/PROV-V1/REPLY/#"), true),
        (Action::Subscribe("$EDC/pa/dev-1/PROV-V1/REPLY/+"), true),
        // Deny by default.
        (
            Action::Publish("$EDC/pa/dev-2/PROV-V1/EXEC/provision"),
            false,
        ),
        (
            Action::Publish("$EDC/acme/dev-1/PROV-V1/EXEC/provision"),
            false,
        ),
        (Action::Publish("acme/dev-1/data"), false),
        (Action::Subscribe("#"), false),
        (Action::Subscribe("$EDC/pa/+/PROV-V1/REPLY/#"), false),
        // A Kura-native device (PROTOCOL.md 3 and 8.1): its whole `$EDC/PA/CID/#`, its MQTT
        // topics, and CONF-V1 replies to the requester (default `fleetgate`) only.
        (Action::Subscribe("$EDC/pa/dev-1/#"), true),
        (Action::Subscribe("$EDC/pa/dev-2/#"), false),
        (Action::Publish("$EDC/pa/dev-1/MQTT/BIRTH"), true),
        (Action::Publish("$EDC/pa/fleetgate/CONF-V1/REPLY/r-1"), true),
        (Action::Publish("$EDC/pa/other/CONF-V1/REPLY/r-1"), false),
    ] {
        assert_eq!(
            f.hooks.authorize(&s, action).is_allowed(),
            allowed,
            "{action:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Operational.

#[test]
fn operational_coupling_and_reservation() {
    let f = fixture(LimitConfig::default());
    f.provisioned("loose-1", Coupling::Loose, false);
    f.provisioned("loose-2", Coupling::Loose, false);
    f.provisioned("strict-1", Coupling::Strict, true);
    f.provisioned("reserved-1", Coupling::Loose, true);
    f.provisioned("inherit-1", Coupling::Inherited, false);
    use Refusal::*;
    for (client_id, user, password, expected) in [
        ("loose-1", "loose-1@acme", DEVICE_PASSWORD, Ok(())),
        // LOOSE: any unreserved user of the account.
        ("loose-1", "loose-2@acme", DEVICE_PASSWORD, Ok(())),
        ("inherit-1", "loose-1@acme", DEVICE_PASSWORD, Ok(())),
        ("strict-1", "strict-1@acme", DEVICE_PASSWORD, Ok(())),
        ("reserved-1", "reserved-1@acme", DEVICE_PASSWORD, Ok(())),
        // STRICT: only its reserved user.
        (
            "strict-1",
            "loose-1@acme",
            DEVICE_PASSWORD,
            Err(NotAuthorized),
        ),
        // A reserved user only for its client ID.
        (
            "loose-1",
            "reserved-1@acme",
            DEVICE_PASSWORD,
            Err(NotAuthorized),
        ),
        (
            "loose-1",
            "strict-1@acme",
            DEVICE_PASSWORD,
            Err(NotAuthorized),
        ),
        // Credentials.
        ("loose-1", "loose-1@acme", "wrong", Err(BadCredentials)),
        (
            "loose-1",
            "nobody@acme",
            DEVICE_PASSWORD,
            Err(BadCredentials),
        ),
        // A provision credential is not an operational one.
        ("loose-1", "prov-loose-1", PASSWORD, Err(BadCredentials)),
    ] {
        let got = f.connect(EndpointKind::Operational, client_id, user, password);
        let want = expected.map(|()| DeviceSession {
            account: "acme".into(),
            client_id: client_id.into(),
            username: user.into(),
        });
        assert_eq!(
            got.map(|s| s.as_device().cloned().unwrap()),
            want,
            "{client_id} {user}"
        );
    }
    // Operational CONNECTs never touch the argon2 pool.
    assert_eq!(f.verified(), 0);
}

#[test]
fn connected_and_disconnected_follow_the_registry_status() {
    let f = fixture(LimitConfig::default());
    f.provisioned("dev-1", Coupling::Loose, false);
    let s = f
        .connect(
            EndpointKind::Operational,
            "dev-1",
            "dev-1@acme",
            DEVICE_PASSWORD,
        )
        .unwrap();
    // Nothing written by the decision itself.
    assert_eq!(f.status("dev-1"), Some(ConnectionStatus::NeverConnected));
    *f.clock.0.lock() = t(7);
    block_on(f.hooks.connected(&s));
    let c = f
        .store
        .read()
        .unwrap()
        .device_connection("acme", "dev-1")
        .unwrap()
        .unwrap();
    assert_eq!(c.status, ConnectionStatus::Connected);
    assert_eq!(c.last_connected_on, Some(t(7)));
    block_on(f.hooks.disconnected(&s));
    assert_eq!(f.status("dev-1"), Some(ConnectionStatus::Disconnected));
}

#[test]
fn status_writes_are_submitted_before_the_future_is_polled() {
    let f = fixture(LimitConfig::default());
    f.provisioned("dev-1", Coupling::Loose, false);
    let s = f
        .connect(
            EndpointKind::Operational,
            "dev-1",
            "dev-1@acme",
            DEVICE_PASSWORD,
        )
        .unwrap();
    // Never polled: the write is in the writer's queue already, ahead of the next one.
    drop(f.hooks.connected(&s));
    f.store.write(|_: &mut Tx<'_, '_>| Ok(())).unwrap();
    assert_eq!(f.status("dev-1"), Some(ConnectionStatus::Connected));
    drop(f.hooks.disconnected(&s));
    f.store.write(|_: &mut Tx<'_, '_>| Ok(())).unwrap();
    assert_eq!(f.status("dev-1"), Some(ConnectionStatus::Disconnected));
}

#[test]
fn device_sessions_are_confined_to_their_own_topics() {
    let f = fixture(LimitConfig::default());
    f.provisioned("dev-1", Coupling::Loose, false);
    let s = f
        .connect(
            EndpointKind::Operational,
            "dev-1",
            "dev-1@acme",
            DEVICE_PASSWORD,
        )
        .unwrap();
    for (action, allowed) in [
        (Action::Publish("acme/dev-1/telemetry"), true),
        (Action::Publish("$EDC/acme/dev-1/MQTT/BIRTH"), true),
        (Action::Subscribe("acme/dev-1/#"), true),
        (Action::Subscribe("$EDC/acme/dev-1/+"), true),
        // Deny by default.
        (Action::Publish("acme/dev-2/telemetry"), false),
        (Action::Publish("other/dev-1/telemetry"), false),
        (Action::Subscribe("acme/#"), false),
        (Action::Subscribe("#"), false),
        (Action::Subscribe("$EDC/#"), false),
        (Action::Publish("acme/dev-1/+"), false),
    ] {
        assert_eq!(
            f.hooks.authorize(&s, action).is_allowed(),
            allowed,
            "{action:?}"
        );
    }
}

#[test]
fn identify_gives_the_session_of_a_door_without_connections() {
    let f = fixture(LimitConfig::default());
    f.provisioned("dev-1", Coupling::Strict, true);
    f.provisioned("dev-2", Coupling::Loose, false);
    let s = f.hooks.identify("dev-1", "dev-1@acme").unwrap();
    assert_eq!(
        Some(s.clone()),
        f.connect(
            EndpointKind::Operational,
            "dev-1",
            "dev-1@acme",
            DEVICE_PASSWORD
        )
        .ok()
    );
    assert!(
        f.hooks
            .authorize(&s, Action::Publish("acme/dev-1/data"))
            .is_allowed()
    );
    assert_eq!(
        f.hooks.identify("dev-1", "dev-2@acme"),
        Err(Refusal::NotAuthorized)
    );
    assert_eq!(
        f.hooks.identify("dev-1", "nobody@acme"),
        Err(Refusal::BadCredentials)
    );
    // An event door records the status with the same calls.
    block_on(f.hooks.connected(&s));
    assert_eq!(f.status("dev-1"), Some(ConnectionStatus::Connected));
}

// ---------------------------------------------------------------------------------------------
// Account users, BIRTH facts, operationalConnectedOn.

const APP_PASSWORD: &str = "dashboard passphrase";

impl Fixture {
    /// An account user `NAME@acme` with `permissions`; a chosen password is argon2-hashed, a
    /// `None` one gets the keyed fast hash of [`DEVICE_PASSWORD`] (a generated password).
    fn app(&self, name: &str, permissions: &[&str], chosen: bool) {
        let password_hash = if chosen {
            Argon2Params::cheap_for_tests().hash(APP_PASSWORD).unwrap()
        } else {
            fast_hash(DEVICE_PASSWORD)
        };
        self.store
            .write(ops::create_account_user(
                "acme".into(),
                ops::NewAccountUser {
                    name: name.into(),
                    password_hash,
                    permissions: permissions.iter().map(ToString::to_string).collect(),
                },
                t(0),
            ))
            .unwrap();
    }
}

#[test]
fn account_users_connect_with_argon2_on_the_pool_and_generated_passwords_inline() {
    let f = fixture(LimitConfig::default());
    f.provisioned("dev-1", Coupling::Loose, false);
    f.app("dash", &["broker:connect", "data:read"], true);
    f.app("gen", &["broker:connect"], false);
    f.app("mute", &["data:read"], false);
    let op = EndpointKind::Operational;
    let s = f.connect(op, "app-1", "dash@acme", APP_PASSWORD).unwrap();
    assert_eq!(s.username(), "dash@acme");
    assert_eq!(s.account(), "acme");
    assert_eq!(s.client_id(), "app-1");
    assert!(s.as_account_user().is_some() && s.as_device().is_none());
    assert_eq!(f.verified(), 1);
    // The second CONNECT is a cache hit; a wrong password runs argon2 again and is refused.
    f.connect(op, "app-2", "dash@acme", APP_PASSWORD).unwrap();
    assert_eq!(f.verified(), 1);
    assert_eq!(
        f.connect(op, "app-1", "dash@acme", "wrong password!"),
        Err(Refusal::BadCredentials)
    );
    assert_eq!(f.verified(), 2);
    // Generated passwords never touch the pool.
    f.connect(op, "app-1", "gen@acme", DEVICE_PASSWORD).unwrap();
    assert_eq!(f.verified(), 2);
    for (client_id, username, password, want) in [
        ("app-1", "gen@acme", "nope", Refusal::BadCredentials),
        (
            "app-1",
            "nobody@acme",
            DEVICE_PASSWORD,
            Refusal::BadCredentials,
        ),
        (
            "app-1",
            "mute@acme",
            DEVICE_PASSWORD,
            Refusal::NotAuthorized,
        ),
        // A device's client ID is never taken over by an application.
        ("dev-1", "gen@acme", DEVICE_PASSWORD, Refusal::NotAuthorized),
        ("dev-1", "dash@acme", APP_PASSWORD, Refusal::NotAuthorized),
    ] {
        assert_eq!(
            f.connect(op, client_id, username, password),
            Err(want),
            "{client_id} {username}"
        );
    }
    // Disabled: refused, by connect and identify alike.
    f.store
        .write(ops::update_user(
            "acme".into(),
            "gen@acme".into(),
            ops::UserPatch {
                enabled: Some(false),
                ..ops::UserPatch::default()
            },
            t(0),
        ))
        .unwrap();
    assert_eq!(
        f.connect(op, "app-1", "gen@acme", DEVICE_PASSWORD),
        Err(Refusal::NotAuthorized)
    );
    assert_eq!(
        f.hooks.identify("app-1", "gen@acme"),
        Err(Refusal::NotAuthorized)
    );
    assert!(f.hooks.identify("app-9", "dash@acme").is_ok());
    // Account users have no registry status.
    block_on(f.hooks.connected(&s));
    assert_eq!(f.status("app-1"), None);
}

#[test]
fn account_user_topics_follow_its_permissions() {
    let f = fixture(LimitConfig::default());
    f.app(
        "ops",
        &["broker:connect", "device:read", "device:manage"],
        false,
    );
    let s = f
        .connect(
            EndpointKind::Operational,
            "app-1",
            "ops@acme",
            DEVICE_PASSWORD,
        )
        .unwrap();
    for (action, allowed) in [
        (Action::Subscribe("$EDC/acme/+/MQTT/#"), true),
        (Action::Subscribe("$EDC/acme/app-1/#"), true),
        (
            Action::Publish("$EDC/acme/dev-1/CONF-V1/GET/configurations"),
            true,
        ),
        (Action::Subscribe("acme/#"), false),
        (Action::Publish("acme/dev-1/cmd"), false),
        (Action::Subscribe("$EDC/other/+/MQTT/#"), false),
        (Action::Subscribe("#"), false),
        (Action::Subscribe("$EDC/#"), false),
    ] {
        assert_eq!(
            f.hooks.authorize(&s, action).is_allowed(),
            allowed,
            "{action:?}"
        );
    }
}

#[test]
fn connected_records_peer_protocol_and_operational_connected_on_once() {
    let f = fixture(LimitConfig::default());
    f.provisioned("dev-1", Coupling::Loose, false);
    let s = f
        .connect(
            EndpointKind::Operational,
            "dev-1",
            "dev-1@acme",
            DEVICE_PASSWORD,
        )
        .unwrap();
    let stamp = || {
        let read = f.store.read().unwrap();
        let d = read.device("acme", "dev-1").unwrap().unwrap();
        let request = d.provision_request_id.unwrap();
        read.executions(&request).unwrap()[0].operational_connected_on
    };
    assert_eq!(stamp(), None);
    *f.clock.0.lock() = t(9);
    block_on(f.hooks.connected(&s));
    assert_eq!(stamp(), Some(t(9)));
    let c = f
        .store
        .read()
        .unwrap()
        .device_connection("acme", "dev-1")
        .unwrap()
        .unwrap();
    assert_eq!(c.peer.as_deref(), Some("127.0.0.1:40000"));
    assert_eq!(c.protocol.as_deref(), Some("3.1.1"));
    *f.clock.0.lock() = t(20);
    block_on(f.hooks.connected(&s));
    assert_eq!(stamp(), Some(t(9)));
}

#[test]
fn a_devices_birth_fills_the_registry_and_other_publishes_do_nothing() {
    let f = fixture(LimitConfig::default());
    f.provisioned("dev-1", Coupling::Loose, false);
    f.provisioned("dev-2", Coupling::Loose, false);
    f.app("dash", &["broker:connect", "data:write"], false);
    let s = f
        .connect(
            EndpointKind::Operational,
            "dev-1",
            "dev-1@acme",
            DEVICE_PASSWORD,
        )
        .unwrap();
    let app = f
        .connect(
            EndpointKind::Operational,
            "app-1",
            "dash@acme",
            DEVICE_PASSWORD,
        )
        .unwrap();
    let birth = fleetgate_kura::Payload::new()
        .with_str("model_name", "Raspberry Pi 4")
        .with_str("kura_version", "5.4.0")
        .encode();
    let birth_of = |cid: &str| {
        f.store
            .read()
            .unwrap()
            .device("acme", cid)
            .unwrap()
            .unwrap()
            .birth
    };
    // Another device's BIRTH topic, another topic, an application: nothing.
    block_on(f.hooks.published(&s, "$EDC/acme/dev-2/MQTT/BIRTH", &birth));
    block_on(f.hooks.published(&s, "$EDC/acme/dev-1/MQTT/DC", &birth));
    block_on(
        f.hooks
            .published(&app, "$EDC/acme/dev-1/MQTT/BIRTH", &birth),
    );
    // Not a KuraPayload: ignored.
    block_on(
        f.hooks
            .published(&s, "$EDC/acme/dev-1/MQTT/BIRTH", b"\xff\xff"),
    );
    assert_eq!(birth_of("dev-1"), None);
    assert_eq!(birth_of("dev-2"), None);
    *f.clock.0.lock() = t(5);
    block_on(f.hooks.published(&s, "$EDC/acme/dev-1/MQTT/BIRTH", &birth));
    let d = f
        .store
        .read()
        .unwrap()
        .device("acme", "dev-1")
        .unwrap()
        .unwrap();
    let b = d.birth.unwrap();
    assert_eq!(b.model_name.as_deref(), Some("Raspberry Pi 4"));
    assert_eq!(b.kura_version.as_deref(), Some("5.4.0"));
    assert_eq!(d.birth_on, Some(t(5)));
}

#[test]
fn revocations_reach_every_listening_door() {
    let f = fixture(LimitConfig::default());
    let mut door = f.hooks.revocations();
    f.hooks.revoke("dash@acme");
    assert_eq!(door.try_recv().unwrap().as_ref(), "dash@acme");
}

#[test]
fn operational_credential_failures_ban_apart_from_provisioning() {
    let f = fixture(LimitConfig {
        max_failures: 2,
        ..LimitConfig::default()
    });
    f.request("dev-1", "fleet", (0, None), Coupling::Loose, false);
    f.app("dash", &["broker:connect"], true);
    let password = APP_PASSWORD;
    for _ in 0..2 {
        assert_eq!(
            f.connect(
                EndpointKind::Operational,
                "dash-1",
                "dash@acme",
                "wrong password!"
            ),
            Err(Refusal::BadCredentials)
        );
    }
    let before = f.verified();
    assert_eq!(
        f.connect(EndpointKind::Operational, "dash-1", "dash@acme", password),
        Err(Refusal::Banned),
        "banned before the password is verified"
    );
    assert_eq!(f.verified(), before, "no argon2 run for a banned client ID");
    assert!(
        f.connect(EndpointKind::Operational, "dash-2", "dash@acme", password)
            .is_ok(),
        "another client ID of the same user is not banned"
    );
    assert!(
        f.connect(EndpointKind::Provisioning, "dash-1", "fleet", PASSWORD)
            .is_err_and(|r| r != Refusal::Banned),
        "the provisioning endpoint keeps its own counts"
    );
    *f.clock.0.lock() = t(301);
    assert!(
        f.connect(EndpointKind::Operational, "dash-1", "dash@acme", password)
            .is_ok()
    );
}
