use super::*;
use alloc::rc::Rc;
use core::cell::RefCell;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;

/// One direction of a fake channel: messages as bytes, with a capacity.
#[derive(Default)]
struct Ring {
    msgs: VecDeque<Vec<u8>>,
    cap: usize,
}

/// A fake pipe: sends into `tx`, receives from `rx`; an error to return once.
struct FakePipe {
    tx: Rc<RefCell<Ring>>,
    rx: Rc<RefCell<Ring>>,
    fail_once: Option<ChannelError>,
    yields: u32,
}

impl FakePipe {
    fn pair(cap: usize) -> (FakePipe, FakePipe) {
        let a = Rc::new(RefCell::new(Ring {
            msgs: VecDeque::new(),
            cap,
        }));
        let b = Rc::new(RefCell::new(Ring {
            msgs: VecDeque::new(),
            cap,
        }));
        (
            FakePipe {
                tx: a.clone(),
                rx: b.clone(),
                fail_once: None,
                yields: 0,
            },
            FakePipe {
                tx: b,
                rx: a,
                fail_once: None,
                yields: 0,
            },
        )
    }
}

impl Pipe for FakePipe {
    fn try_send_msg(&mut self, msg: &Net<'_>) -> Result<bool, ChannelError> {
        if let Some(e) = self.fail_once.take() {
            return Err(e);
        }
        let mut ring = self.tx.borrow_mut();
        if ring.msgs.len() >= ring.cap {
            return Ok(false);
        }
        ring.msgs
            .push_back(postcard::to_allocvec(msg).map_err(|_| ChannelError::Encode)?);
        Ok(true)
    }

    fn try_recv_bytes<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ChannelError> {
        if let Some(e) = self.fail_once.take() {
            return Err(e);
        }
        Ok(self.rx.borrow_mut().msgs.pop_front().map(|m| f(&m)))
    }

    fn wait(&mut self, _timeout: Option<Duration>) -> Result<Events, ChannelError> {
        match self.fail_once.take() {
            Some(e) => Err(e),
            None => Ok(Events::NONE),
        }
    }

    fn yield_now(&mut self) {
        self.yields += 1;
    }
}

fn hello(version: u16, qube: &str) -> Net<'static> {
    Net::Hello(Hello {
        version,
        qube: heapless::String::try_from(qube).unwrap(),
    })
}

/// The messages `pipe`'s peer received, decoded.
fn sent(peer: &FakePipe) -> Vec<Vec<u8>> {
    peer.rx.borrow_mut().msgs.drain(..).collect()
}

#[test]
fn hello_goes_first_and_frames_wait_for_the_peers() {
    let (pipe, mut peer) = FakePipe::pair(16);
    let mut link = NetLink::new(pipe, "work");
    let out = sent(&peer);
    assert_eq!(out.len(), 1);
    assert_eq!(
        postcard::from_bytes::<Net<'_>>(&out[0]).unwrap(),
        hello(PROTO_VERSION, "work")
    );
    assert!(!link.is_up());

    // A frame before the peer's Hello is dropped.
    peer.try_send_msg(&Net::Frame(&[1, 2, 3])).unwrap();
    assert_eq!(link.recv_frame(<[u8]>::to_vec), None);
    assert_eq!(link.stats.rx_dropped, 1);

    peer.try_send_msg(&hello(PROTO_VERSION, "firewall"))
        .unwrap();
    peer.try_send_msg(&Net::Frame(&[4, 5, 6])).unwrap();
    assert_eq!(link.recv_frame(<[u8]>::to_vec), Some(vec![4, 5, 6]));
    assert!(link.is_up());
    assert_eq!(
        link.take_event(),
        Some(LinkEvent::PeerHello {
            qube: heapless::String::try_from("firewall").unwrap()
        })
    );
    assert_eq!(link.stats.rx_frames, 1);
}

#[test]
fn control_messages_become_events_and_garbage_is_counted() {
    let (pipe, mut peer) = FakePipe::pair(16);
    let mut link = NetLink::new(pipe, "firewall");
    peer.try_send_msg(&hello(PROTO_VERSION, "net")).unwrap();
    let uplink = UplinkInfo {
        mac: [2, 0, 0, 0, 0, 1],
        address: [10, 0, 2, 15],
        prefix_len: 24,
        gateway: Some([10, 0, 2, 2]),
        dns: heapless::Vec::from_slice(&[[10, 0, 2, 3]]).unwrap(),
    };
    peer.try_send_msg(&Net::Uplink(uplink.clone())).unwrap();
    peer.rx.borrow_mut().msgs.clear();
    link.pipe().rx.borrow_mut().msgs.push_back(vec![0xff; 9]);
    peer.try_send_msg(&Net::UplinkDown).unwrap();
    let too_long = vec![0u8; MAX_FRAME + 1];
    peer.try_send_msg(&Net::Frame(&too_long)).unwrap();
    assert_eq!(link.recv_frame(|_| ()), None);
    assert!(matches!(
        link.take_event(),
        Some(LinkEvent::PeerHello { .. })
    ));
    assert_eq!(link.take_event(), Some(LinkEvent::Uplink(uplink)));
    assert_eq!(link.take_event(), Some(LinkEvent::UplinkDown));
    assert_eq!(link.take_event(), None);
    assert_eq!(link.stats.undecodable, 1);
    assert_eq!(link.stats.rx_dropped, 1, "the over-long frame");
}

