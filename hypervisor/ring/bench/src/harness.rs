//! The two measurements, the same for every transport: two threads, pinned one per core.
//!
//! Side A drives: it warms up, times itself on the way to choose how many operations a run
//! gets, then does the runs, and tells side B what to do through flags in the messages'
//! sequence numbers (so no second channel and no shared clock are needed).
//!
//! - Round trip: A sends, B receives and sends the message back, A receives. A times batches
//!   of round trips; a sample is a batch's mean round trip.
//! - One way: A produces as fast as the transport accepts, B consumes. B times batches
//!   between marked messages; a sample is a batch's messages per second. Before each run A
//!   waits until B has drained, so every run starts from an empty transport.

use crate::message::{Flag, Msg};
use crate::stats::Samples;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The sending half of a transport. `send` returns once the message is accepted, spinning
/// (or blocking, for the kernel transports) while the transport is full.
pub trait Sender: Send {
    /// Sends one message.
    fn send(&mut self, msg: &Msg);
}

/// The receiving half of a transport. `recv` spins (or blocks) until a message is there.
pub trait Receiver: Send {
    /// Receives one message.
    fn recv(&mut self) -> Msg;
}

/// A sending and a receiving half used together as one side of a round trip.
pub struct Duplex<S, R> {
    /// Towards the peer.
    pub tx: S,
    /// From the peer.
    pub rx: R,
}

impl<S: Sender, R: Send> Sender for Duplex<S, R> {
    fn send(&mut self, msg: &Msg) {
        self.tx.send(msg)
    }
}

impl<S: Send, R: Receiver> Receiver for Duplex<S, R> {
    fn recv(&mut self) -> Msg {
        self.rx.recv()
    }
}

/// How long and how often to measure one transport in one direction.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Timed runs.
    pub runs: usize,
    /// Samples (batches) per run.
    pub batches: usize,
    /// Time spent warming up (and estimating the cost of one operation) before the runs.
    pub warmup: Duration,
    /// Time all the runs together should take.
    pub budget: Duration,
    /// Most operations in one run.
    pub max_per_run: u64,
}

impl Plan {
    /// Operations per batch, from one operation's estimated cost: the runs fill the budget,
    /// a batch has at least 8 operations.
    fn batch_len(&self, cost: Duration) -> u64 {
        let per_run = self.budget.as_secs_f64() / self.runs as f64;
        let ops = (per_run / cost.as_secs_f64().max(1e-10)) as u64;
        let ops = ops.clamp(
            8 * self.batches as u64,
            self.max_per_run.max(8 * self.batches as u64),
        );
        ops / self.batches as u64
    }
}

/// What one measurement gives: the samples grouped by run, and the shape of a run.
#[derive(Debug)]
pub struct Measured {
    /// One `Samples` per run.
    pub runs: Vec<Samples>,
    /// Operations per run.
    pub per_run: u64,
    /// Operations per sample.
    pub per_batch: u64,
}

/// The cores the two sides run on, if the machine lets us pin.
#[derive(Clone, Copy, Debug)]
pub struct Cores {
    /// Core of side A.
    pub a: Option<core_affinity::CoreId>,
    /// Core of side B.
    pub b: Option<core_affinity::CoreId>,
}

impl Cores {
    /// The first two cores this process may run on (unpinned if there are fewer than two).
    pub fn detect() -> Cores {
        match core_affinity::get_core_ids() {
            Some(ids) if ids.len() >= 2 => Cores {
                a: Some(ids[0]),
                b: Some(ids[1]),
            },
            _ => Cores { a: None, b: None },
        }
    }

    /// Whether the two sides are pinned.
    pub fn pinned(&self) -> bool {
        self.a.is_some()
    }

    /// Core ids as numbers, for the report.
    pub fn ids(&self) -> Option<[usize; 2]> {
        Some([self.a?.id, self.b?.id])
    }
}

fn pin(core: Option<core_affinity::CoreId>) {
    if let Some(core) = core
        && !core_affinity::set_for_current(core)
    {
        eprintln!("warning: could not pin a thread to core {}", core.id);
    }
}

/// Runs `a` and `b` on their cores and returns what `a` gives.
pub fn on_two_cores<T: Send>(
    cores: Cores,
    a: impl FnOnce() -> T + Send,
    b: impl FnOnce() + Send,
) -> T {
    std::thread::scope(|s| {
        let peer = std::thread::Builder::new()
            .name("side-b".into())
            .spawn_scoped(s, move || {
                pin(cores.b);
                b()
            })
            .expect("spawning side B");
        let mine = std::thread::Builder::new()
            .name("side-a".into())
            .spawn_scoped(s, move || {
                pin(cores.a);
                a()
            })
            .expect("spawning side A");
        let result = mine.join().expect("side A panicked");
        peer.join().expect("side B panicked");
        result
    })
}

fn expect_seq(got: &Msg, want: u64) {
    assert_eq!(got.number(), want, "message out of order or lost");
}

