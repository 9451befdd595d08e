//! A test device that behaves like Eclipse Kura's cloud stack, written from Kura's documented
//! behaviour (PROTOCOL.md 7): it subscribes to `$EDC/ACCOUNT/CID/#`, publishes its BIRTH, and
//! answers CONF-V1 `GET/PUT configurations` and CMD-V1 `EXEC command` on
//! `$EDC/ACCOUNT/{requester.client.id}/{APP}/REPLY/{request.id}` at QoS 0 with `response.code`
//! and Kura's metrics. It answers only requests whose `request.id` and `requester.client.id`
//! are STRING metrics, as Kura does; apps it does not know get 404; the app `SILENT-V1` is never
//! answered (timeouts).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetgate_kura::Payload;

/// What the device holds and saw.
#[derive(Default)]
pub struct KuraState {
    /// The configuration snapshot it answers GET with; a PUT replaces it.
    pub configuration: String,
    /// Bodies of the PUTs it received, in order.
    pub puts: Vec<String>,
    /// Commands it ran: the command and its arguments.
    pub commands: Vec<Vec<String>>,
}

/// A running Kura-like device.
pub struct KuraDevice {
    pub state: Arc<Mutex<KuraState>>,
    client: rumqttc::AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

/// The snapshot a fresh device answers `GET configurations` with.
pub const INITIAL_SNAPSHOT: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0" xmlns:ocd="http://www.osgi.org/xmlns/metatype/v1.2.0">"#,
    r#"<esf:configuration pid="org.eclipse.kura.clock.ClockService"><esf:properties>"#,
    r#"<esf:property array="false" encrypted="false" name="enabled" type="Boolean"><esf:value>true</esf:value></esf:property>"#,
    r#"</esf:properties></esf:configuration></esf:configurations>"#
);

impl KuraDevice {
    /// Connects as `username`/`password`, subscribes to its `$EDC` tree, publishes its BIRTH
    /// and starts answering requests.
    pub async fn start(
        addr: SocketAddr,
        account: &str,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> KuraDevice {
        let mut o = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        o.set_credentials(username, password);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut el) = rumqttc::AsyncClient::new(o, 100);
        let state = Arc::new(Mutex::new(KuraState {
            configuration: INITIAL_SNAPSHOT.into(),
            ..KuraState::default()
        }));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        let prefix = format!("$EDC/{account}/{client_id}/");
        let (acc, st, cl) = (account.to_string(), state.clone(), client.clone());
        let task = tokio::spawn(async move {
            use rumqttc::{Event, Packet};
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Some(rest) = p.topic.strip_prefix(&prefix) else {
                            continue;
                        };
                        let levels: Vec<&str> = rest.split('/').collect();
                        let Ok(request) = Payload::decode(&p.payload) else {
                            continue;
                        };
                        if let Some((topic, payload)) = answer(&st, &levels, &request, &acc) {
                            let _ = cl
                                .publish(topic, rumqttc::QoS::AtMostOnce, false, payload.encode())
                                .await;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        client
            .subscribe(
                format!("$EDC/{account}/{client_id}/#"),
                rumqttc::QoS::AtLeastOnce,
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("SUBACK")
            .unwrap();
        let birth = Payload::new()
            .with_str("display_name", client_id)
            .with_str("kura_version", "5.4.0")
            .with_str("application_ids", "CONF-V1,CMD-V1")
            .encode();
        client
            .publish(
                format!("$EDC/{account}/{client_id}/MQTT/BIRTH"),
                rumqttc::QoS::AtLeastOnce,
                false,
                birth,
            )
            .await
            .unwrap();
        KuraDevice {
            state,
            client,
            task,
        }
    }

    /// Disconnects cleanly.
    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.task.abort();
    }
}

/// Kura's answer to a request on `{APP}/{METHOD}/{resources...}`, as (topic, payload). Kura
/// answers only requests whose `request.id` and `requester.client.id` are STRING metrics.
fn answer(
    state: &Mutex<KuraState>,
    levels: &[&str],
    request: &Payload,
    account: &str,
) -> Option<(String, Payload)> {
    let app = *levels.first()?;
    let id = request.metric_str("request.id")?;
    let requester = request.metric_str("requester.client.id")?;
    let reply = |code| Payload::new().with_i32("response.code", code);
    let mut payload = match levels {
        ["CONF-V1", "GET", "configurations", ..] => {
            let body = state.lock().unwrap().configuration.clone();
            reply(200).with_body(body.into_bytes())
        }
        ["CONF-V1", "PUT", "configurations", ..] => {
            let body = String::from_utf8(request.body().unwrap_or_default().to_vec()).ok()?;
            let mut s = state.lock().unwrap();
            s.puts.push(body.clone());
            s.configuration = body;
            reply(200)
        }
        ["CMD-V1", "EXEC", "command"] => {
            let mut argv = vec![request.metric_str("command.command")?.to_string()];
            argv.extend(
                (0..)
                    .map_while(|i| request.metric_str(&format!("command.argument{i}")))
                    .map(str::to_string),
            );
            state.lock().unwrap().commands.push(argv.clone());
            if argv[0] == "false" {
                // Kura: a non-zero exit is answered 500, stderr as the message.
                reply(500)
                    .with_str("response.exception.message", "boom")
                    .with_str("command.stdout", "")
                    .with_str("command.stderr", "boom")
                    .with_i32("command.exit.code", 1)
                    .with_bool("command.timedout", false)
            } else {
                reply(200)
                    .with_str("command.stdout", argv.join(" "))
                    .with_str("command.stderr", "")
                    .with_i32("command.exit.code", 0)
                    .with_bool("command.timedout", false)
            }
        }
        ["SILENT-V1", ..] => return None,
        _ => reply(404),
    };
    payload.set_timestamp(Some(0));
    Some((
        format!("$EDC/{account}/{requester}/{app}/REPLY/{id}"),
        payload,
    ))
}