#[test]
fn another_version_refuses_the_link() {
    let (pipe, mut peer) = FakePipe::pair(16);
    let mut link = NetLink::new(pipe, "work");
    peer.try_send_msg(&hello(PROTO_VERSION + 1, "future"))
        .unwrap();
    peer.try_send_msg(&Net::Frame(&[1])).unwrap();
    assert_eq!(link.recv_frame(|_| ()), None);
    assert_eq!(
        link.take_event(),
        Some(LinkEvent::Refused {
            version: PROTO_VERSION + 1
        })
    );
    assert!(!link.is_up());
    assert_eq!(link.stats.rx_dropped, 1);
}

#[test]
fn a_full_ring_is_retried_then_the_frame_dropped() {
    let (pipe, peer) = FakePipe::pair(2);
    let mut link = NetLink::new(pipe, "net"); // Hello takes one slot
    assert!(link.send_frame(&[1; 60]));
    assert!(!link.send_frame(&[2; 60]), "ring full");
    assert_eq!(link.pipe().yields, SEND_RETRIES);
    assert_eq!((link.stats.tx_frames, link.stats.tx_dropped), (1, 1));
    assert!(!link.send_frame(&[0; MAX_FRAME + 1]));
    assert_eq!(link.stats.tx_dropped, 2);
    assert_eq!(sent(&peer).len(), 2);
}

#[test]
fn a_reset_says_hello_again_and_waits_for_the_peers() {
    let (pipe, mut peer) = FakePipe::pair(16);
    let mut link = NetLink::new(pipe, "net");
    peer.try_send_msg(&hello(PROTO_VERSION, "firewall"))
        .unwrap();
    assert_eq!(link.recv_frame(|_| ()), None);
    assert!(link.is_up());
    sent(&peer);

    link.pipe().fail_once = Some(ChannelError::Reset);
    assert_eq!(link.recv_frame(|_| ()), None);
    assert!(!link.is_up(), "waits for the restarted peer's Hello");
    let out = sent(&peer);
    assert_eq!(out.len(), 1);
    assert_eq!(
        postcard::from_bytes::<Net<'_>>(&out[0]).unwrap(),
        hello(PROTO_VERSION, "net")
    );
    assert!(matches!(
        link.take_event(),
        Some(LinkEvent::PeerHello { .. })
    ));
    assert_eq!(link.take_event(), Some(LinkEvent::Reset));

    // A reset first seen while getting ready to sleep is reported the same way.
    peer.try_send_msg(&hello(PROTO_VERSION, "firewall"))
        .unwrap();
    assert_eq!(link.recv_frame(|_| ()), None);
    assert!(link.is_up());
    sent(&peer);
    while link.take_event().is_some() {}
    link.pipe().fail_once = Some(ChannelError::Reset);
    link.wait(None);
    assert!(!link.is_up(), "waits for the restarted peer's Hello again");
    assert_eq!(link.take_event(), Some(LinkEvent::Reset));
    assert_eq!(sent(&peer).len(), 1, "our Hello went out again");

    // A breach breaks the link until a reset; frames are then refused.
    let breach = ChannelError::Broken(bulkhead_ring::Breach::Decode);
    link.pipe().fail_once = Some(breach);
    assert_eq!(link.recv_frame(|_| ()), None);
    assert_eq!(link.broken(), Some(breach));
    assert_eq!(link.take_event(), Some(LinkEvent::Broken(breach)));
    assert!(
        Device::transmit(&mut link, Instant::ZERO).is_none(),
        "no transmit token on a broken link"
    );
}

#[test]
fn a_second_hello_without_reset_is_answered() {
    let (pipe, mut peer) = FakePipe::pair(16);
    let mut link = NetLink::new(pipe, "net");
    peer.try_send_msg(&hello(PROTO_VERSION, "firewall"))
        .unwrap();
    peer.try_send_msg(&hello(PROTO_VERSION, "firewall"))
        .unwrap();
    sent(&peer);
    assert_eq!(link.recv_frame(|_| ()), None);
    assert_eq!(
        sent(&peer).len(),
        1,
        "our Hello again for the restarted peer"
    );
    assert!(link.is_up());
}

#[test]
fn more_events_than_kept_drop_the_oldest() {
    let (pipe, mut peer) = FakePipe::pair(64);
    let mut link = NetLink::new(pipe, "x");
    for _ in 0..MAX_EVENTS + 3 {
        peer.try_send_msg(&Net::UplinkDown).unwrap();
    }
    link.recv_frame(|_| ());
    assert_eq!(
        core::iter::from_fn(|| link.take_event()).count(),
        MAX_EVENTS
    );
}

