//! Binding and running the listeners: provisioning and operational MQTT (plain TCP, and TLS
//! when configured), the sandbox when configured, and the admin HTTP API, all in one ntex
//! server. [`serve`] is the
//! `fleetgate serve` path; [`Running`] runs the same server on a background thread for tests.
//! Both stop the same way: stop accepting, drain the detached exchanges with a deadline, stop the
//! workers, save the brokers' persistent sessions, close the store.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use ntex::service::chain_factory;
use ntex::time::Seconds;

use fleetgate_app::App;
use fleetgate_config::Config;
use fleetgate_mqtt::ServiceError;
use fleetgate_mqtt::broker::{Broker, DeviceTransport, Door, Limits};
use fleetgate_mqtt::provisioning::Provisioning;

/// The bound sockets, before the server takes them.
pub struct Listeners {
    provisioning: TcpListener,
    operational: TcpListener,
    admin: TcpListener,
    /// The admin listener's TLS config when `admin.tls` is set (HTTPS only, same socket).
    admin_tls: Option<Arc<rustls::ServerConfig>>,
    sandbox: Option<TcpListener>,
    hooks: Option<TcpListener>,
    provisioning_tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    operational_tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

/// Where each listener is.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    /// Provisioning MQTT over TCP.
    pub provisioning: SocketAddr,
    /// Operational MQTT over TCP.
    pub operational: SocketAddr,
    /// Admin HTTP, or HTTPS when `admin.tls` is set ([`Addrs::admin_https`]).
    pub admin: SocketAddr,
    /// Whether the admin listener speaks HTTPS.
    pub admin_https: bool,
    /// Provisioning MQTT over TLS, when configured.
    pub provisioning_tls: Option<SocketAddr>,
    /// Operational MQTT over TLS, when configured.
    pub operational_tls: Option<SocketAddr>,
    /// The anonymous sandbox, when configured.
    pub sandbox: Option<SocketAddr>,
    /// The HTTP hook listener, when configured.
    pub hooks: Option<SocketAddr>,
}

fn bind_tls(
    tls: &fleetgate_config::Tls,
) -> anyhow::Result<Option<(TcpListener, Arc<rustls::ServerConfig>)>> {
    if !tls.enabled() {
        return Ok(None);
    }
    let config = load_tls(&tls.cert, &tls.key)
        .with_context(|| format!("cannot load TLS certificate {} / key", tls.cert))?;
    let l =
        listen(tls.listen).with_context(|| format!("cannot bind TLS listener {}", tls.listen))?;
    Ok(Some((l, config)))
}

/// Listen backlog of every listener. `std::net::TcpListener::bind` listens with a backlog of
/// 128, and ntex's own `backlog` setting only applies to sockets ntex binds itself: with 200
/// devices connecting at once the SYN queue overflowed and some connects took a 1 s SYN
/// retransmit. The kernel still caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

fn listen(a: SocketAddr) -> io::Result<TcpListener> {
    ntex::server::create_tcp_listener(a, BACKLOG)
}

/// Binds every listener `app.config` asks for (port 0 picks a free port), and records where the
/// operational and provisioning endpoints listen (their URLs when `operational.public_url` /
/// `provisioning.public_url` are unset).
pub fn bind(app: &App) -> anyhow::Result<(Listeners, Addrs)> {
    let config = &app.config;
    let b = |a: SocketAddr, what: &str| {
        listen(a).with_context(|| format!("cannot bind the {what} listener on {a}"))
    };
    let l = Listeners {
        provisioning: b(config.provisioning.listen, "provisioning")?,
        operational: b(config.operational.listen, "operational")?,
        admin: b(config.admin.listen, "admin")?,
        admin_tls: if config.admin.tls.enabled() {
            Some(
                load_tls(&config.admin.tls.cert, &config.admin.tls.key).with_context(|| {
                    format!(
                        "cannot load the admin TLS certificate {} / key",
                        config.admin.tls.cert
                    )
                })?,
            )
        } else {
            None
        },
        sandbox: config
            .operational
            .sandbox
            .address()
            .map(|a| b(a, "sandbox"))
            .transpose()?,
        hooks: config.hooks.address().map(|a| b(a, "hook")).transpose()?,
        provisioning_tls: bind_tls(&config.provisioning.tls)?,
        operational_tls: bind_tls(&config.operational.tls)?,
    };
    let addr = |l: &TcpListener| l.local_addr();
    let addrs = Addrs {
        provisioning: addr(&l.provisioning)?,
        operational: addr(&l.operational)?,
        admin: addr(&l.admin)?,
        admin_https: l.admin_tls.is_some(),
        provisioning_tls: l
            .provisioning_tls
            .as_ref()
            .map(|(l, _)| addr(l))
            .transpose()?,
        operational_tls: l
            .operational_tls
            .as_ref()
            .map(|(l, _)| addr(l))
            .transpose()?,
        sandbox: l.sandbox.as_ref().map(addr).transpose()?,
        hooks: l.hooks.as_ref().map(addr).transpose()?,
    };
    let _ = app.operational_addr.set(addrs.operational);
    let _ = app.provisioning_addr.set(addrs.provisioning);
    Ok((l, addrs))
}

