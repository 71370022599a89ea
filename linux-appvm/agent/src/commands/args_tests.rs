//! Every command's command line: what it asks for, its help, and what it refuses.

use super::args::*;
use super::{Context, EXIT_FAILED, EXIT_USAGE, NAMES, run_named};
use std::path::PathBuf;

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn refused<T: std::fmt::Debug>(r: Result<T, Usage>) -> String {
    match r {
        Err(Usage::Error(why)) => why,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn qvm_run() {
    let a = parse_run(&words("-p work ls -l /tmp")).unwrap();
    assert_eq!(
        (a.target.as_str(), a.command.as_str()),
        ("work", "ls -l /tmp")
    );
    assert!(a.pass_io && a.colour && !a.quiet && a.filter.is_none());
    let a = parse_run(&words("--dispvm -pq --no-colour-output echo hi")).unwrap();
    assert_eq!(
        (a.target.as_str(), a.command.as_str()),
        ("@dispvm", "echo hi")
    );
    assert!(a.pass_io && a.quiet && !a.colour);
    let a = parse_run(&words("--dispvm=disp --no-filter-escape-chars -- -x")).unwrap();
    assert_eq!(
        (a.target.as_str(), a.command.as_str(), a.filter),
        ("@dispvm:disp", "-x", Some(false))
    );
    // Options end at VMNAME: the command keeps its own.
    let a = parse_run(&words("work -p")).unwrap();
    assert_eq!((a.command.as_str(), a.pass_io), ("-p", false));
    assert_eq!(parse_run(&words("-h")), Err(Usage::Help));
    assert_eq!(parse_run(&words("--help work x")), Err(Usage::Help));
    assert!(refused(parse_run(&words("work"))).contains("no COMMAND"));
    assert!(refused(parse_run(&words(""))).contains("no VMNAME"));
    assert!(refused(parse_run(&words("-x work ls"))).contains("unknown option -x"));
    assert!(refused(parse_run(&words("../etc ls"))).contains("not a qube"));
    assert!(refused(parse_run(&words("@default ls"))).contains("not a qube"));
    assert!(refused(parse_run(&words("--dispvm=a/b ls"))).contains("not a qube"));
}

#[test]
fn the_copy_commands() {
    let a = parse_copy("qvm-copy", &words("a b/c")).unwrap();
    let files = vec![PathBuf::from("a"), PathBuf::from("b/c")];
    assert_eq!(
        a,
        CopyArgs {
            target: "@default".into(),
            files: files.clone(),
            remove: false
        }
    );
    let a = parse_copy("qvm-move-to-vm", &words("--without-progress work a b/c")).unwrap();
    assert_eq!(
        a,
        CopyArgs {
            target: "work".into(),
            files,
            remove: true
        }
    );
    assert!(parse_copy("qvm-move", &words("x")).unwrap().remove);
    assert!(!parse_copy("qvm-copy-to-vm", &words("w x")).unwrap().remove);
    assert_eq!(parse_copy("qvm-copy", &words("--help")), Err(Usage::Help));
    assert!(refused(parse_copy("qvm-copy", &words(""))).contains("no FILE"));
    assert!(refused(parse_copy("qvm-copy-to-vm", &words("work"))).contains("no FILE"));
    assert!(refused(parse_copy("qvm-copy-to-vm", &words(""))).contains("no VMNAME"));
    assert!(refused(parse_copy("qvm-copy-to-vm", &words("@dispvm f"))).contains("not a qube"));
    assert!(refused(parse_copy("qvm-copy", &words("-r f"))).contains("unknown option"));
    // A file named like an option after `--`.
    assert_eq!(
        parse_copy("qvm-copy", &words("-- -f")).unwrap().files,
        [PathBuf::from("-f")]
    );
}

#[test]
fn qvm_open_in_dvm() {
    let a = parse_open(&words("report.pdf")).unwrap();
    assert_eq!(
        a,
        OpenArgs {
            command: "cat".into(),
            file: "report.pdf".into()
        }
    );
    let args = vec!["--command".into(), "wc -l".into(), "f".into()];
    assert_eq!(parse_open(&args).unwrap().command, "wc -l");
    assert_eq!(
        parse_open(&words("--command=less f")).unwrap().command,
        "less"
    );
    assert_eq!(
        parse_open(&words("-- --command")).unwrap().file,
        PathBuf::from("--command")
    );
    assert_eq!(parse_open(&words("-h")), Err(Usage::Help));
    assert!(refused(parse_open(&words(""))).contains("no FILE"));
    assert!(refused(parse_open(&words("a b"))).contains("one FILE"));
    assert!(refused(parse_open(&words("--command"))).contains("needs a value"));
    assert!(refused(parse_open(&words("--command= f"))).contains("1 to"));
    let long = vec![format!("--command={}", "x".repeat(5000)), "f".into()];
    assert!(refused(parse_open(&long)).contains("1 to"));
}

#[test]
fn the_admin_commands() {
    assert_eq!(parse_admin("qvm-ls", &[]).unwrap(), Vec::<String>::new());
    assert_eq!(
        parse_admin("qvm-start", &words("work disp")).unwrap(),
        ["work", "disp"]
    );
    assert_eq!(parse_admin("qvm-kill", &words("-h")), Err(Usage::Help));
    assert!(refused(parse_admin("qvm-shutdown", &[])).contains("no VMNAME"));
    assert!(refused(parse_admin("qvm-start", &words("a+b"))).contains("not a qube"));
    assert!(refused(parse_admin("qvm-ls", &words("--all"))).contains("unknown option"));
    let services: Vec<&str> = ["qvm-ls", "qvm-start", "qvm-shutdown", "qvm-kill"]
        .into_iter()
        .map(admin_service)
        .collect();
    assert_eq!(
        services,
        [
            "admin.vm.List",
            "admin.vm.Start",
            "admin.vm.Shutdown",
            "admin.vm.Kill"
        ]
    );
    assert!(admin_help("qvm-kill").starts_with("usage: qvm-kill VMNAME..."));
}

/// Every command answers `--help` on stdout with status 0, and a bad line with its usage
/// on stderr and status 2, without reaching for the daemon.
#[test]
fn help_and_usage_for_every_command() {
    for name in NAMES {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut ctx = Context {
            socket: PathBuf::from("/nonexistent/qrexec.sock"),
            has_channel: false,
            stdin: Box::new(std::io::empty()),
            stdout: &mut out,
            stderr: &mut err,
            tty: [false; 2],
        };
        assert_eq!(
            run_named(name, &words("--help"), &mut ctx),
            Some(0),
            "{name}"
        );
        assert_eq!(
            run_named(name, &words("--bogus"), &mut ctx),
            Some(EXIT_USAGE),
            "{name}"
        );
        let (out, err) = (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        );
        assert!(out.starts_with("usage: "), "{name}: {out}");
        assert!(
            err.contains("unknown option --bogus\nusage: "),
            "{name}: {err}"
        );
    }
    // No daemon: said so, with why when the qube has no channel.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut ctx = Context {
        socket: PathBuf::from("/nonexistent/qrexec.sock"),
        has_channel: false,
        stdin: Box::new(std::io::empty()),
        stdout: &mut out,
        stderr: &mut err,
        tty: [false; 2],
    };
    assert_eq!(run_named("qvm-ls", &[], &mut ctx), Some(EXIT_FAILED));
    assert_eq!(run_named("qvm-nothing", &[], &mut ctx), None);
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.contains("cannot reach the qrexec daemon") && err.contains("no bulkhead.qrexec="),
        "{err}"
    );
}
