//! Deterministic mutation fuzzing of the parser: no input may make it panic, and whatever it
//! accepts must be a valid document that writes and reads back unchanged.

use fleetgate_devconfig::{
    Configuration, Document, Identity, Property, PropertyType, ReservedPolicy, generated,
};

const SNAPSHOT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0" xmlns:ocd="http://www.osgi.org/xmlns/metatype/v1.2.0">
  <esf:configuration pid="org.eclipse.kura.command.CommandCloudApp">
    <ocd:OCD id="x" name="y"><ocd:AD id="a" type="Boolean" cardinality="0"><ocd:Option label="l" value="v"/></ocd:AD></ocd:OCD>
    <esf:properties>
      <esf:property array="false" encrypted="false" name="command.enable" type="Boolean"><esf:value>true</esf:value></esf:property>
      <esf:property array="true" encrypted="false" name="env" type="String"><esf:value>A=1</esf:value><esf:value><![CDATA[B=<2>]]></esf:value></esf:property>
      <esf:property name="t" type="Integer"><esf:value>60</esf:value></esf:property>
      <esf:property name="c" type="Char"><esf:value>&#x263A;</esf:value></esf:property>
    </esf:properties>
  </esf:configuration>
</esf:configurations>
"#;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let identity = Identity {
        broker_url: "mqtts://ops.example:8883".into(),
        account_name: "acme".into(),
        client_id: "dev-1".into(),
        username: "dev-1@acme".into(),
        password: "Aa1!aaaaaaaaaaaaaaaaaaa".into(),
    };
    let additional = Document {
        configurations: vec![Configuration::new(
            "org.eclipse.kura.core.diagnostics.DiagnosticsService",
            vec![
                Property::scalar("enable", PropertyType::Boolean, "true"),
                Property::scalar("interval", PropertyType::Long, "-5"),
                Property::scalar("ratio", PropertyType::Float, "0.25"),
                Property::scalar("odd", PropertyType::String, "<&>\"'\r\n\t"),
                Property::array("b", PropertyType::Byte, ["1", "-128"]),
            ],
        )],
    };
    let merged = Document::merge(
        generated(&identity, Some("vpn.pid")),
        &additional,
        &ReservedPolicy::for_generated(Some("vpn.pid")),
    );
    vec![
        SNAPSHOT.as_bytes().to_vec(),
        merged.document.to_xml().into_bytes(),
        additional.to_xml().into_bytes(),
    ]
}

const SNIPPETS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "&",
    ";",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "&lt",
    "\"",
    "'",
    "=",
    " ",
    "\n",
    "\r",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<!DOCTYPE x>",
    "<?xml version=\"1.0\"?>",
    "<value>",
    "</value>",
    "<property name=\"n\" type=\"Long\">",
    "</property>",
    "<properties>",
    "<configuration>",
    "</configuration>",
    "<id>",
    "</id>",
    "type=\"Strin\"",
    "array=\"true\"",
    "\u{feff}",
    "é",
    "\u{0}",
    "\u{1}",
    "\u{FFFF}",
    "esf:",
    "xmlns:a=\"b\"",
    "<x>",
    "</x>",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let len = input.len();
    match rng.below(7) {
        0 => {
            // Flip bits of one byte.
            if len > 0 {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            // Overwrite one byte with a structural character.
            if len > 0 {
                let i = rng.below(len);
                const BYTES: &[u8] = b"<>/&;\"'= \n!?-[]x0";
                input[i] = BYTES[rng.below(BYTES.len())];
            }
        }
        2 => input.truncate(rng.below(len + 1)),
        3 => {
            // Delete a range.
            let a = rng.below(len + 1);
            let b = (a + rng.below(40)).min(len);
            input.drain(a..b);
        }
        4 => {
            // Duplicate a range somewhere else.
            let a = rng.below(len + 1);
            let b = (a + rng.below(200)).min(len);
            let chunk = input[a..b].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, chunk);
        }
        _ => {
            let snippet = SNIPPETS[rng.below(SNIPPETS.len())].as_bytes();
            let at = rng.below(len + 1);
            input.splice(at..at, snippet.iter().copied());
        }
    }
}

#[test]
fn mutated_documents_never_panic_and_accepted_ones_round_trip() {
    let seeds = seeds();
    for seed in &seeds {
        let text = std::str::from_utf8(seed).unwrap();
        assert!(Document::parse(text).is_ok(), "seed must parse: {text}");
    }
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut accepted = 0;
    let mut rejected = 0;
    for _ in 0..20_000 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input);
        }
        let text = String::from_utf8_lossy(&input);
        match Document::parse(&text) {
            Ok(d) => {
                accepted += 1;
                assert_eq!(d.validate(), Ok(()), "{text}");
                assert_eq!(Document::parse(&d.to_xml()).as_ref(), Ok(&d), "{text}");
                let _ = d.to_xml_masked();
            }
            Err(e) => {
                rejected += 1;
                assert!(e.line >= 1 && e.column >= 1, "{e}");
                assert!(!e.message.is_empty());
                let _ = e.to_string();
            }
        }
    }
    println!("accepted {accepted}, rejected {rejected}");
    // Both outcomes are exercised, or the mutations are not doing their job.
    assert!(accepted > 500 && rejected > 5000, "{accepted} / {rejected}");
}
