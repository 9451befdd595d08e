//! The process-wide state shared by every door (the MQTT endpoints, the admin API): config,
//! store, hooks, metrics, clock, the admin token and the detached tasks shutdown waits for.
//! Built once by [`App::open`], which also performs the start-up duties that must happen before
//! any listener opens (private data dir, provisioning account, restart recovery, admin token).
//!
//! This crate owns no socket and no protocol: the doors depend on it, never the other way
//! round. It decides nothing itself; decisions are the hooks' and the exchange's.

pub mod tasks;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use fleetgate_auth_hook::Clock;
use fleetgate_auth_hook::credentials::{Argon2Params, random_alphanumeric};
use fleetgate_auth_hook::pool::VerifyPool;
use fleetgate_config::Config;
use fleetgate_hooks::{Hooks, LimitConfig};
use fleetgate_metrics::Metrics;
use fleetgate_storage::ops;
use fleetgate_storage::{CommitObserver, Store, StoreError, StoreOptions};

use tasks::Tasks;

/// File holding the generated admin token inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Where a generated hook listener token is kept (`hooks.token` unset, listener on).
pub const HOOKS_TOKEN_FILE: &str = "hooks.token";

/// Why [`App::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory could not be created or made private.
    #[error("cannot prepare the data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened (locked by another process, corrupt, unreadable).
    #[error("cannot open the database: {0}")]
    Open(#[source] StoreError),
    /// A start-up write or read failed.
    #[error("start-up duty failed: {0}")]
    Store(#[from] StoreError),
    /// The jobs engine could not start.
    #[error("cannot start the jobs engine: {0}")]
    Jobs(#[from] fleetgate_jobs::JobsError),
    /// The generated admin token could not be written.
    #[error("cannot write {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Shared state; `Send + Sync`, held in an `Arc`.
pub struct App {
    /// Effective configuration.
    pub config: Config,
    /// The store.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// The hooks of every door: CONNECT and topic decisions, registry status; also verifies
    /// and hashes provision passwords for the admin API.
    pub hooks: Arc<Hooks>,
    /// argon2 parameters for new provision passwords.
    pub argon2: Argon2Params,
    /// Instance admin token.
    pub admin_token: String,
    /// Where the operational endpoint listens, once bound (its URL when
    /// `operational.public_url` is unset).
    pub operational_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Where the provisioning endpoint listens, once bound (its URL when
    /// `provisioning.public_url` is unset).
    pub provisioning_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Kura request/reply with devices (PROTOCOL.md 7), attached to the operational broker
    /// when it runs.
    pub devices: Arc<fleetgate_devmgmt::Requester>,
    /// Batch Jobs: starts attempts on target devices as they become ready.
    pub jobs: fleetgate_jobs::Jobs,
    /// The token hook requests must carry (HOOKS.md 2); empty when the listener is off.
    pub hooks_token: String,
    /// Set once every listener accepts connections (`/healthz`).
    pub ready: AtomicBool,
    /// Detached exchange tasks, drained at shutdown.
    pub tasks: Tasks,
}

impl App {
    /// Opens the store and performs the start-up duties: creates the provisioning account on
    /// first start, fails requests left `RUNNING` by a previous process, and settles the admin
    /// token. Nothing listens yet.
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<App>, AppError> {
        private_dir(&config.data_dir).map_err(|source| AppError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let db_file = config.data_dir.join(fleetgate_storage::DB_FILE);
        let new_db = !db_file.exists();
        let metrics = Metrics::new();
        let observer_metrics = metrics.clone();
        let observer: CommitObserver = Arc::new(move |n, d| observer_metrics.commit(n, d));
        let store = Store::open(
            &db_file,
            &StoreOptions {
                cache_size: config.storage.cache_size,
                durable: config.storage.durable,
            },
            Some(observer),
        )
        .map_err(AppError::Open)?;
        if new_db {
            std::fs::set_permissions(&db_file, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| AppError::DataDir {
                    path: db_file.clone(),
                    source,
                },
            )?;
        } else {
            warn_if_shared(&db_file);
        }
        if store.write(ops::ensure_provisioning_account(
            config.provisioning.account.clone(),
            clock.now(),
        ))? {
            tracing::info!(account = %config.provisioning.account, "provisioning account created");
        }
        recover_running(&store, clock.as_ref())?;
        let admin_token = settle_token(
            &config,
            &config.admin.token,
            ADMIN_TOKEN_FILE,
            "admin token",
        )?;
        let hooks_token = if config.hooks.address().is_some() {
            settle_token(
                &config,
                &config.hooks.token,
                HOOKS_TOKEN_FILE,
                "hook listener token",
            )?
        } else {
            String::new()
        };
        let threads = fleetgate_config::threads_or_cores(config.auth.verify_threads);
        let pool = VerifyPool::new(
            threads,
            config.auth.verify_queue,
            Config::secs(config.auth.verify_deadline),
        );
        let limits = LimitConfig {
            max_failures: config.auth.max_failures,
            max_failures_per_address: config.auth.max_failures_per_address,
            window: Config::secs(config.auth.failure_window),
            ban: Config::secs(config.auth.ban),
        };
        let hooks = Arc::new(
            Hooks::new(
                store.clone(),
                pool,
                limits,
                config.provisioning.account.clone(),
                clock.clone(),
                metrics.clone(),
            )
            .with_requester(config.device_management.requester.clone()),
        );
        let argon2 = Argon2Params {
            m_cost: config.auth.argon2_m_cost,
            t_cost: config.auth.argon2_t_cost,
            p_cost: config.auth.argon2_p_cost,
        };
        let devices = Arc::new(fleetgate_devmgmt::Requester::new(
            config.device_management.requester.clone(),
        ));
        let jobs = fleetgate_jobs::Jobs::start(
            store.clone(),
            devices.clone(),
            clock.clone(),
            metrics.clone(),
            config.device_management.max_in_flight,
        )?;
        Ok(Arc::new(App {
            jobs,
            config,
            store,
            metrics,
            clock,
            hooks,
            argon2,
            admin_token,
            hooks_token,
            operational_addr: std::sync::OnceLock::new(),
            provisioning_addr: std::sync::OnceLock::new(),
            devices,
            ready: AtomicBool::new(false),
            tasks: Tasks::default(),
        }))
    }
}

impl App {
    /// The operational endpoint's URL as devices reach it: `operational.public_url`, else
    /// `mqtt://` and the bound (or configured) address. Listed as the known endpoint
    /// `fleetgate`.
    pub fn operational_url(&self) -> String {
        public_url(
            &self.config.operational.public_url,
            &self.operational_addr,
            self.config.operational.listen,
        )
    }

    /// The provisioning endpoint's URL as devices reach it: `provisioning.public_url`, else
    /// `mqtt://` and the bound (or configured) address. A move points devices there
    /// (PROTOCOL.md 8.2).
    pub fn provisioning_url(&self) -> String {
        public_url(
            &self.config.provisioning.public_url,
            &self.provisioning_addr,
            self.config.provisioning.listen,
        )
    }
}

/// `configured` when set, else `mqtt://` and the bound address (or the configured one before
/// binding).
fn public_url(
    configured: &str,
    bound: &std::sync::OnceLock<std::net::SocketAddr>,
    listen: std::net::SocketAddr,
) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    format!("mqtt://{}", bound.get().copied().unwrap_or(listen))
}

/// PROTOCOL.md 5: requests left `RUNNING` become `FAILED` with a log line, before the listeners
/// open; so do moves left unfinished (PROTOCOL.md 8.2), whose provision password died with the
/// previous process.
fn recover_running(store: &Store, clock: &dyn Clock) -> Result<(), StoreError> {
    let running = store.read()?.running_requests()?;
    for r in &running {
        if let Some(x) = &r.running {
            store.write(ops::fail_exchange_after_restart(
                r.id.clone(),
                x.execution_id.clone(),
                clock.now(),
            ))?;
        }
    }
    if !running.is_empty() {
        tracing::warn!(
            count = running.len(),
            "requests left RUNNING by the previous process marked FAILED"
        );
    }
    let moves = store.write(fleetgate_storage::moves::fail_interrupted_moves(
        clock.now(),
    ))?;
    if moves > 0 {
        tracing::warn!(
            count = moves,
            "moves left unfinished by the previous process marked FAILED"
        );
    }
    Ok(())
}

/// A token of the service: `configured`, else the one in `DATA_DIR/FILE`, else a new one
/// written there with mode 0600 (the admin token, the hook listener's token).
fn settle_token(
    config: &Config,
    configured: &str,
    file: &str,
    what: &str,
) -> Result<String, AppError> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    let path = config.data_dir.join(file);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = random_alphanumeric(48);
    write_secret_file(&path, &token).map_err(|source| AppError::SecretFile {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "{what} generated");
    Ok(token)
}

fn write_secret_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")
}

/// Creates the data directory, private to the service's user (0700): it holds the hashes of
/// secrets and the execution logs. An existing one is left as the operator set it, with a
/// warning when group or others may read it (API.md "Running").
fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        warn_if_shared(dir);
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Warns when `path` is accessible to group or others.
fn warn_if_shared(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "accessible to group or others; it holds the hashes of secrets: make it private (chmod go-rwx)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_and_its_files_are_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let mut config = Config::load(&fleetgate_config::Overrides::default(), Vec::new()).unwrap();
        config.data_dir = dir.clone();
        let app = App::open(config, Arc::new(fleetgate_auth_hook::SystemClock)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(fleetgate_storage::DB_FILE)), 0o600);
        assert_eq!(mode(&dir.join(ADMIN_TOKEN_FILE)), 0o600);
        app.store.close();
    }

    /// A tracing writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_existing_shared_data_dir_is_left_alone_with_a_warning() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = Config::load(&fleetgate_config::Overrides::default(), Vec::new()).unwrap();
        config.data_dir = dir.clone();
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let app = tracing::subscriber::with_default(subscriber, || {
            App::open(config, Arc::new(fleetgate_auth_hook::SystemClock)).unwrap()
        });
        app.store.close();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the operator's choice is not changed");
        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("WARN") && log.contains("accessible to group or others"),
            "{log}"
        );
    }
}
