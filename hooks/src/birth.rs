//! A device's Kura BIRTH (PROTOCOL.md 6.3): recognising its topic without allocating (every
//! accepted PUBLISH is asked) and reading the registry's facts out of its KuraPayload, plain or
//! gzip-compressed (Kura's cloud service compresses payloads when that makes them smaller).

use fleetgate_kura::{KuraError, Payload};
use fleetgate_storage::Birth;

/// The largest BIRTH payload read after decompression: a BIRTH is a few hundred bytes, and a
/// small compressed payload must not expand without bound.
const MAX_BIRTH: usize = 256 * 1024;

pub(crate) use fleetgate_kura::topics::is_birth_topic;

/// The BIRTH metrics the registry keeps. A metric of another type than STRING is kept as
/// text when it has a natural one (numbers, booleans), since Kura versions differ there.
pub(crate) fn decode(payload: &[u8]) -> Result<Birth, KuraError> {
    let p = Payload::decode_maybe_gzip(payload, MAX_BIRTH)?;
    let text = |name: &str| -> Option<String> {
        let m = p.metric(name)?;
        m.as_str()
            .map(str::to_string)
            .or_else(|| m.as_i64().map(|v| v.to_string()))
            .or_else(|| m.as_i32().map(|v| v.to_string()))
            .or_else(|| m.as_bool().map(|v| v.to_string()))
    };
    Ok(Birth {
        display_name: text("display_name"),
        model_name: text("model_name"),
        model_id: text("model_id"),
        serial_number: text("serial_number"),
        firmware_version: text("firmware_version"),
        os: text("os"),
        os_version: text("os_version"),
        jvm_version: text("jvm_version"),
        kura_version: text("kura_version"),
        application_framework_version: text("application_framework_version"),
        connection_interface: text("connection_interface"),
        connection_ip: text("connection_ip"),
        application_ids: text("application_ids"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_devices_own_birth_topic_matches() {
        assert!(is_birth_topic(
            "$EDC/acme/dev-1/MQTT/BIRTH",
            "acme",
            "dev-1"
        ));
        for other in [
            "$EDC/acme/dev-1/MQTT/BIRTH/x",
            "$EDC/acme/dev-1/MQTT/DC",
            "$EDC/acme/dev-12/MQTT/BIRTH",
            "$EDC/acme/dev/MQTT/BIRTH",
            "$EDC/acmex/dev-1/MQTT/BIRTH",
            "$EDC/other/dev-1/MQTT/BIRTH",
            "acme/dev-1/MQTT/BIRTH",
            "$EDC/acme/dev-1/mqtt/BIRTH",
        ] {
            assert!(!is_birth_topic(other, "acme", "dev-1"), "{other}");
        }
    }

    #[test]
    fn birth_metrics_become_facts() {
        let payload = Payload::new()
            .with_str("display_name", "Pump 1")
            .with_str("model_name", "Raspberry Pi 4")
            .with_str("kura_version", "5.4.0")
            .with_str("application_ids", "CONF-V1,CMD-V1")
            .with_str("connection_ip", "10.0.0.7")
            .with_i32("serial_number", 42)
            .with_str("unrelated", "x")
            .encode();
        let b = decode(&payload).unwrap();
        assert_eq!(b.display_name.as_deref(), Some("Pump 1"));
        assert_eq!(b.model_name.as_deref(), Some("Raspberry Pi 4"));
        assert_eq!(b.kura_version.as_deref(), Some("5.4.0"));
        assert_eq!(b.application_ids.as_deref(), Some("CONF-V1,CMD-V1"));
        assert_eq!(b.connection_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(b.serial_number.as_deref(), Some("42"));
        assert_eq!(b.os, None);
        assert!(decode(b"\xff\xff\xff").is_err());
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_gzip_birth_is_read_and_a_bomb_is_not() {
        let payload = Payload::new().with_str("os", "Linux").encode();
        let b = decode(&gzip(&payload)).unwrap();
        assert_eq!(b.os.as_deref(), Some("Linux"));
        assert!(matches!(
            decode(&gzip(&vec![0u8; MAX_BIRTH + 1])),
            Err(KuraError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(&[0x1f, 0x8b, 0, 1, 2]),
            Err(KuraError::Gzip(_))
        ));
    }
}
