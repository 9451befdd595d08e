//! What a device checks in a PROV-V1 reply before it trusts it (PROTOCOL.md 4.2, 4.4, 4.5).

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::stats::{Failure, FailureKind};
use crate::wire::Reply;

/// The new identity a successful reply gives the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Where to reconnect (`broker.url`).
    pub broker_url: String,
    /// `CID@ACCOUNT`.
    pub username: String,
    /// The generated password.
    pub password: String,
}

/// Checks a decoded reply for device `client_id` of `account`: response code 200, status
/// `COMPLETED`, the identity PROTOCOL.md 4.4 promises, and a well-formed configuration document
/// that carries the same password.
pub fn verify_reply(reply: Reply, client_id: &str, account: &str) -> Result<Identity, Failure> {
    if reply.response_code != 200 {
        return Err(Failure::new(
            FailureKind::ReplyCode(reply.response_code),
            format!(
                "{client_id}: response.code {}: {}",
                reply.response_code,
                reply.exception_message.as_deref().unwrap_or("(no message)")
            ),
        ));
    }
    let bad = |what: String| Failure::bad_reply(format!("{client_id}: {what}"));
    let required = |name: &str, v: Option<String>| -> Result<String, Failure> {
        match v {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(bad(format!("success reply without {name}"))),
        }
    };
    let status = required("provision.status", reply.provision_status)?;
    if status != "COMPLETED" {
        return Err(bad(format!(
            "provision.status is {status:?}, not COMPLETED"
        )));
    }
    let broker_url = required("broker.url", reply.broker_url)?;
    let account_name = required("account.name", reply.account_name)?;
    if account_name != account {
        return Err(bad(format!(
            "account.name is {account_name:?}, expected {account:?}"
        )));
    }
    let cid = required("client.id", reply.client_id)?;
    if cid != client_id {
        return Err(bad(format!("client.id is {cid:?}")));
    }
    let username = required("username", reply.username)?;
    let expected = format!("{client_id}@{account}");
    if username != expected {
        return Err(bad(format!(
            "username is {username:?}, expected {expected:?}"
        )));
    }
    let password = required("password", reply.password)?;
    let configuration = required("configuration", reply.configuration)?;
    check_configuration(&configuration, &password)
        .map_err(|e| bad(format!("configuration: {e}")))?;
    Ok(Identity {
        broker_url,
        username,
        password,
    })
}