#[test]
fn sleep_is_the_poll_delay_capped() {
    let ms = Duration::from_millis;
    let sm = smoltcp::time::Duration::from_millis;
    assert_eq!(sleep_for(Some(sm(5)), Some(ms(1))), Some(ms(1)));
    assert_eq!(sleep_for(Some(sm(5)), Some(ms(10))), Some(ms(5)));
    assert_eq!(sleep_for(None, Some(ms(10))), Some(ms(10)));
    assert_eq!(sleep_for(Some(sm(0)), None), Some(ms(0)));
    assert_eq!(sleep_for(None, None), None);
    assert_eq!(instant_at(1_500_000), Instant::from_micros(1500));
}

#[test]
fn frame_queue_bounds_both_ways() {
    let mut q = FrameQueue::new();
    for _ in 0..FRAME_QUEUE_LEN + 2 {
        q.push_rx(&[0; 60]);
    }
    q.push_rx(&[0; MAX_FRAME + 1]);
    assert_eq!(q.dropped, 3);
    let mut n = 0;
    while let Some((rx, _)) = Device::receive(&mut q, Instant::ZERO) {
        phy::RxToken::consume(rx, |f| assert_eq!(f.len(), 60));
        n += 1;
    }
    assert_eq!(n, FRAME_QUEUE_LEN);
    for i in 0..FRAME_QUEUE_LEN + 1 {
        let tx = Device::transmit(&mut q, Instant::ZERO).unwrap();
        phy::TxToken::consume(tx, 42, |b| b[0] = i as u8);
    }
    assert_eq!(q.dropped, 4);
    assert_eq!(q.pop_tx().unwrap(), {
        let mut v = vec![0u8; 42];
        v[0] = 0;
        v
    });
}

/// Two interfaces joined by a link: a TCP connection carries bytes both ways through the
/// `Net::Frame` framing (ARP, handshake, data, acknowledgements).
#[test]
fn tcp_runs_over_a_pair_of_links() {
    let (pa, pb) = FakePipe::pair(64);
    let mut a = NetLink::new(pa, "a");
    let mut b = NetLink::new(pb, "b");
    let mac_a = [2, 0, 0, 0, 0, 0xa];
    let mac_b = [2, 0, 0, 0, 0, 0xb];
    let mut t = Instant::from_millis(1);
    let new_iface = |link: &mut NetLink<FakePipe>, mac: [u8; 6], ip: [u8; 4], t: Instant| {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = u64::from(mac[5]);
        let mut iface = Interface::new(config, link, t);
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24))
                .unwrap();
        });
        iface
    };
    let mut ia = new_iface(&mut a, mac_a, [10, 137, 0, 10], t);
    let mut ib = new_iface(&mut b, mac_b, [10, 137, 0, 1], t);
    let socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 8192]),
        )
    };
    let mut sa = SocketSet::new(vec![]);
    let mut sb = SocketSet::new(vec![]);
    let ha: SocketHandle = sa.add(socket());
    let hb: SocketHandle = sb.add(socket());
    sb.get_mut::<tcp::Socket>(hb).listen(7).unwrap();
    sa.get_mut::<tcp::Socket>(ha)
        .connect(ia.context(), (IpAddress::v4(10, 137, 0, 1), 7), 49152)
        .unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let (mut sent_a, mut got_b, mut echoed) = (0, Vec::new(), Vec::new());
    for _ in 0..2000 {
        ia.poll(t, &mut a, &mut sa);
        ib.poll(t, &mut b, &mut sb);
        let s = sa.get_mut::<tcp::Socket>(ha);
        if s.can_send() && sent_a < data.len() {
            sent_a += s.send_slice(&data[sent_a..]).unwrap();
        }
        if s.can_recv() {
            s.recv(|d| {
                echoed.extend_from_slice(d);
                (d.len(), ())
            })
            .unwrap();
        }
        let s = sb.get_mut::<tcp::Socket>(hb);
        if s.can_recv() {
            let mut buf = [0u8; 4096];
            let n = s.recv_slice(&mut buf).unwrap();
            got_b.extend_from_slice(&buf[..n]);
            assert_eq!(s.send_slice(&buf[..n]).unwrap(), n, "echo fits the buffer");
        }
        if echoed.len() == data.len() {
            break;
        }
        t += smoltcp::time::Duration::from_millis(1);
    }
    assert_eq!(got_b, data, "a -> b intact");
    assert_eq!(echoed, data, "b -> a intact");
    assert!(a.is_up() && b.is_up());
    assert_eq!(a.stats.tx_dropped + b.stats.tx_dropped, 0);
    assert_eq!(a.stats.rx_dropped + b.stats.rx_dropped, 0);
    assert!(a.stats.tx_frames > 10 && a.stats.rx_frames > 10);
}
