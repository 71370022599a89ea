//! `firewall-bench`: frames per second through the sys-firewall engine, and the same job done
//! by Linux (forwarding, nftables rules, masquerade) between network namespaces on this
//! machine, in one run. A measurement, not a test: it prints figures and never fails on them.
//!
//! ```text
//! firewall-bench [--runs N] [--seconds S] [--engine-seconds S] [--no-linux] [--markdown FILE]
//! ```
//!
//! Both sides forward established UDP flows (16, round robin) from a client to a server on
//! the uplink's network and back, through the same rule set (DNS to the virtual servers,
//! TCP 443 and UDP 9000-9099 to the server, drop the rest) with masquerading, for 64-byte and
//! 1514-byte frames. Each figure is the median of N runs.
//!
//! The two figures do not measure the same work, and the output says so: the engine figure
//! is `Firewall::handle` alone (parse, connection lookup, translation, checksums, a copy of
//! the frame) on one core, without any I/O; the Linux figure is a whole path: a `sendmmsg`
//! sender, two veth pairs, the router namespace's forwarding, conntrack, nftables and NAT, up
//! to an ingress counter at the far end.

mod blast;
mod engine;
mod linux;
mod setup;

use std::time::Duration;

const SIZES: [usize; 2] = [64, 1514];

struct Args {
    runs: usize,
    seconds: f64,
    engine_seconds: f64,
    linux: bool,
    markdown: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        runs: 5,
        seconds: 2.0,
        engine_seconds: 0.5,
        linux: true,
        markdown: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--runs" => a.runs = value("--runs")?.parse().map_err(|_| "bad --runs")?,
            "--seconds" => a.seconds = value("--seconds")?.parse().map_err(|_| "bad --seconds")?,
            "--engine-seconds" => {
                a.engine_seconds = value("--engine-seconds")?
                    .parse()
                    .map_err(|_| "bad --engine-seconds")?
            }
            "--no-linux" => a.linux = false,
            "--markdown" => a.markdown = Some(value("--markdown")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    a.runs = a.runs.max(1);
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `12.3 M` / `845 k` frames per second.
fn fps(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.0} k", v / 1e3)
    }
}

/// The figures: [size][direction] with direction 0 = client -> uplink, 1 = uplink -> client.
type Figures = [[f64; 2]; 2];
/// Linux: (arrived, sent by the sender) per [size][direction].
type LinuxFigures = [[(f64, f64); 2]; 2];

