//! The APIC timer's arithmetic: counts of the divided bus clock against TSC ticks.
//!
//! Every time is computed from the moment the count was loaded, with `u128` intermediates
//! and saturation, so a periodic timer accumulates no rounding drift and no register value
//! or TSC reading can overflow.

use super::{LVT_TIMER, LocalApic, MASKED};

/// The timer's mode, LVT timer bits 17..18.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// 00: count down once from the initial count.
    OneShot,
    /// 01: count down, reload the initial count, repeat.
    Periodic,
    /// 10: fire when the TSC reaches IA32_TSC_DEADLINE.
    Deadline,
}

impl Mode {
    /// The mode of an LVT timer value; the reserved encoding 11 counts as one-shot.
    pub(super) fn of(lvt: u32) -> Mode {
        match (lvt >> 17) & 3 {
            1 => Mode::Periodic,
            2 => Mode::Deadline,
            _ => Mode::OneShot,
        }
    }
}

/// The divisor selected by the divide configuration register (bits 0, 1 and 3).
pub(super) fn divisor(dcr: u32) -> u32 {
    let v = (dcr & 3) | ((dcr >> 1) & 4);
    1 << ((v + 1) & 7)
}

/// Converts between TSC ticks and timer counts at one divisor.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// TSC ticks per millisecond (at least 1).
    pub(super) tsc_khz: u64,
    /// Bus clock ticks per millisecond, before the divider (at least 1).
    pub(super) bus_khz: u64,
    /// The divider.
    pub(super) divisor: u32,
}

impl Clock {
    /// TSC ticks until `counts` counts have elapsed (rounded up: the count has reached 0 at
    /// that TSC, not before).
    pub(super) fn ticks(&self, counts: u128) -> u64 {
        let num = counts
            .saturating_mul(u128::from(self.divisor))
            .saturating_mul(u128::from(self.tsc_khz));
        let den = u128::from(self.bus_khz);
        let t = num / den + u128::from(num % den != 0);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Whole counts elapsed in `ticks` TSC ticks.
    pub(super) fn counts(&self, ticks: u64) -> u128 {
        u128::from(ticks) * u128::from(self.bus_khz)
            / (u128::from(self.tsc_khz) * u128::from(self.divisor))
    }
}

/// A running one-shot or periodic countdown.
#[derive(Debug, Clone, Copy)]
pub(super) struct Countdown {
    /// The TSC at which the counter held `start_count`.
    pub(super) start: u64,
    /// The count at `start` (1 ..= the initial count).
    pub(super) start_count: u32,
    /// For a periodic timer: how many times it has fired since `start`.
    pub(super) fired: u64,
}

impl Countdown {
    /// The counts from `start` to the next expiry of a timer reloading `initial`.
    fn next_counts(&self, initial: u32) -> u128 {
        u128::from(self.start_count)
            .saturating_add(u128::from(self.fired).saturating_mul(u128::from(initial)))
    }

    /// The TSC of the next expiry.
    pub(super) fn next_tsc(&self, clock: &Clock, initial: u32) -> u64 {
        self.start
            .saturating_add(clock.ticks(self.next_counts(initial)))
    }

    /// The current-count register at `now`: the count left, 0 once a one-shot has expired,
    /// and for a periodic timer the count within the current period.
    pub(super) fn current(&self, clock: &Clock, initial: u32, periodic: bool, now: u64) -> u32 {
        let elapsed = clock.counts(now.saturating_sub(self.start));
        let start = u128::from(self.start_count);
        if elapsed < start {
            (start - elapsed) as u32
        } else if periodic && initial != 0 {
            let into = (elapsed - start) % u128::from(initial);
            (u128::from(initial) - into) as u32
        } else {
            0
        }
    }

