//! Two agents' daemons (`work`, the source, and `personal`, the target) and a simulated
//! admin qube relaying between them over tiny rings (two slots each way); the commands
//! run for real against `work`'s socket, the services for real in `personal` (`/bin/sh`,
//! the file copy receiver in a temporary home).

use super::client::{self, Opened, Output};
use super::flow::ACK_EVERY;
use super::sim_world::World;
use bulkhead_abi::qrexec::WINDOW;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn qvm_run_passes_output_and_the_exit_code() {
    let mut w = World::new(false);
    let cmd = "echo hello; echo oops >&2; echo $QREXEC_REMOTE_DOMAIN; exit 3";
    let (status, out, err) = w.command(&["qvm-run", "-p", "personal", cmd], b"");
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (3, "hello\nwork\n", "oops\n")
    );
    // Without -p: it says so, the output is dropped, the status counts.
    let (status, out, err) = w.command(&["qvm-run", "personal", "echo gone; exit 4"], b"");
    assert_eq!((status, out.as_str()), (4, ""));
    assert_eq!(err, "Running 'echo gone; exit 4' on personal\n");
    // Killed by a signal: minus the signal, 128 + it as a status.
    let (status, _, _) = w.command(&["qvm-run", "-p", "personal", "kill -9 $$"], b"");
    assert_eq!(status, 137);
}

#[test]
fn stdin_and_stdout_stream_with_flow_control_both_ways() {
    let mut w = World::new(false);
    let input: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (status, out, _) = w.command(&["qvm-run", "-p", "personal", "cat"], &input);
    assert_eq!(status, 0);
    assert!(
        out.as_bytes() == input,
        "{} bytes of {} came back",
        out.len(),
        input.len()
    );
    // The admin qube never held more than the windows of the call allow.
    assert!(
        w.admin.max_held < 3 * WINDOW as usize + 8192,
        "{}",
        w.admin.max_held
    );
    // A command that does not read its stdin for a while: the caller stops at one window.
    let mut w = World::new(false);
    let input = vec![b'x'; 1_000_000];
    let (status, out, _) = w.command(&["qvm-run", "-p", "personal", "sleep 1; wc -c"], &input);
    assert_eq!((status, out.trim()), (0, "1000000"));
    // The target held a window of stdin (an agent sending more would have its call
    // aborted by the other), never more.
    let held = w.max_buffered[1];
    assert!(
        held > WINDOW as usize / 2 && held <= WINDOW as usize + 64,
        "{held}"
    );
}

#[test]
fn a_stalled_reader_stops_only_its_own_call() {
    let mut w = World::new(false);
    let socket = w.socket.clone();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let slow = std::thread::spawn(move || {
        let opened = client::open(&socket, "qubes.VMShell", "", "personal");
        let Ok(Opened::Accepted { mut call, .. }) = opened else {
            panic!("not accepted");
        };
        let mut stdin = call.stdin().unwrap();
        std::io::Write::write_all(&mut stdin, b"yes | head -c 2000000\n").unwrap();
        stdin.close().unwrap();
        wait.recv().unwrap();
        let mut got = 0;
        let end = call.finish(|o| {
            if let Output::Stdout(b) = o {
                got += b.len()
            }
        });
        (end, got)
    });
    // The first call's output fills its window and stops there.
    let start = Instant::now();
    w.until(|w| w.daemons[1].served_calls() == 1 && start.elapsed() > Duration::from_millis(500));
    let held = w.daemons[0].core.buffered_bytes();
    assert!(
        held >= (WINDOW - ACK_EVERY) as usize && held <= WINDOW as usize,
        "{held}"
    );
    assert!(w.max_buffered[0] <= WINDOW as usize);
    // Another call goes through meanwhile.
    let (status, out, _) = w.command(&["qvm-run", "-p", "personal", "echo second"], b"");
    assert_eq!((status, out.as_str()), (0, "second\n"));
    assert_eq!(w.daemons[1].served_calls(), 1);
    go.send(()).unwrap();
    w.until(|_| slow.is_finished());
    assert_eq!(slow.join().unwrap(), (Output::Exit(0), 2_000_000));
}

