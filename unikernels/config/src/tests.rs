use super::*;
use proptest::prelude::*;

fn sample() -> QubeConfig {
    let mut c = QubeConfig::empty();
    c.uplink = Some(Uplink {
        channel: String::try_from("firewall.net").unwrap(),
        address: None,
        prefix_len: 24,
        gateway: [0; 4],
        dns: Vec::new(),
    });
    let mut rules = Vec::new();
    rules
        .push(Rule {
            action: Action::Accept,
            dsthost: Some(Cidr {
                addr: [10, 0, 2, 2],
                prefix_len: 32,
            }),
            proto: Some(Proto::Tcp),
            dstports: Some(PortRange { lo: 80, hi: 443 }),
            icmptype: None,
            specialtarget: None,
        })
        .unwrap();
    rules.push(Rule::catch_all(Action::Drop)).unwrap();
    c.downstream
        .push(Downstream {
            qube: String::try_from("work").unwrap(),
            channel: String::try_from("work.net").unwrap(),
            address: Some([10, 137, 0, 10]),
            rules,
        })
        .unwrap();
    c.router = Some(Router {
        gateway: [10, 137, 0, 1],
        virtual_dns: Vec::from_slice(&[[10, 139, 1, 1], [10, 139, 1, 2]]).unwrap(),
        upstream_dns: Some(([10, 0, 2, 2], 5353)),
    });
    c
}

#[test]
fn round_trips() {
    let c = sample();
    assert_eq!(QubeConfig::decode(&c.to_vec()), Ok(c));
}

#[test]
fn refuses_other_versions_and_trailing_bytes() {
    let mut c = sample();
    c.version = 7;
    assert_eq!(
        QubeConfig::decode(&c.to_vec()),
        Err(ConfigError::Version(7))
    );
    let mut bytes = sample().to_vec();
    bytes.push(0);
    assert_eq!(QubeConfig::decode(&bytes), Err(ConfigError::TrailingBytes));
    assert_eq!(QubeConfig::decode(&[]), Err(ConfigError::Malformed));
}

#[test]
fn cidr_and_ports_match_as_documented() {
    let net = Cidr {
        addr: [10, 137, 0, 99],
        prefix_len: 24,
    };
    assert!(net.contains([10, 137, 0, 1]));
    assert!(!net.contains([10, 137, 1, 1]));
    let any = Cidr {
        addr: [1, 2, 3, 4],
        prefix_len: 0,
    };
    assert!(any.contains([200, 1, 1, 1]));
    let host = Cidr {
        addr: [1, 2, 3, 4],
        prefix_len: 32,
    };
    assert!(host.contains([1, 2, 3, 4]) && !host.contains([1, 2, 3, 5]));
    let p = PortRange { lo: 80, hi: 443 };
    assert!(p.contains(80) && p.contains(443) && !p.contains(79) && !p.contains(444));
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = QubeConfig::decode(&bytes);
    }

    #[test]
    fn mutated_blobs_never_panic(pos in 0usize..400, val: u8) {
        let mut bytes = sample().to_vec();
        let n = bytes.len();
        bytes[pos % n] = val;
        let _ = QubeConfig::decode(&bytes);
    }
}