fn subcommand(cmd: &str, rest: &[String]) -> Option<Result<(), String>> {
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    Some(match cmd {
        "blast" => arg(2)
            .parse()
            .map_err(|_| "bad payload".to_string())
            .and_then(|payload| {
                let secs = arg(3).parse().map_err(|_| "bad seconds".to_string())?;
                blast::blast(arg(0), arg(1), payload, secs)
            }),
        "echo" => (|| {
            let first = arg(1).parse().map_err(|_| "bad port")?;
            let count = arg(2).parse().map_err(|_| "bad count")?;
            let timeout = arg(3).parse().map_err(|_| "bad timeout")?;
            blast::echo(arg(0), first, count, timeout)
        })(),
        "hello" => arg(2)
            .parse()
            .map_err(|_| "bad timeout".to_string())
            .and_then(|t| blast::hello(arg(0), arg(1), t)),
        _ => return None,
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(cmd) = argv.first()
        && let Some(r) = subcommand(cmd, &argv[1..])
    {
        if let Err(e) = r {
            eprintln!("firewall-bench {cmd}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args(argv.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("firewall-bench: {e}");
            std::process::exit(2);
        }
    };
    let runs = args.runs;
    println!(
        "firewall bench: frames per second, median of {runs} runs, {} established UDP flows, \
         rules: DNS, TCP 443 and UDP 9000-9099 to the server, drop the rest; masquerade",
        setup::FLOWS
    );

    let mut eng: Figures = [[0.0; 2]; 2];
    for (i, &size) in SIZES.iter().enumerate() {
        let (up, down) = engine::measure(size, runs, Duration::from_secs_f64(args.engine_seconds));
        eng[i] = [median(up), median(down)];
        println!(
            "  engine   {size:>4} B  client->uplink {:>9}/s   uplink->client {:>9}/s",
            fps(eng[i][0]),
            fps(eng[i][1])
        );
    }

    let linux = if args.linux {
        linux_figures(&args)
    } else {
        Err("not run (--no-linux)".into())
    };

    let md = markdown(&eng, &linux, &args);
    println!("\n{md}");
    if let Some(path) = &args.markdown {
        if let Err(e) = std::fs::write(path, &md) {
            eprintln!("firewall-bench: writing {path}: {e}");
            std::process::exit(1);
        }
        println!("wrote {path}");
    }
}

fn linux_figures(args: &Args) -> Result<LinuxFigures, String> {
    linux::preflight()?;
    let net = linux::Net::create()?;
    let mut lin: LinuxFigures = [[(0.0, 0.0); 2]; 2];
    for (i, &size) in SIZES.iter().enumerate() {
        for (d, up) in [true, false].into_iter().enumerate() {
            let mut v = Vec::new();
            let mut offered = Vec::new();
            for _ in 0..args.runs {
                let (got, sent) = net.measure(up, size, args.seconds)?;
                v.push(got);
                offered.push(sent);
            }
            lin[i][d] = (median(v), median(offered));
            println!(
                "  nftables {size:>4} B  {}: {:>9}/s arrived of {:>9}/s sent",
                if up {
                    "client->uplink"
                } else {
                    "uplink->client"
                },
                fps(lin[i][d].0),
                fps(lin[i][d].1)
            );
        }
    }
    Ok(lin)
}

fn markdown(eng: &Figures, linux: &Result<LinuxFigures, String>, args: &Args) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Frames per second, median of {} runs ({} s each for the engine, {} s for Linux), {} \
         established UDP flows through the same rules (DNS to the virtual servers, TCP 443 and \
         UDP 9000-9099 to the server, drop the rest) with masquerading.\n\n",
        args.runs,
        args.engine_seconds,
        args.seconds,
        setup::FLOWS
    ));
    md.push_str(
        "| frame | direction | engine | Linux nftables (arrived) | Linux sender (sent) | engine / Linux |\n",
    );
    md.push_str("|---|---|---|---|---|---|\n");
    for (i, size) in SIZES.iter().enumerate() {
        for (d, dir) in ["client → uplink", "uplink → client"].iter().enumerate() {
            let (lin, sent, ratio) = match linux {
                Ok(l) => (
                    format!("{}/s", fps(l[i][d].0)),
                    format!("{}/s", fps(l[i][d].1)),
                    format!("{:.1}×", eng[i][d] / l[i][d].0),
                ),
                Err(_) => ("—".into(), "—".into(), "—".into()),
            };
            md.push_str(&format!(
                "| {size} B | {dir} | {}/s | {lin} | {sent} | {ratio} |\n",
                fps(eng[i][d])
            ));
        }
    }
    md.push_str(
        "\n**What each figure measures.** *Engine*: `Firewall::handle` called in a loop on one \
         core with frames already in memory (parse, connection lookup, address and port \
         translation, checksum updates, one copy of the frame, the output callback); no \
         channel, no ring, no I/O, no second qube. *Linux*: the whole path on this machine: a \
         `sendmmsg` UDP sender in a client namespace, a veth pair, the router namespace's \
         IPv4 forwarding with conntrack, the nftables rules and masquerade, a second veth \
         pair, counted (and dropped) by an nftables ingress hook in the server namespace; \
         socket, veth and softirq costs included. The sender's core also runs the forwarding \
         (veth hands each frame to the receiving namespace on the sending CPU), so when nearly \
         every frame sent arrives, the figure is the cost of the whole path on one core. The \
         ratio is therefore not \"the engine is \
         N× faster than Linux at the same job\": it compares the engine's decision-and-\
         translation cost with a complete kernel forwarding path. The engine's end-to-end \
         rate in Bulkhead is bounded by the channels (see the ring figures) and sys-net.\n",
    );
    if let Err(why) = linux {
        md.push_str(&format!("\nLinux baseline not measured: {why}\n"));
    }
    md.push_str(&format!(
        "\nMachine: {} logical CPUs, {}. Command: `cargo xtask bench --firewall` (runs \
         `cargo run --release -p bulkhead-firewall-bench`).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    ));
    md
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