#[test]
fn a_multi_mib_copy_arrives_byte_for_byte_and_a_move_removes_the_sources() {
    let mut w = World::new(false);
    let src = w.root.join("src");
    let big: Vec<u8> = (0..(3 << 20) + 12345u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    write(&src.join("big.bin"), &big);
    write(&src.join("tree/a.txt"), b"alpha");
    write(&src.join("tree/sub/b.txt"), b"beta");
    let (big_path, tree) = (src.join("big.bin"), src.join("tree"));
    let args = [
        "qvm-copy-to-vm",
        "personal",
        big_path.to_str().unwrap(),
        tree.to_str().unwrap(),
    ];
    let (status, _, err) = w.command(&args, b"");
    assert_eq!(status, 0, "{err}");
    assert!(
        err.contains("2 folder(s)") || err.contains("3 file(s)"),
        "{err}"
    );
    let inc = w.incoming();
    assert!(std::fs::read(inc.join("big.bin")).unwrap() == big);
    assert_eq!(std::fs::read(inc.join("tree/sub/b.txt")).unwrap(), b"beta");
    assert!(big_path.exists(), "a copy keeps the sources");
    assert!(
        w.admin.max_held < 3 * WINDOW as usize + 8192,
        "{}",
        w.admin.max_held
    );
    // The same again: the receiver refuses (exists), nothing is removed by a move.
    let args = ["qvm-move-to-vm", "personal", big_path.to_str().unwrap()];
    let (status, _, err) = w.command(&args, b"");
    assert_eq!(status, 1);
    assert!(err.contains("already exists"), "{err}");
    assert!(big_path.exists());
    // A move of something new removes it once it arrived.
    write(&src.join("c.txt"), b"gamma");
    let c = src.join("c.txt");
    let (status, _, err) = w.command(&["qvm-move", c.to_str().unwrap()], b"");
    assert_eq!(status, 0, "{err}");
    assert!(!c.exists());
    assert_eq!(std::fs::read(inc.join("c.txt")).unwrap(), b"gamma");
}

#[test]
fn open_in_a_disposable_runs_the_command_then_powers_off() {
    let mut w = World::new(true);
    let file = w.root.join("src/report.txt");
    write(&file, b"one two three\n");
    let args = [
        "qvm-open-in-dvm",
        "--command",
        "wc -w <",
        file.to_str().unwrap(),
    ];
    let (status, out, err) = w.command(&args, b"");
    assert_eq!((status, out.trim()), (0, "3"), "{err}");
    assert_eq!(
        std::fs::read(w.incoming().join("report.txt")).unwrap(),
        b"one two three\n"
    );
    w.until(|w| w.power_off[1]);
    assert!(!w.power_off[0]);
}

#[test]
fn refusals_unknown_services_and_the_admin_api() {
    let mut w = World::new(false);
    w.admin.deny.push("qubes.VMShell");
    let (status, _, err) = w.command(&["qvm-run", "-p", "personal", "true"], b"");
    assert_eq!(
        (status, err.as_str()),
        (126, "Request refused: denied by the policy\n")
    );
    let socket = w.socket.clone();
    let handle = std::thread::spawn(move || {
        let Ok(Opened::Accepted { mut call, .. }) =
            client::open(&socket, "test.Nothing", "", "personal")
        else {
            panic!("not accepted");
        };
        // The call may be over already (the connection closed): no matter.
        let _ = call.stdin().unwrap().close();
        let mut err = Vec::new();
        let end = call.finish(|o| {
            if let Output::Stderr(b) = o {
                err.extend(b)
            }
        });
        (end, String::from_utf8(err).unwrap())
    });
    w.until(|_| handle.is_finished());
    let (end, err) = handle.join().unwrap();
    assert_eq!(end, Output::Exit(127));
    assert_eq!(err, "no service test.Nothing in this qube\n");
    let (status, out, _) = w.command(&["qvm-start", "personal"], b"");
    assert_eq!((status, out.as_str()), (0, "admin.vm.Start personal\n"));
    let (status, out, _) = w.command(&["qvm-ls"], b"");
    assert_eq!((status, out.as_str()), (0, "admin.vm.List \n"));
}

#[test]
fn a_reset_fails_the_open_call_and_the_next_one_works() {
    let mut w = World::new(false);
    let handle = w.spawn_command(
        &["qvm-run", "-p", "personal", "echo started; sleep 30"],
        b"",
    );
    w.until(|w| w.daemons[1].served_calls() == 1);
    // Garbage and messages for calls nobody has change nothing.
    w.admin.chans[0].try_send_bytes(&[0xff; 40]).unwrap();
    w.admin.reset(0);
    w.until(|_| handle.is_finished());
    let (status, _, err) = handle.join().unwrap();
    assert_eq!(status, 1);
    assert!(err.contains("the admin qube restarted"), "{err}");
    // The target was told: its shell is stopped.
    w.until(|w| w.daemons[1].served_calls() == 0);
    let (status, out, _) = w.command(&["qvm-run", "-p", "personal", "echo again"], b"");
    assert_eq!((status, out.as_str()), (0, "again\n"));
}
