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

/// The admin qube's blob: admin (0), work (1, tag "dev", default disposable disp), disp (2),
/// and one entry: `qubes.OpenInVM`, @anyvm -> @dispvm, allow.
fn admin_sample() -> QubeConfig {
    use bulkhead_policy::{Action, Argument, Entry, Service, Source, Table, Tags, Target};
    let qube = |name: &str, index: u8, kind, policy| AdminQube {
        name: String::try_from(name).unwrap(),
        index,
        label: 0,
        kind,
        memory_mib: 8,
        netvm: None,
        qrexec: (kind == QubeKind::Linux).then(|| String::try_from("x.qrexec").unwrap()),
        policy,
    };
    let plain = bulkhead_policy::Qube::default();
    let mut policy = Table::default();
    let name = policy.intern("qubes.OpenInVM").unwrap();
    policy
        .entries
        .push(Entry {
            service: Service::Named {
                name,
                argument: Argument::Any,
            },
            source: Source::AnyVm,
            target: Target::DispVm,
            action: Action::Allow { redirect: None },
        })
        .unwrap();
    let admin = AdminConfig {
        qubes: Vec::from_iter([
            qube(
                "admin",
                0,
                QubeKind::Unikernel,
                bulkhead_policy::Qube {
                    admin: true,
                    ..plain
                },
            ),
            qube(
                "work",
                1,
                QubeKind::Linux,
                bulkhead_policy::Qube {
                    default_dispvm: Some(2),
                    tags: Tags::NONE.with(0),
                    ..plain
                },
            ),
            qube(
                "disp",
                2,
                QubeKind::Linux,
                bulkhead_policy::Qube {
                    disposable: true,
                    ..plain
                },
            ),
        ]),
        tags: Vec::from_iter([String::try_from("dev").unwrap()]),
        gui: None,
        policy,
    };
    QubeConfig {
        admin: Some(admin),
        ..QubeConfig::empty()
    }
}

/// A storage qube's blob (two private volumes and a template root) and a client's.
fn storage_samples() -> [QubeConfig; 2] {
    let client = |qube: &str, mib| StorageClient {
        qube: String::try_from(qube).unwrap(),
        channel: String::try_from(alloc::format!("{qube}.blk").as_str()).unwrap(),
        volume: ClientVolume::Private { mib },
    };
    let root = StorageClient {
        qube: String::try_from("bob").unwrap(),
        channel: String::try_from("bob.root").unwrap(),
        volume: ClientVolume::TemplateRoot {
            template: String::try_from("debian").unwrap(),
        },
    };
    let server = QubeConfig {
        storage: Some(StorageServer {
            clients: Vec::from_iter([client("alice", 16), client("bob", 4096), root]),
        }),
        ..QubeConfig::empty()
    };
    let alice = QubeConfig {
        block_channel: Some(String::try_from("alice.blk").unwrap()),
        ..QubeConfig::empty()
    };
    [server, alice]
}

#[test]
fn round_trips() {
    let [server, client] = storage_samples();
    for c in [sample(), admin_sample(), server, client] {
        assert_eq!(QubeConfig::decode(&c.to_vec()), Ok(c));
    }
}

#[test]
fn refuses_an_admin_part_that_names_what_does_not_exist() {
    use bulkhead_policy::TableError;
    let with = |edit: fn(&mut AdminConfig)| {
        let mut c = admin_sample();
        edit(c.admin.as_mut().unwrap());
        QubeConfig::decode(&c.to_vec())
    };
    assert_eq!(
        with(|a| a.qubes[1].index = 2),
        Err(ConfigError::Admin(TableError::Qube(1)))
    );
    assert_eq!(
        with(|a| a.qubes[1].netvm = Some(3)),
        Err(ConfigError::Admin(TableError::Qube(1)))
    );
    assert_eq!(
        with(|a| a.gui = Some(3)),
        Err(ConfigError::Admin(TableError::Qubes))
    );
    assert_eq!(
        with(|a| a.tags.clear()),
        Err(ConfigError::Admin(TableError::Qube(1)))
    );
    assert_eq!(
        with(|a| a.policy.names.clear()),
        Err(ConfigError::Admin(TableError::Entry(0)))
    );
}

#[test]
fn the_admin_qube_decides_with_its_blob() {
    use bulkhead_policy::{Call, Decision, Requested, Resolved, evaluate};
    let admin = QubeConfig::decode(&admin_sample().to_vec())
        .unwrap()
        .admin
        .unwrap();
    let call = Call {
        service: "qubes.OpenInVM",
        argument: "",
        source: 1,
        target: Requested::DispVm,
    };
    let d = evaluate(&admin.policy, &admin.policy_qubes(), &call);
    assert_eq!(
        d,
        Decision::Allow {
            target: Resolved::Disposable(2),
            entry: 0
        }
    );
}

/// Every unikernel decodes its blob on its stack (64 KiB): the largest blob's type stays
/// well below that.
#[test]
fn a_decoded_blob_fits_a_unikernel_stack() {
    let size = core::mem::size_of::<QubeConfig>();
    assert!(size <= 32 * 1024, "QubeConfig is {size} bytes");
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
    fn mutated_blobs_never_panic(which in 0usize..3, pos in 0usize..400, val: u8) {
        let [storage, _] = storage_samples();
        let mut bytes = [sample(), admin_sample(), storage][which].to_vec();
        let n = bytes.len();
        bytes[pos % n] = val;
        let _ = QubeConfig::decode(&bytes);
    }
}

#[test]
fn verity_params_round_trip_through_the_command_line() {
    use crate::verity::VerityParams;
    let v = VerityParams {
        data_blocks: 15157,
        hash_start_block: 15157,
        root: [0xab; 32],
        salt: core::array::from_fn(|i| i as u8),
    };
    let text = alloc::format!("{v}");
    assert!(text.starts_with("15157:15157:abab"), "{text}");
    assert_eq!(VerityParams::parse(&text), Ok(v));
    assert_eq!(
        alloc::format!("{}", v.table_args("43:32")),
        alloc::format!(
            "1 43:32 43:32 4096 4096 15157 15157 sha256 {} 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "ab".repeat(32)
        )
    );
    assert!(VerityParams::parse("15157:15157:ab").is_err());
}
