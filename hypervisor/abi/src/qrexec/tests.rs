extern crate std;
use super::*;
use proptest::prelude::*;
use std::vec::Vec;

fn round_trip_to(m: &ToAdmin<'_>) -> usize {
    let bytes = postcard::to_allocvec(m).unwrap();
    assert_eq!(&postcard::from_bytes::<ToAdmin<'_>>(&bytes).unwrap(), m);
    bytes.len()
}

fn round_trip_from(m: &FromAdmin<'_>) -> usize {
    let bytes = postcard::to_allocvec(m).unwrap();
    assert_eq!(&postcard::from_bytes::<FromAdmin<'_>>(&bytes).unwrap(), m);
    bytes.len()
}

/// The largest message of each kind fits one slot (the ring refuses a longer one).
#[test]
fn the_largest_messages_fit_a_slot() {
    let data = [0xA5u8; DATA_MAX];
    let long = |n: usize| "x".repeat(n);
    let (service, argument, target) = (long(SERVICE_MAX), long(ARGUMENT_MAX), long(TARGET_MAX));
    let io = Io::Data {
        call: u32::MAX,
        stream: Stream::Stderr,
        bytes: &data,
    };
    let slot = QREXEC_SLOT_SIZE as usize;
    assert!(round_trip_to(&ToAdmin::Io(io.clone())) <= slot);
    assert!(round_trip_from(&FromAdmin::Io(io)) <= slot);
    let call = ToAdmin::Call {
        call: u32::MAX,
        service: &service,
        argument: &argument,
        target: &target,
    };
    assert!(round_trip_to(&call) <= slot);
    let names: Vec<std::string::String> = (0..MAX_CANDIDATES).map(|_| long(TARGET_MAX)).collect();
    let ask = FromAdmin::Ask {
        ask: u32::MAX,
        source: &target,
        service: &service,
        argument: &argument,
        candidates: names.iter().map(|s| s.as_str()).collect(),
        default: Some(u8::MAX),
    };
    assert!(round_trip_from(&ask) <= slot);
}

#[test]
fn renumbering_keeps_everything_else() {
    let msgs = [
        Io::Data {
            call: 1,
            stream: Stream::Stdin,
            bytes: b"abc",
        },
        Io::Eof {
            call: 1,
            stream: Stream::Stdout,
        },
        Io::Ack {
            call: 1,
            stream: Stream::Stdin,
            bytes: 3,
        },
        Io::Exit { call: 1, code: -9 },
        Io::Abort { call: 1 },
    ];
    for m in msgs {
        let r = m.renumbered(7);
        assert_eq!((m.call(), r.call()), (1, 7));
        assert_eq!(r.renumbered(1), m);
    }
}

#[test]
fn services_and_arguments_follow_qubes_rules() {
    for good in ["qubes.Filecopy", "admin.vm.List", "a", "my-service_2"] {
        assert!(valid_service(good), "{good}");
    }
    for bad in ["", ".hidden", "a b", "a/b", "a+b", "qubes.Filecopy\0", "é"] {
        assert!(!valid_service(bad), "{bad:?}");
    }
    assert!(!valid_service(&"s".repeat(SERVICE_MAX + 1)));
    for good in ["", "work", "a+b", "x.y-z_1"] {
        assert!(valid_argument(good), "{good}");
    }
    for bad in ["a b", "../x", "a/b", "\n"] {
        assert!(!valid_argument(bad), "{bad:?}");
    }
    assert!(!valid_argument(&"a".repeat(ARGUMENT_MAX + 1)));
}

proptest! {
    /// Garbage from a hostile peer decodes to an error or a message, never a panic, and
    /// a decoded message re-encodes to a prefix of what it was read from.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(m) = postcard::from_bytes::<ToAdmin<'_>>(&bytes) {
            let again = postcard::to_allocvec(&m).unwrap();
            prop_assert!(bytes.starts_with(&again));
        }
        if let Ok(m) = postcard::from_bytes::<FromAdmin<'_>>(&bytes) {
            let again = postcard::to_allocvec(&m).unwrap();
            prop_assert!(bytes.starts_with(&again));
        }
    }

    #[test]
    fn data_round_trips(call: u32, bytes in proptest::collection::vec(any::<u8>(), 0..DATA_MAX)) {
        let m = ToAdmin::Io(Io::Data { call, stream: Stream::Stdin, bytes: &bytes });
        prop_assert!(round_trip_to(&m) <= QREXEC_SLOT_SIZE as usize);
    }
}
