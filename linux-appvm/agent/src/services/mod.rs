//! Services the agent offers other qubes. [`disposable`] serves a disposable's one request
//! (run a command, stream its output, power off). The qrexec services (`crate::qrexec`
//! brings their calls) are in [`SERVICES`], each started on a call's pipes ([`call`]):
//! `qubes.VMShell` ([`vmshell`]), `qubes.Filecopy` ([`incoming`], over the stream of
//! [`filecopy`]), `qubes.OpenInVM` ([`open_in_vm`]) and `bulkhead.Ping`.

pub mod call;
pub mod disposable;
pub mod filecopy;
pub mod incoming;
pub mod open_in_vm;
pub mod vmshell;

pub use call::Start;

/// The qrexec services this qube serves, by name (sorted).
pub const SERVICES: &[(&str, Start)] = &[
    ("bulkhead.Ping", vmshell::ping),
    ("qubes.Filecopy", incoming::start),
    ("qubes.OpenInVM", open_in_vm::start),
    ("qubes.VMShell", vmshell::start),
];

/// The service called `name`.
pub fn lookup(name: &str) -> Option<Start> {
    SERVICES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of [`SERVICES`].
pub fn names() -> Vec<&'static str> {
    SERVICES.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_by_name() {
        assert_eq!(
            names(),
            [
                "bulkhead.Ping",
                "qubes.Filecopy",
                "qubes.OpenInVM",
                "qubes.VMShell"
            ]
        );
        assert!(lookup("qubes.VMShell").is_some());
        assert!(lookup("qubes.vmshell").is_none());
        for name in names() {
            assert!(bulkhead_abi::qrexec::valid_service(name));
        }
    }
}
