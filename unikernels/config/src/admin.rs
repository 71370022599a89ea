//! The admin qube's part of its blob: every qube of the system, the tags, which qube is the
//! gui qube, and the compiled qrexec policy (`bulkhead-policy`).

use super::{ConfigError, NAME_MAX};
use bulkhead_policy::{MAX_QUBES, MAX_TAGS, Table};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// What the admin qube knows of the system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminConfig {
    /// Every qube, in manifest order: `qubes[i]` is the hypervisor's qube `i`, the index
    /// the policy names it by.
    pub qubes: Vec<AdminQube, MAX_QUBES>,
    /// The system's tags: bit `t` of a qube's `policy.tags` is `tags[t]`.
    pub tags: Vec<String<NAME_MAX>, MAX_TAGS>,
    /// The gui qube that draws `ask` prompts (the first qube with `image = "gui"` and a
    /// qrexec channel), by index; without one, `ask` is `deny`.
    pub gui: Option<u8>,
    /// The compiled `[[policy]]` tables.
    pub policy: Table,
}

/// One qube, as the admin qube sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminQube {
    /// Its name.
    pub name: String<NAME_MAX>,
    /// Its hypervisor qube index: its position in the manifest (and in
    /// [`AdminConfig::qubes`]).
    pub index: u8,
    /// Its label (`bulkhead_abi::label::Label` as `u8`).
    pub label: u8,
    /// What runs in it.
    pub kind: QubeKind,
    /// Its memory, in MiB.
    pub memory_mib: u32,
    /// Its netvm, by index.
    pub netvm: Option<u8>,
    /// Its qrexec channel (`<qube>.qrexec`, side B the admin qube), if it takes part in
    /// qrexec (Linux qubes and the gui qube).
    pub qrexec: Option<String<NAME_MAX>>,
    /// What the policy engine knows of it: whether it is the admin qube or a disposable,
    /// its `default_dispvm` and its tags.
    pub policy: bulkhead_policy::Qube,
}

/// What runs in a qube.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QubeKind {
    /// A unikernel image.
    Unikernel,
    /// A Linux AppVM.
    Linux,
}

impl AdminConfig {
    /// What the policy engine knows of each qube, by index: the `qubes` argument of
    /// `bulkhead_policy::evaluate`.
    pub fn policy_qubes(&self) -> Vec<bulkhead_policy::Qube, MAX_QUBES> {
        self.qubes.iter().map(|q| q.policy).collect()
    }

    /// Checks that every index names a qube, tag or name that exists and that each qube's
    /// `index` is its position.
    pub fn check(&self) -> Result<(), ConfigError> {
        let count = self.qubes.len();
        let known = |i: u8| usize::from(i) < count;
        for (i, q) in self.qubes.iter().enumerate() {
            if usize::from(q.index) != i || !q.netvm.is_none_or(known) {
                return Err(ConfigError::Admin(bulkhead_policy::TableError::Qube(i)));
            }
        }
        if !self.gui.is_none_or(known) {
            return Err(ConfigError::Admin(bulkhead_policy::TableError::Qubes));
        }
        self.policy
            .check(&self.policy_qubes(), self.tags.len())
            .map_err(ConfigError::Admin)
    }
}