/// Loads a PEM certificate chain and key into a rustls server config (ring provider).
pub fn load_tls(cert: &str, key: &str) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or_else(|| io::Error::other("no private key in the key file"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(io::Error::other)?;
    Ok(Arc::new(config))
}

/// The brokers behind the operational endpoint and the sandbox: created before the server
/// (loading their retained messages and sessions), saved after it stopped.
pub struct Brokers {
    operational: Arc<Broker>,
    sandbox: Option<Arc<Broker>>,
}

impl Brokers {
    /// Opens the brokers `app.config` asks for.
    pub fn open(app: &App) -> anyhow::Result<Brokers> {
        let c = &app.config.operational;
        let limits = Limits {
            max_queue: c.max_queue.max(1),
            max_retained: c.max_retained,
            session_expiry_v3: Config::secs(c.session_expiry),
            max_keepalive: c.max_keepalive,
        };
        let open =
            |door| Broker::open(door, limits.clone(), app.store.clone(), app.metrics.clone());
        let operational = open(Door::Operational)?;
        app.devices
            .attach(Arc::new(DeviceTransport(operational.clone())));
        Ok(Brokers {
            operational,
            sandbox: c
                .sandbox
                .address()
                .map(|_| {
                    open(Door::Sandbox {
                        deny_subscribe: c.sandbox.deny_subscribe.clone(),
                    })
                })
                .transpose()?,
        })
    }

    /// Saves the persistent sessions; the connections must be closed already.
    fn save(&self) {
        for b in std::iter::once(&self.operational).chain(&self.sandbox) {
            if let Err(e) = b.save() {
                tracing::error!(broker = b.door.name(), error = %e, "could not save the persistent sessions");
            }
        }
    }
}

/// Builds and starts the server; must run inside an ntex `System`.
pub fn build(app: &Arc<App>, l: Listeners, brokers: &Brokers) -> io::Result<ntex::server::Server> {
    let c = &app.config;
    let prov_cfg = || {
        fleetgate_mqtt::listener_config(
            "provisioning",
            c.provisioning.max_packet_size,
            c.provisioning.connect_timeout,
            c.provisioning.max_inflight,
            fleetgate_mqtt::QoS::AtLeastOnce,
        )
    };
    let oper_cfg = || {
        fleetgate_mqtt::listener_config(
            "operational",
            c.operational.max_packet_size,
            c.operational.connect_timeout,
            c.operational.max_inflight,
            fleetgate_mqtt::QoS::ExactlyOnce,
        )
    };
    let workers = fleetgate_config::threads_or_cores(c.server.workers);
    let maxconn = c.provisioning.max_connections + 2 * c.operational.max_connections + 1024;
    let (a1, a2) = (app.clone(), app.clone());
    // One ban list for every worker: a peer's failures count wherever they land.
    let (a3, bans) = (app.clone(), fleetgate_api::guard::Bans::new(&app.config));
    let admin_app = move || {
        ntex::web::App::new()
            .state(a3.clone())
            .state(bans.clone())
            .configure(fleetgate_console::configure)
            .configure(fleetgate_api::configure)
    };
    // One value per endpoint, shared by its TCP and TLS listeners (one operational broker).
    let provisioning = Arc::new(Provisioning::new(app));
    let operational = brokers.operational.clone();
    let (p1, o1) = (provisioning.clone(), operational.clone());
    let mut b = ntex::server::build()
        .name("fleetgate")
        .workers(workers)
        .maxconn(maxconn)
        .backlog(BACKLOG)
        .shutdown_timeout(Seconds(5))
        .listen("provisioning", l.provisioning, async move |_| {
            fleetgate_mqtt::factory(a1.clone(), p1.clone())
        })?
        .config("provisioning", prov_cfg())
        .listen("operational", l.operational, async move |_| {
            fleetgate_mqtt::broker::conn::factory(a2.clone(), o1.clone())
        })?
        .config("operational", oper_cfg());
    // HTTPS replaces HTTP on the same socket; a client speaking plain HTTP to it fails the
    // TLS handshake and is closed (ntex bounds the handshake's time).
    b = match l.admin_tls {
        Some(tls) => b.listen("admin", l.admin, async move |_| {
            ntex::http::HttpService::new(admin_app()).rustls((*tls).clone())
        })?,
        None => b.listen("admin", l.admin, async move |_| {
            ntex::http::HttpService::new(admin_app())
        })?,
    };
    if let Some((listener, tls)) = l.provisioning_tls {
        let (a, p) = (app.clone(), provisioning.clone());
        b = b
            .listen("provisioning-tls", listener, async move |_| {
                chain_factory(ntex::tls::rustls::TlsAcceptor::new(tls.clone()))
                    .map_err(ServiceError::from)
                    .and_then(fleetgate_mqtt::factory(a.clone(), p.clone()))
            })?
            .config("provisioning-tls", prov_cfg());
    }
    if let Some((listener, tls)) = l.operational_tls {
        let (a, o) = (app.clone(), operational.clone());
        b = b
            .listen("operational-tls", listener, async move |_| {
                chain_factory(ntex::tls::rustls::TlsAcceptor::new(tls.clone()))
                    .map_err(ServiceError::from)
                    .and_then(fleetgate_mqtt::broker::conn::factory(a.clone(), o.clone()))
            })?
            .config("operational-tls", oper_cfg());
    }
    if let (Some(listener), Some(sandbox)) = (l.sandbox, &brokers.sandbox) {
        let (a, s) = (app.clone(), sandbox.clone());
        b = b
            .listen("sandbox", listener, async move |_| {
                fleetgate_mqtt::broker::conn::factory(a.clone(), s.clone())
            })?
            .config("sandbox", oper_cfg());
    }
    if let Some(listener) = l.hooks {
        let door = fleetgate_hooks_http::HookDoor::new(app.clone(), app.hooks_token.clone());
        b = b.listen("hooks", listener, async move |_| {
            let door = door.clone();
            ntex::http::HttpService::new(
                ntex::web::App::new()
                    .state(door)
                    .configure(fleetgate_hooks_http::configure),
            )
        })?;
    }
    // Signals are handled by `serve`, which drains exchanges before stopping the workers.
    Ok(b.disable_signals().run())
}

fn log_listeners(addrs: &Addrs) {
    tracing::info!(addr = %addrs.provisioning, "provisioning endpoint (MQTT 3.1.1/5.0, TCP) accepting connections");
    if let Some(a) = addrs.provisioning_tls {
        tracing::info!(addr = %a, "provisioning endpoint (MQTT 3.1.1/5.0, TLS) accepting connections");
    }
    tracing::info!(addr = %addrs.operational, "operational endpoint (MQTT 3.1.1/5.0, TCP) accepting connections");
    if let Some(a) = addrs.operational_tls {
        tracing::info!(addr = %a, "operational endpoint (MQTT 3.1.1/5.0, TLS) accepting connections");
    }
    if let Some(a) = addrs.sandbox {
        tracing::info!(addr = %a, "sandbox endpoint (anonymous MQTT 3.1.1/5.0, TCP) accepting connections");
    }
    if let Some(a) = addrs.hooks {
        tracing::info!(addr = %a, "hook listener (HTTP) accepting connections");
    }
    let scheme = if addrs.admin_https { "HTTPS" } else { "HTTP" };
    tracing::info!(addr = %addrs.admin, "admin API ({scheme}) accepting connections");
}

/// The shutdown sequence of [`serve`] and [`Running::stop`]: stop accepting, let the detached
/// exchanges finish (at most `server.shutdown_timeout`), stop the workers (closing the remaining
/// connections), then, once the server thread has returned, close the store.
fn stop_server(app: &App, server: &ntex::server::Server) {
    futures::executor::block_on(server.pause());
    app.jobs.shutdown();
    let left = app
        .tasks
        .wait_idle(Config::secs(app.config.server.shutdown_timeout));
    if left > 0 {
        tracing::warn!(
            exchanges = left,
            "exchanges still running at server.shutdown_timeout; the next start marks them FAILED"
        );
    }
    // Graceful: ntex waits (at most its shutdown timeout) until every worker has taken its stop
    // message. Not graceful, it stops the runtime after a fixed delay, and a worker still busy
    // then finds its queue closed and logs "Server is gone" at ERROR (seen under a loaded
    // machine). Either way the workers' connections close, so stopping takes no longer.
    futures::executor::block_on(server.stop(true));
}

/// Starts the server on a new thread (inside its own ntex `System`) and returns it once it
/// accepts connections.
fn spawn_server(
    app: &Arc<App>,
    listeners: Listeners,
    brokers: &Brokers,
) -> anyhow::Result<(ntex::server::Server, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let run_app = app.clone();
    let run_brokers = Brokers {
        operational: brokers.operational.clone(),
        sandbox: brokers.sandbox.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("fleetgate-server".into())
        .spawn(move || {
            let ran = ntex::rt::System::build()
                .name("fleetgate")
                .build(ntex::rt::DefaultRuntime)
                .block_on(async move {
                    run_brokers.operational.follow_revocations(&run_app.hooks);
                    match build(&run_app, listeners, &run_brokers) {
                        Ok(server) => {
                            run_app.ready.store(true, Ordering::SeqCst);
                            let _ = tx.send(Ok(server.clone()));
                            server.await
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            Ok(())
                        }
                    }
                });
            if let Err(e) = ran {
                tracing::error!(error = %e, "server failed");
            }
        })?;
    let server = rx.recv().context("server thread died")??;
    Ok((server, thread))
}

/// `fleetgate serve`: opens the store, binds, runs until SIGTERM or SIGINT, then shuts down
/// ([`stop_server`]) and closes the store.
pub fn serve(config: Config) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let data_dir = config.data_dir.clone();
    let app = App::open(config, Arc::new(fleetgate_auth_hook::SystemClock))?;
    tracing::info!(data_dir = %data_dir.display(), "store open");
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the signal handlers")?;
    let (listeners, addrs) = bind(&app)?;
    let brokers = Brokers::open(&app)?;
    let (server, thread) = spawn_server(&app, listeners, &brokers)?;
    crate::memory::start();
    log_listeners(&addrs);
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    app.ready.store(false, Ordering::SeqCst);
    stop_server(&app, &server);
    let _ = thread.join();
    brokers.save();
    app.store.close();
    tracing::info!("stopped; store closed");
    Ok(())
}

/// A server running on a background thread (tests, benches).
pub struct Running {
    /// Where it listens.
    pub addrs: Addrs,
    /// Its state.
    pub app: Arc<App>,
    server: ntex::server::Server,
    brokers: Brokers,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Binds per `app.config` and starts the server on a new thread.
    pub fn start(app: Arc<App>) -> anyhow::Result<Running> {
        let (listeners, addrs) = bind(&app)?;
        let brokers = Brokers::open(&app)?;
        let (server, thread) = spawn_server(&app, listeners, &brokers)?;
        Ok(Running {
            addrs,
            app,
            server,
            brokers,
            thread: Some(thread),
        })
    }

    /// Shuts the server down as `fleetgate serve` does on SIGTERM and closes the store: when
    /// this returns, the data dir can be opened again.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.app.ready.store(false, Ordering::SeqCst);
            stop_server(&self.app, &self.server);
            let _ = t.join();
            self.brokers.save();
            self.app.store.close();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}