    /// After a periodic expiry at or before `now`: counts every expiry up to `now` as fired
    /// (missed periods coalesce into one interrupt, as a real APIC's IRR would).
    pub(super) fn catch_up(&mut self, clock: &Clock, initial: u32, now: u64) {
        let elapsed = clock.counts(now.saturating_sub(self.start));
        let start = u128::from(self.start_count);
        let fired = if elapsed < start || initial == 0 {
            self.fired.saturating_add(1)
        } else {
            let k = (elapsed - start) / u128::from(initial) + 1;
            u64::try_from(k).unwrap_or(u64::MAX)
        };
        self.fired = fired.max(self.fired.saturating_add(1));
    }
}

/// The timer registers and IA32_TSC_DEADLINE.
impl LocalApic {
    /// IA32_TSC_DEADLINE (MSR 0x6e0): the armed deadline, 0 if disarmed or not in
    /// TSC-deadline mode.
    pub fn tsc_deadline(&self) -> u64 {
        if self.mode() == Mode::Deadline {
            self.deadline
        } else {
            0
        }
    }

    /// Writes IA32_TSC_DEADLINE at `now_tsc`: arms the timer for `value` (a deadline already
    /// passed fires at once), 0 disarms. Ignored unless the timer is in TSC-deadline mode,
    /// as on hardware.
    pub fn set_tsc_deadline(&mut self, value: u64, now_tsc: u64) {
        self.update_timer(now_tsc);
        if self.mode() == Mode::Deadline {
            self.deadline = value;
            self.update_timer(now_tsc);
        }
    }

    /// Fires the timer if it is due at `now_tsc`: sets the IRR bit of the LVT timer vector
    /// unless the entry is masked (a masked expiry is lost). A periodic timer re-arms from
    /// its previous expiry (several missed periods coalesce into one interrupt); one-shot
    /// and TSC-deadline timers disarm.
    pub fn update_timer(&mut self, now_tsc: u64) {
        let clock = self.clock();
        let initial = self.initial_count;
        let due = match self.mode() {
            Mode::Deadline => {
                let due = self.deadline != 0 && now_tsc >= self.deadline;
                if due {
                    self.deadline = 0;
                }
                due
            }
            mode => match &mut self.countdown {
                Some(cd) if now_tsc >= cd.next_tsc(&clock, initial) => {
                    if mode == Mode::Periodic {
                        cd.catch_up(&clock, initial, now_tsc);
                    } else {
                        self.countdown = None;
                    }
                    true
                }
                _ => false,
            },
        };
        let lvt = self.lvt[LVT_TIMER];
        if due && lvt & MASKED == 0 {
            self.request(lvt as u8, false);
        }
    }

    /// The TSC at which the timer fires next, for the hypervisor to wake up and call
    /// [`LocalApic::update_timer`]; `None` if the timer is stopped or masked.
    pub fn next_timer_tsc(&self) -> Option<u64> {
        if self.lvt[LVT_TIMER] & MASKED != 0 {
            return None;
        }
        match self.mode() {
            Mode::Deadline => (self.deadline != 0).then_some(self.deadline),
            _ => self
                .countdown
                .map(|cd| cd.next_tsc(&self.clock(), self.initial_count)),
        }
    }

    pub(super) fn write_initial_count(&mut self, value: u32, now_tsc: u64) {
        if self.mode() == Mode::Deadline {
            return;
        }
        self.initial_count = value;
        self.countdown = (value != 0).then_some(Countdown {
            start: now_tsc,
            start_count: value,
            fired: 0,
        });
    }

    /// A new divider takes effect from now on, continuing from the current count.
    pub(super) fn write_divide(&mut self, value: u32, now_tsc: u64) {
        let current = self.current_count(now_tsc);
        self.divide = value & 0xB;
        if let Some(cd) = &mut self.countdown {
            *cd = Countdown {
                start: now_tsc,
                start_count: current.max(1),
                fired: 0,
            };
        }
    }

    pub(super) fn current_count(&self, now_tsc: u64) -> u32 {
        match (self.mode(), &self.countdown) {
            (Mode::Deadline, _) | (_, None) => 0,
            (mode, Some(cd)) => cd.current(
                &self.clock(),
                self.initial_count,
                mode == Mode::Periodic,
                now_tsc,
            ),
        }
    }

    pub(super) fn mode(&self) -> Mode {
        Mode::of(self.lvt[LVT_TIMER])
    }

    pub(super) fn clock(&self) -> Clock {
        Clock {
            tsc_khz: self.tsc_khz,
            bus_khz: self.bus_khz,
            divisor: divisor(self.divide),
        }
    }
}
