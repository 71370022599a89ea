//! The agent of a Linux AppVM, started by the template's `/init`: reads the qube's network
//! settings, creates and configures its interface, offers its services, and says
//! "agent: ready" on the console. The channel to the firewall and the transport of service
//! calls come with the hypervisor's channel device (not yet).

use bulkhead_agent::{channel, config, net, service};
use std::process::ExitCode;

fn main() -> ExitCode {
    println!("agent: bulkhead-agent {}", env!("CARGO_PKG_VERSION"));
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    // Kept open: the TAP interface lives as long as its descriptor.
    let _tap = match config::parse_cmdline(&cmdline) {
        Ok(cfg) => match net::setup(&cfg) {
            Ok(tap) => {
                let gw = cfg.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                let dns: Vec<String> = cfg.dns.iter().map(|d| d.to_string()).collect();
                println!(
                    "agent: {} {}/{}{gw}, dns {}",
                    tap.name,
                    cfg.address,
                    cfg.prefix_len,
                    if dns.is_empty() {
                        "none".into()
                    } else {
                        dns.join(" ")
                    }
                );
                Some(tap)
            }
            Err(e) => {
                println!("agent: network set-up failed: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(config::ConfigError::NoAddress) => {
            println!("agent: no bulkhead.ip= on the command line: no network");
            None
        }
        Err(e) => {
            println!("agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut services = service::Dispatcher::new();
    services.register("bulkhead.Ping", Box::new(service::Ping));
    let _frames: Option<Box<dyn channel::FrameChannel>> = None;
    println!("agent: ready (services: {})", services.names().join(" "));
    // Nothing brings frames or calls yet (no channel device): stay, so the qube stays up.
    loop {
        std::thread::park();
    }
}
