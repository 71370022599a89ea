//! Services the agent offers other qubes. [`disposable`] serves a disposable's one request
//! (run a command, stream its output, power off); [`filecopy`] is the stream of
//! `qubes.Filecopy` (both ends, no transport yet). General service calls (qrexec-like: a
//! service has a name and answers a request with bytes) will land in the [`Dispatcher`];
//! the transport that brings them is a later issue.

pub mod disposable;
pub mod filecopy;

use std::collections::BTreeMap;
use std::fmt;

/// One service the agent offers.
pub trait Service {
    /// Answers one call.
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, ServiceError>;
}

/// Why a call was not answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// No service of that name.
    Unknown(String),
    /// The service refused or failed.
    Failed(String),
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Unknown(name) => write!(f, "no service {name:?}"),
            ServiceError::Failed(why) => write!(f, "service failed: {why}"),
        }
    }
}

/// Routes calls to services by name.
#[derive(Default)]
pub struct Dispatcher {
    services: BTreeMap<String, Box<dyn Service>>,
}

impl Dispatcher {
    pub fn new() -> Dispatcher {
        Dispatcher::default()
    }

    /// Offers `service` as `name` (replacing any earlier one).
    pub fn register(&mut self, name: &str, service: Box<dyn Service>) {
        self.services.insert(name.to_string(), service);
    }

    /// The names offered, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.services.keys().map(String::as_str).collect()
    }

    pub fn dispatch(&mut self, name: &str, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match self.services.get_mut(name) {
            Some(service) => service.call(request),
            None => Err(ServiceError::Unknown(name.to_string())),
        }
    }
}

/// `bulkhead.Ping`: answers with the request (a liveness check).
#[derive(Debug)]
pub struct Ping;

impl Service for Ping {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        Ok(request.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl Service for Counter {
        fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
            if request.is_empty() {
                return Err(ServiceError::Failed("empty".into()));
            }
            self.0 += 1;
            Ok(self.0.to_string().into_bytes())
        }
    }

    #[test]
    fn routes_by_name() {
        let mut d = Dispatcher::new();
        d.register("bulkhead.Ping", Box::new(Ping));
        d.register("test.Count", Box::new(Counter(0)));
        assert_eq!(d.names(), ["bulkhead.Ping", "test.Count"]);
        assert_eq!(d.dispatch("bulkhead.Ping", b"hi").unwrap(), b"hi");
        assert_eq!(d.dispatch("test.Count", b"x").unwrap(), b"1");
        assert_eq!(d.dispatch("test.Count", b"x").unwrap(), b"2");
        assert_eq!(
            d.dispatch("test.Count", b""),
            Err(ServiceError::Failed("empty".into()))
        );
        assert_eq!(
            d.dispatch("qubes.Filecopy", b""),
            Err(ServiceError::Unknown("qubes.Filecopy".into()))
        );
    }
}