/// Checks that `xml` is a well-formed document whose root is `configurations`, with at least
/// one `configuration`, and that a `password` property carries `password`. Local names are
/// compared, so the `esf:` snapshot prefix is accepted too.
pub fn check_configuration(xml: &str, password: &str) -> Result<(), String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut configurations = 0usize;
    // Inside <property name="password">, and then inside its <value>.
    let mut in_password_property: Option<usize> = None;
    let mut value_text: Option<String> = None;
    let mut password_found = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if depth == 0 && roots > 0 => {
                return Err("more than one root element".into());
            }
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if depth == 0 {
                    roots += 1;
                    if name != "configurations" {
                        return Err(format!("root element is <{}>, not <configurations>", name));
                    }
                }
                match name {
                    "configuration" => configurations += 1,
                    "property" if is_password_property(&e)? => in_password_property = Some(depth),
                    "value" if in_password_property.is_some() => value_text = Some(String::new()),
                    _ => {}
                }
                depth += 1;
            }
            Event::Empty(e) => {
                if depth == 0 {
                    roots += 1;
                    if e.local_name().as_ref() != "configurations" {
                        return Err("root element is not <configurations>".into());
                    }
                }
                if e.local_name().as_ref() == "configuration" {
                    configurations += 1;
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                let name = e.local_name();
                if name.as_ref() == "value" {
                    password_found |= value_text.take().is_some_and(|v| v == password);
                } else if name.as_ref() == "property" && in_password_property == Some(depth) {
                    in_password_property = None;
                }
            }
            Event::Text(t) => {
                if let Some(v) = value_text.as_mut() {
                    v.push_str(&t);
                } else if depth == 0 && !t.trim().is_empty() {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(c) => {
                if let Some(v) = value_text.as_mut() {
                    v.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| e.to_string())?
                } else {
                    match &*r {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        other => return Err(format!("unknown entity &{other};")),
                    }
                };
                if let (Some(v), Some(ch)) = (value_text.as_mut(), ch) {
                    v.push(ch);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if roots == 0 {
        return Err("no root element".into());
    }
    if depth != 0 {
        return Err("document ends inside an element".into());
    }
    if configurations == 0 {
        return Err("no <configuration> element".into());
    }
    if !password_found {
        return Err("no password property with the reply's password".into());
    }
    Ok(())
}

fn is_password_property(e: &quick_xml::events::BytesStart<'_>) -> Result<bool, String> {
    let attr = e
        .try_get_attribute("name")
        .map_err(|err| format!("bad attribute: {err}"))?;
    Ok(match attr {
        Some(a) => {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| err.to_string())?
                == "password"
        }
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "Ab3!xyzXYZ0123456789";

    fn document(password: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<configurations xmlns:ns0="http://www.osgi.org/xmlns/metatype/v1.2.0">
  <configuration>
    <id>org.eclipse.kura.core.data.transport.mqtt.MqttDataTransport</id>
    <properties>
      <property name="broker-url" array="false" encrypted="false" type="String"><value>mqtt://127.0.0.1:1884</value></property>
      <property name="username" array="false" encrypted="false" type="String"><value>dev-1@acme</value></property>
      <property name="password" array="false" encrypted="false" type="Password"><value>{password}</value></property>
    </properties>
  </configuration>
</configurations>"#
        )
    }

    fn success() -> Reply {
        Reply {
            response_code: 200,
            exception_message: None,
            provision_status: Some("COMPLETED".into()),
            broker_url: Some("mqtt://127.0.0.1:1884".into()),
            account_name: Some("acme".into()),
            client_id: Some("dev-1".into()),
            username: Some("dev-1@acme".into()),
            password: Some(PW.into()),
            configuration: Some(document(PW)),
        }
    }

    #[test]
    fn accepts_a_good_reply() {
        let id = verify_reply(success(), "dev-1", "acme").unwrap();
        assert_eq!(id.username, "dev-1@acme");
        assert_eq!(id.password, PW);
    }

    #[test]
    fn error_codes_become_reply_code_failures() {
        let reply = Reply {
            response_code: 403,
            exception_message: Some("activation key".into()),
            ..Reply::default()
        };
        let f = verify_reply(reply, "dev-1", "acme").unwrap_err();
        assert_eq!(f.kind, FailureKind::ReplyCode(403));
        assert_eq!(f.kind.key(), "reply_code_403");
    }

    #[test]
    fn rejects_incomplete_or_foreign_replies() {
        let cases: [fn(&mut Reply); 8] = [
            |r| r.password = None,
            |r| r.username = Some("dev-2@acme".into()),
            |r| r.client_id = Some("dev-2".into()),
            |r| r.account_name = Some("other".into()),
            |r| r.provision_status = Some("RUNNING".into()),
            |r| r.broker_url = None,
            |r| r.configuration = Some("<configurations><configuration>".into()),
            |r| r.configuration = Some(document("another-password")),
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut r = success();
            mutate(&mut r);
            let f = verify_reply(r, "dev-1", "acme").unwrap_err();
            assert_eq!(f.kind, FailureKind::BadReply, "case {i}: {f}");
        }
    }

    #[test]
    fn configuration_documents() {
        assert!(check_configuration(&document(PW), PW).is_ok());
        // Snapshot form with prefixes, and an escaped password.
        let snapshot = r#"<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0">
            <esf:configuration pid="x"><esf:properties>
            <esf:property name="password" array="false" encrypted="false" type="Password">
            <esf:value>a&amp;b&#33;</esf:value></esf:property></esf:properties></esf:configuration>
            </esf:configurations>"#;
        assert!(check_configuration(snapshot, "a&b!").is_ok());
        assert!(check_configuration("", PW).is_err());
        assert!(check_configuration("<other/>", PW).is_err());
        assert!(check_configuration("<configurations/>", PW).is_err());
        assert!(check_configuration("<configurations></configuration>", PW).is_err());
        assert!(check_configuration(&format!("{}<configurations/>", document(PW)), PW).is_err());
        assert!(check_configuration(&document(PW), "other").is_err());
    }
}
