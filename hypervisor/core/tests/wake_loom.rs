//! The model checks of the cross-CPU protocols: the wake-up (`src/wake.rs`): under every
//! interleaving, a CPU that decides to halt has been sent an IPI if mail was posted for it,
//! so it never sleeps on work; and a Linux qube's secondary vCPU parked by its first
//! (`src/ap_gate.rs`): once the parker stops waiting, the vCPU is out of the guest and stays
//! out, so the parker may rewrite the qube's memory (loom finds any unsynchronised access to
//! it). Run by `cargo xtask test loom-wake` (`RUSTFLAGS="--cfg loom"`).
#![cfg(loom)]

use bulkhead_hvcore::ap_gate::ApGate;
use bulkhead_hvcore::wake::{Mailbox, Sleeper};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// One poster, one CPU going to sleep: the CPU either sees the mail or is kicked.
#[test]
fn no_lost_wake_up() {
    loom::model(|| {
        let mailbox = Arc::new(Mailbox::new());
        let sleeper = Arc::new(Sleeper::new());
        let ipi = Arc::new(AtomicBool::new(false));
        let poster = {
            let (mailbox, sleeper, ipi) = (mailbox.clone(), sleeper.clone(), ipi.clone());
            thread::spawn(move || {
                mailbox.post(1 << 3);
                if sleeper.needs_kick() {
                    ipi.store(true, Ordering::SeqCst);
                }
            })
        };
        sleeper.going_idle();
        let halted = !mailbox.has_mail();
        let taken = if halted { 0 } else { mailbox.take() };
        poster.join().unwrap();
        if halted {
            // The CPU halted: the IPI must have been sent, and the mail is still there.
            assert!(
                ipi.load(Ordering::SeqCst),
                "the CPU halted with mail and no IPI"
            );
            assert_eq!(mailbox.take(), 1 << 3);
        } else {
            sleeper.awake();
            assert_eq!(taken, 1 << 3);
        }
    });
}

/// Two posters to two qubes of one CPU: whatever the order, the CPU that halts was kicked,
/// and no bit is lost or taken twice.
#[test]
fn two_posters_lose_nothing() {
    loom::model(|| {
        let boxes = Arc::new([Mailbox::new(), Mailbox::new()]);
        let sleeper = Arc::new(Sleeper::new());
        let kicks = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let posters: Vec<_> = (0..2)
            .map(|i| {
                let (boxes, sleeper, kicks) = (boxes.clone(), sleeper.clone(), kicks.clone());
                thread::spawn(move || {
                    boxes[i].post(1 << i);
                    if sleeper.needs_kick() {
                        kicks.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        sleeper.going_idle();
        let mut got = [0u64; 2];
        let halted = !boxes.iter().any(Mailbox::has_mail);
        if !halted {
            sleeper.awake();
            for (g, b) in got.iter_mut().zip(boxes.iter()) {
                *g |= b.take();
            }
        }
        for p in posters {
            p.join().unwrap();
        }
        // A CPU that halted saw no mail, so every post came after its `going_idle`: at
        // least one poster must have kicked it. (A CPU that went on is awake and looks
        // again on its next pass, so a later post needs no kick.)
        if halted {
            assert!(
                kicks.load(Ordering::SeqCst) > 0,
                "the CPU halted with mail and no IPI"
            );
        }
        for (g, b) in got.iter_mut().zip(boxes.iter()) {
            *g |= b.take();
        }
        assert_eq!(got, [1, 2]);
    });
}

/// A running secondary vCPU entering the guest twice (each time touching the qube's memory)
/// while the first vCPU parks it, waits until it is out, and rewrites that memory: loom
/// reports a data race on the memory if the vCPU can be inside after the wait.
#[test]
fn a_parked_vcpu_stays_out_of_the_guest() {
    loom::model(|| {
        let gate = Arc::new(ApGate::new());
        gate.init();
        assert!(gate.startup(0x9a));
        assert_eq!(gate.take_startup(), Some(0x9a));
        let memory = Arc::new(loom::cell::UnsafeCell::new(0u64));
        let vcpu = {
            let (gate, memory) = (gate.clone(), memory.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    if gate.enter() {
                        // The guest runs: it reads and writes its memory.
                        memory.with_mut(|m| unsafe { *m += 1 });
                        gate.left();
                    }
                }
            })
        };
        gate.park();
        while gate.inside() {
            thread::yield_now();
        }
        // The qube starts over: its memory is rewritten.
        memory.with_mut(|m| unsafe { *m = 0 });
        vcpu.join().unwrap();
        assert!(!gate.inside());
    });
}