/// Times `op` as the measurements do: a warm-up (at least [`Plan::warmup`] and 8 operations),
/// which also estimates one operation's cost, then [`Plan::runs`] runs of [`Plan::batches`]
/// samples; a sample is a batch's mean time per operation, in nanoseconds.
pub fn time_ops(plan: &Plan, mut op: impl FnMut()) -> Measured {
    let started = Instant::now();
    let (mut done, mut chunk) = (0u64, 1u64);
    while done < 8 || started.elapsed() < plan.warmup {
        for _ in 0..chunk {
            op();
        }
        done += chunk;
        chunk = (chunk * 2).min(64);
    }
    let batch = plan.batch_len(started.elapsed() / done as u32);
    let runs = (0..plan.runs)
        .map(|_| {
            let samples = (0..plan.batches)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..batch {
                        op();
                    }
                    t.elapsed().as_nanos() as f64 / batch as f64
                })
                .collect();
            Samples::new(samples)
        })
        .collect();
    Measured {
        runs,
        per_run: batch * plan.batches as u64,
        per_batch: batch,
    }
}

/// Round-trip latency: samples are nanoseconds per round trip (a batch's mean).
pub fn round_trip<A, B>(plan: &Plan, cores: Cores, mut a: A, mut b: B) -> Measured
where
    A: Sender + Receiver,
    B: Sender + Receiver,
{
    let drive = move || {
        let mut seq = 0u64;
        let mut once = |flag: Option<Flag>| {
            let msg = flag.map_or(Msg::new(seq), |f| Msg::flagged(seq, f));
            a.send(&msg);
            expect_seq(&a.recv(), seq);
            seq += 1;
        };
        let measured = time_ops(plan, || once(None));
        once(Some(Flag::Stop));
        measured
    };
    let echo = move || {
        loop {
            let m = b.recv();
            b.send(&m);
            if m.flag() == Some(Flag::Stop) {
                break;
            }
        }
    };
    on_two_cores(cores, drive, echo)
}

/// The software path alone: one thread (on side A's core) sends a message and receives it
/// again from the same transport, so no cache line ever crosses to the other core. Samples
/// are nanoseconds per message (send + receive).
pub fn same_thread<T: Sender + Receiver>(plan: &Plan, cores: Cores, mut t: T) -> Measured {
    let work = move || {
        let mut seq = 0u64;
        time_ops(plan, || {
            t.send(&Msg::new(seq));
            expect_seq(&t.recv(), seq);
            seq += 1;
        })
    };
    on_two_cores(cores, work, || {})
}

/// The encoding alone: postcard-encode the message into a slot-sized buffer and decode it
/// back, on one thread. Samples are nanoseconds per message.
pub fn encode_decode(plan: &Plan, cores: Cores) -> Measured {
    struct Codec([u8; 128], usize);
    impl Sender for Codec {
        fn send(&mut self, msg: &Msg) {
            self.1 = postcard::to_slice(std::hint::black_box(msg), &mut self.0)
                .expect("fits")
                .len();
        }
    }
    impl Receiver for Codec {
        fn recv(&mut self) -> Msg {
            postcard::from_bytes(std::hint::black_box(&self.0[..self.1])).expect("decodes")
        }
    }
    same_thread(plan, cores, Codec([0; 128], 0))
}

/// One-way throughput: samples are messages per second (a batch's, timed at the consumer).
pub fn one_way<P: Sender, C: Receiver>(
    plan: &Plan,
    cores: Cores,
    mut tx: P,
    mut rx: C,
) -> Measured {
    // Runs B has drained, and the samples it took, handed back when it leaves.
    let drained = Arc::new(AtomicU64::new(0));
    let drained_b = drained.clone();
    let (samples_tx, samples_rx) = std::sync::mpsc::channel::<Vec<f64>>();

    let produce = move || {
        let mut seq = 0u64;
        let started = Instant::now();
        let mut done = 0u64;
        while started.elapsed() < plan.warmup || done < 64 {
            for _ in 0..64 {
                tx.send(&Msg::new(seq));
                seq += 1;
            }
            done += 64;
        }
        let batch = plan.batch_len(started.elapsed() / done as u32);
        for run in 0..plan.runs as u64 {
            // B acknowledges the Start once everything before it is consumed, so every run
            // starts from an empty transport.
            tx.send(&Msg::flagged(seq, Flag::Start));
            seq += 1;
            while drained.load(Ordering::Acquire) <= run {
                std::hint::spin_loop();
            }
            for b in 0..plan.batches {
                for _ in 1..batch {
                    tx.send(&Msg::new(seq));
                    seq += 1;
                }
                let flag = if b + 1 == plan.batches {
                    Flag::End
                } else {
                    Flag::Mark
                };
                tx.send(&Msg::flagged(seq, flag));
                seq += 1;
            }
        }
        tx.send(&Msg::flagged(seq, Flag::Stop));
        let runs = samples_rx.iter().map(Samples::new).collect();
        Measured {
            runs,
            per_run: batch * plan.batches as u64,
            per_batch: batch,
        }
    };
    let consume = move || {
        let mut want = 0u64;
        let mut since = Instant::now();
        let mut count = 0u64;
        let mut samples = Vec::new();
        loop {
            let m = rx.recv();
            expect_seq(&m, want);
            want += 1;
            count += 1;
            match m.flag() {
                None => {}
                Some(Flag::Start) => {
                    drained_b.fetch_add(1, Ordering::Release);
                    since = Instant::now();
                    count = 0;
                }
                Some(Flag::Mark | Flag::End) => {
                    let now = Instant::now();
                    samples.push(count as f64 / (now - since).as_secs_f64());
                    since = now;
                    count = 0;
                    if m.flag() == Some(Flag::End) {
                        samples_tx
                            .send(std::mem::take(&mut samples))
                            .expect("producer gone");
                    }
                }
                Some(Flag::Stop) => break,
            }
        }
        drop(samples_tx);
    };
    on_two_cores(cores, produce, consume)
}
