//! The initramfs: busybox and its applet links, `/init`, the kernel modules the AppVM needs
//! (dependencies resolved, loaded in order) and the agent. Deterministic: the same inputs
//! give the same bytes.

use super::cpio::{Archive, Node};
use super::kernel::Kernel;
use super::{INIT_OK, debian, modules, volumes};
use crate::progress::human_bytes;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

/// The busybox applets linked into `/bin` (what `/init` and a person at the shell use).
pub const APPLETS: &[&str] = &[
    "cat",
    "cttyhack",
    "dmesg",
    "echo",
    "grep",
    "hostname",
    "insmod",
    "ip",
    "ls",
    "lsmod",
    "mkdir",
    "mknod",
    "modprobe",
    "mount",
    "poweroff",
    "ps",
    "reboot",
    "setsid",
    "sh",
    "sleep",
    "uname",
    "nc",
    "wget",
    "nslookup",
    "test",
    "[",
    "rm",
    "sync",
    "true",
    "false",
    "head",
    "wc",
    // For the terminal window's shell.
    "clear",
    "cp",
    "date",
    "env",
    "free",
    "id",
    "less",
    "mv",
    "pwd",
    "sed",
    "stty",
    "tail",
    "top",
    "touch",
    "vi",
    "printf",
    // For files between qubes (and the `qrexec` self-test that checks them).
    "dd",
    "sha256sum",
    "cmp",
    "cut",
    "find",
    "xargs",
    "sort",
    "diff",
    // For the `panic-on:N` self-test (`cargo xtask test appvm-smp`).
    "taskset",
    // For /home on the private volume: the superblock's magic, a file system on first use,
    // and the unmount before a self-test powers off.
    "od",
    "mke2fs",
    "umount",
    "df",
    // For the template's root: entering it, and the `template` self-test.
    "chroot",
    "readlink",
    "yes",
    "pidof",
    "du",
];

/// Links to `/bin/agent` in `/bin`: the agent is each of these commands when called by its
/// name (`dispvm`, and the qrexec commands of `linux-appvm/agent/src/commands/mod.rs`).
pub const AGENT_LINKS: &[&str] = &[
    "dispvm",
    "qvm-copy",
    "qvm-copy-to-vm",
    "qvm-kill",
    "qvm-ls",
    "qvm-move",
    "qvm-move-to-vm",
    "qvm-open-in-dvm",
    "qvm-run",
    "qvm-shutdown",
    "qvm-start",
];

/// `/bin/appvm-selftest`: the AppVM's side of the `cargo xtask test` scenarios, run in the
/// background by `/init` when the command line says `appvm.selftest=<steps>`, one step or
/// several separated by commas (`xstate:2,busy`). It waits for the agent, runs the steps in
/// order, each doing what the scenario checks from outside and reporting on the console, and
/// powers the AppVM off when they are done. Steps: `network`; `panic` (its kernel, for the
/// containment test); `panic-on:N`, the same from CPU N (`taskset`; the triple fault then
/// happens on the AppVM's vCPU N, `cargo xtask test appvm-smp`); `busy`, which never returns (spinning in user mode, so the hypervisor
/// preempts it there with the kernel's per-CPU pointer in KERNEL_GS_BASE, and starting
/// programs, whose page faults need the guest's own CR2); `xstate[:SECONDS[:EXIT_MS]]`
/// (default 5 s, no exits), the agent's `xstate-probe`: YMM registers and PKRU must survive
/// the hypervisor's preemptions; `cpus`, the agent's `cpu-probe` (`cargo xtask test
/// appvm-smp`): a thread pinned to each of the AppVM's CPUs must run there, and two of them
/// pass a counter back and forth, waking each other by IPI; `sleep:SECONDS`; `uplink`, which gives QEMU's own card
/// (`eth0`, in an initramfs with virtio-net) the address QEMU's user network expects, for
/// the baseline of `cargo xtask bench --network`; `netbench:PORT:MIB`, the agent's `netbench`
/// against the benchmark server on the host (10.0.2.2); `blockbench:DEV:MIB:COUNT`, the
/// agent's `blockbench` on `/dev/DEV` for `cargo xtask bench --storage` (`nbd0`, the private
/// volume, needs `appvm.nohome` so that nothing mounts it); `bulk:SPEC`, the agent's `bulk-test`
/// (a channel's bulk area against the testing qube, `cargo xtask test appvm-bulk`);
/// `dispvm`, commands run in a disposable with the agent's `dispvm` (`cargo xtask test
/// appvm-dispvm`): one whose output holds an escape sequence, a second request made while
/// another waits (refused), and that other one, served by the disposable started again;
/// `home-persist`, a file on the private volume mounted at `/home` (`cargo xtask test
/// appvm-home`): it prints what an earlier boot left in `/home/persist.txt` and writes
/// `boot N` there, N one more than before; `block-hostile`, the agent's `block-hostile` on
/// each block channel the command line names (`bulkhead.home=`, `bulkhead.root=`; `cargo
/// xtask test appvm-block-hostile`): requests outside the volume, absurd lengths, bad pool
/// offsets, writes to the read-only root, garbage and a flood, each of which the storage
/// qube must refuse (the agent serves neither volume under this step). Before it powers
/// off, the script unmounts a mounted `/home` and flushes `/dev/nbd0` (`sync` on the
/// device: an NBD FLUSH, which the agent turns into the storage qube's `Flush`).
pub const SELFTEST_SCRIPT: &str = r#"#!/bin/sh
export PATH=/bin
for w in $(cat /proc/cmdline); do
    case "$w" in appvm.selftest=*) t="${w#appvm.selftest=}" ;; esac
done
i=0
while [ ! -e /run/agent.ready ] && [ "$i" -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
echo "selftest: $t"
# One step after another (the body is not indented so that the steps stay where they were).
rest="$t,"
while [ -n "$rest" ]; do
step="${rest%%,*}"
rest="${rest#*,}"
case "$step" in
network)
    echo "selftest: dns $(nslookup bulkhead-test.internal 2>&1 | grep -c 10.0.2.2) answers"
    reply="$(echo hello-from-appvm | nc -w 10 10.0.2.2 5555 | head -n 1)"
    echo "selftest: echo reply: $reply"
    if echo x | nc -w 5 10.0.2.2 5556 >/dev/null 2>&1; then
        echo "selftest: denied port REACHED"
    else
        echo "selftest: denied port blocked"
    fi
    echo "selftest: done"
    ;;
panic)
    echo "selftest: panicking the kernel"
    echo c > /proc/sysrq-trigger
    ;;
panic-on:*)
    n="${step#panic-on:}"
    echo "selftest: panicking the kernel on cpu $n"
    taskset -c "$n" sh -c 'echo c > /proc/sysrq-trigger'
    ;;
busy)
    # A user-mode spin beside a loop of short-lived programs (page faults at every start).
    echo "selftest: spinning in user mode"
    while :; do :; done &
    i=0
    while :; do
        /bin/true || echo "selftest: a program failed"
        i=$((i + 1))
        [ $((i % 20)) = 0 ] && echo "selftest: busy $i"
    done
    ;;
sleep:*)
    sleep "${step#sleep:}"
    ;;
uplink)
    { ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up &&
        ip route add default via 10.0.2.2; } || echo "selftest: no uplink on eth0"
    ;;
netbench:*)
    a="${step#netbench:}"
    /bin/agent netbench "10.0.2.2:${a%%:*}" "${a#*:}" || echo "selftest: netbench failed ($?)"
    ;;
blockbench:*)
    # `cargo xtask bench --storage`: the agent's `blockbench` on a raw disk, DEV:MIB:COUNT.
    # /dev/nbd0 (the private volume) once the agent serves it and /init has left it
    # unmounted (`appvm.nohome`); another device (the baseline's vda) once it exists.
    a="${step#blockbench:}"
    d="/dev/${a%%:*}"
    a="${a#*:}"
    i=0
    while [ "$i" -lt 600 ]; do
        if [ "$d" = /dev/nbd0 ]; then
            [ -e /run/home.mounted ] || [ -e /run/home.failed ] && break
        elif [ -b "$d" ]; then
            break
        fi
        sleep 0.1; i=$((i + 1))
    done
    /bin/agent blockbench "$d" "${a%%:*}" "${a#*:}" || echo "selftest: blockbench failed ($?)"
    ;;
bulk:*)
    /bin/agent bulk-test "${step#bulk:}" || echo "selftest: bulk-test ${step#bulk:} failed ($?)"
    ;;
dispvm)
    # Each line of what dispvm printed, and its status, on the console with a prefix.
    { dispvm 'echo hello-from-disp; grep -o "bulkhead.name=[a-z]*" /proc/cmdline; printf "\033[31mred\033[0m\n"'
        echo "status $?"; } 2>&1 | sed 's/^/selftest: dispvm 1: /'
    { dispvm 'sleep 2; echo second; exit 7'; echo "status $?"; } > /tmp/dispvm2 2>&1 &
    # Long enough for it to hold the request channel on a loaded machine; it keeps it for
    # the disposable's boot and its 2 s.
    sleep 3
    { dispvm 'echo third'; echo "status $?"; } 2>&1 | sed 's/^/selftest: dispvm busy: /'
    wait
    sed 's/^/selftest: dispvm 2: /' /tmp/dispvm2
    ;;
dispvm-template)
    # Two disposables in turn, each on the template's root (cargo xtask test appvm-home):
    # each must find /usr as the template has it, whatever the one before wrote there.
    for n in 1 2; do
        { dispvm 'echo "on $(cat /etc/bulkhead-template)"; if [ -e /usr/local/bulkhead-scratch ]; then echo "KEPT $(cat /usr/local/bulkhead-scratch)"; else echo clean; fi; echo "disposable $(cat /proc/sys/kernel/random/boot_id)" > /usr/local/bulkhead-scratch && echo wrote'
            echo "status $?"; } 2>&1 | sed "s/^/selftest: dispvm-template $n: /"
    done
    ;;
ready-time)
    echo "selftest: ready-time: agent ready at uptime $(cut -d' ' -f1 /proc/uptime) s"
    ;;
qrexec)
    # Services through the admin qube, as a user would call them (`cargo xtask test
    # appvm-qrexec`). Times are /proc/uptime's (centiseconds).
    q() { echo "selftest: qrexec: $*"; }
    t() { cut -d' ' -f1 /proc/uptime; }
    # personal may still be starting: the admin qube holds the first call until it is up.
    qvm-run -p personal 'grep -o "bulkhead.name=[a-z]*" /proc/cmdline; exit 3' > /tmp/o 2>&1
    st=$?; sed 's/^/selftest: qrexec: run: /' /tmp/o; q "run status $st"
    qvm-run -p evil true > /tmp/o 2>&1
    st=$?; sed 's/^/selftest: qrexec: denied: /' /tmp/o; q "denied status $st"
    mkdir -p /tmp/tree/sub/deeper
    dd if=/dev/urandom of=/tmp/tree/big bs=1024 count=3072 2>/dev/null
    dd if=/dev/urandom of=/tmp/tree/sub/mid bs=1024 count=1536 2>/dev/null
    echo small > /tmp/tree/sub/deeper/small
    : > /tmp/tree/empty
    (cd /tmp && find tree -type f | sort | xargs sha256sum) > /tmp/sums
    a=$(t); qvm-copy-to-vm personal /tmp/tree > /tmp/o 2>&1; st=$?; b=$(t)
    sed 's/^/selftest: qrexec: copy: /' /tmp/o; q "copy status $st from $a to $b"
    a=$(t); cat /tmp/tree/big /tmp/tree/sub/mid /tmp/tree/sub/deeper/small > /dev/null; b=$(t)
    q "local read from $a to $b"
    qvm-run -p personal 'cd /root/QubesIncoming/work && find tree -type f | sort | xargs sha256sum' > /tmp/remote
    if cmp -s /tmp/sums /tmp/remote; then
        q "copy identical, $(wc -l < /tmp/sums) files"
    else
        q "copy DIFFERS"; diff /tmp/sums /tmp/remote | head -n 5 | sed 's/^/selftest: qrexec: diff: /'
    fi
    echo move-me > /tmp/moved
    qvm-move-to-vm personal /tmp/moved > /tmp/o 2>&1; st=$?
    if [ -e /tmp/moved ]; then q "move kept the source, status $st"; else q "move removed the source, status $st"; fi
    q "moved: $(qvm-run -p personal 'cat /root/QubesIncoming/work/moved')"
    printf 'open me please\n' > /tmp/doc.txt
    out="$(qvm-open-in-dvm --command 'wc -c' /tmp/doc.txt 2>&1)"; st=$?
    q "open status $st: $out"
    a=$(t); out="$(qvm-run --dispvm -p 'echo dispvm-echo' 2>&1)"; st=$?; b=$(t)
    q "dispvm $out status $st from $a to $b"
    qvm-ls 2>&1 | sed 's/^/selftest: qrexec: ls: /'
    # A hostile sender (the unikernel evil) copies into personal meanwhile; once its honest
    # last copy is there, nothing may have landed outside personal's folder for it.
    i=0
    while [ "$i" -lt 180 ] && ! qvm-run -p personal 'test -e /root/QubesIncoming/evil/honest.txt'; do
        sleep 1; i=$((i + 1))
    done
    qvm-run -p personal 'find / -xdev -name "escaped*"; ls -A /root/QubesIncoming/evil' 2>&1 |
        sed 's/^/selftest: qrexec: hostile: /'
    q "done"
    ;;
dispvm-bench)
    # `cargo xtask bench --qemu`: one `qvm-run --dispvm`, marked for the counting plugin.
    out="$(BULKHEAD_MARKS=1 qvm-run --dispvm -p 'echo dispvm-echo' 2>&1)"
    echo "selftest: dispvm-bench: $out status $?"
    ;;
xstate | xstate:*)
    s="${step#xstate}"
    s="${s#:}"
    case "$s" in *:*) e="${s#*:}" s="${s%%:*}" ;; *) e="" ;; esac
    /bin/agent xstate-probe "${s:-5}" $e || echo "selftest: xstate: the probe failed ($?)"
    ;;
cpus)
    /bin/agent cpu-probe || echo "selftest: cpus: the probe failed ($?)"
    ;;
block-hostile)
    # This qube as a hostile client of the storage qube on its own block channels (cargo
    # xtask test appvm-block-hostile); the agent serves neither volume under this step.
    n=0
    for w in $(cat /proc/cmdline); do
        case "$w" in
        bulkhead.home=* | bulkhead.root=*)
            c="${w#*=}"
            n=$((n + 1))
            /bin/agent block-hostile "$c" || echo "selftest: block-hostile: $c: failed ($?)"
            ;;
        esac
    done
    [ "$n" -gt 0 ] || echo "selftest: block-hostile: no block channel on the command line"
    ;;
home-persist)
    i=0
    while [ ! -e /run/home.mounted ] && [ ! -e /run/home.failed ] && [ "$i" -lt 600 ]; do
        sleep 0.1; i=$((i + 1))
    done
    # Under the template's root the volume is at /sysroot/home (the agent's /home).
    h=/home
    grep -q " /sysroot/home " /proc/mounts && h=/sysroot/home
    if [ -e /run/home.mounted ]; then
        n=1
        if [ -e $h/persist.txt ]; then
            c="$(cat $h/persist.txt)"
            echo "selftest: home: found \"$c\""
            case "${c#boot }" in '' | *[!0-9]*) ;; *) n=$((${c#boot } + 1)) ;; esac
        fi
        echo "boot $n" > $h/persist.txt
        sync
        echo "selftest: home: wrote boot $n"
        df -k $h | tail -n 1 | sed 's/^/selftest: home: df: /'
    else
        echo "selftest: home: no /home volume"
    fi
    ;;
home-journal)
    # Records in /home that must survive QEMU killed in the middle of writes (cargo xtask
    # test appvm-home-crash): those of the boots before are checked first, then more are
    # written, each synced with its folder before `acked N` is said, beside a bulk writer.
    i=0
    while [ ! -e /run/home.mounted ] && [ ! -e /run/home.failed ] && [ "$i" -lt 600 ]; do
        sleep 0.1; i=$((i + 1))
    done
    h=/home
    grep -q " /sysroot/home " /proc/mounts && h=/sysroot/home
    if [ -e /run/home.mounted ]; then
        d=$h/journal
        mkdir -p $d
        n=0
        while [ -e $d/rec-$((n + 1)) ] &&
            yes "record $((n + 1))" | head -c 16384 | cmp -s - $d/rec-$((n + 1)); do
            n=$((n + 1))
        done
        echo "selftest: journal: found $n intact records"
        while :; do dd if=/dev/zero of=$h/bulk bs=65536 count=64 2>/dev/null; done &
        bulk=$!
        i=$((n + 1))
        while [ "$i" -le $((n + 400)) ]; do
            yes "record $i" | head -c 16384 > $d/rec-$i && sync $d/rec-$i $d &&
                echo "selftest: journal: acked $i"
            i=$((i + 1))
        done
        kill $bulk
    else
        echo "selftest: journal: no /home"
    fi
    ;;
template)
    # The template's root (cargo xtask test appvm-home): what runs there, and that a change
    # outside /home is gone at the next start.
    i=0
    while [ ! -e /run/root.mounted ] && [ ! -e /run/root.failed ] && [ "$i" -lt 600 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ -e /run/root.mounted ]; then
        r() { chroot /sysroot /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
        echo "selftest: template: $(r cat /etc/bulkhead-template) $(r cat /etc/debian_version)"
        echo "selftest: template: $(r bash -c 'echo bash $BASH_VERSION') $(r ip -V) $(r ps --version)"
        if r test -e /usr/local/bulkhead-scratch; then
            echo "selftest: template: /usr change KEPT: $(r cat /usr/local/bulkhead-scratch)"
        else
            echo "selftest: template: /usr clean"
        fi
        r sh -c 'echo "written by $(cat /proc/sys/kernel/random/boot_id)" > /usr/local/bulkhead-scratch' &&
            echo "selftest: template: wrote /usr/local/bulkhead-scratch"
        echo "selftest: template: agent root $(readlink /proc/$(pidof agent | cut -d' ' -f1)/root)"
        echo "selftest: template: upper layer $(du -sk /run/root/mem/upper | cut -f1) KiB, $(grep ' /sysroot ' /proc/mounts | cut -d' ' -f3)"
    else
        echo "selftest: template: no root ($(cat /run/root.failed))"
    fi
    ;;
*)
    echo "selftest: unknown test $step"
    ;;
esac
done
sync
# /home's data reaches the storage qube before the power goes: unmount, then an NBD FLUSH.
h=/home
grep -q " /sysroot/home " /proc/mounts && h=/sysroot/home
if grep -q " $h " /proc/mounts; then
    if umount $h && sync /dev/nbd0; then
        echo "selftest: home: unmounted and flushed"
    else
        echo "selftest: home: unmounting or flushing /home failed"
    fi
fi
poweroff -f
"#;

/// The built image.
#[derive(Debug)]
pub struct Built {
    pub gz: Vec<u8>,
    pub cpio_len: usize,
    /// What is in it, for people.
    pub summary: String,
}

/// `/bin/busybox` from Debian's busybox-static package (downloaded into the cache).
pub fn busybox(cache: &Path) -> Result<Vec<u8>> {
    let deb = debian::download(cache, debian::BUSYBOX)?;
    let root = debian::extract(&deb, cache)?;
    let path = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .with_context(|| format!("no bin/busybox in {}", deb.display()))?;
    let bytes = std::fs::read(&path)?;
    if !is_static_elf(&bytes) {
        bail!("{} is not a static ELF", path.display());
    }
    Ok(bytes)
}

/// Whether `bytes` is a 64-bit little-endian ELF with no program interpreter (PT_INTERP),
/// that is one the kernel runs without a dynamic loader.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        match bytes.get(at..at + 4) {
            Some(t) => u32::from_le_bytes(t.try_into().unwrap_or([0; 4])) != 3,
            None => false,
        }
    })
}

/// The agent's build command (pure, for the README and the error message).
pub fn agent_cargo_args(target_dir: &Path) -> Vec<String> {
    [
        "build",
        "--release",
        "-p",
        "bulkhead-agent",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--target-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([target_dir.display().to_string()])
    .collect()
}

/// Builds `linux-appvm/agent` as a static binary and returns it.
pub fn build_agent() -> Result<Vec<u8>> {
    // Its own target directory: the RUSTFLAGS differ from every other build's.
    let target_dir = super::default_out().join("agent-build");
    let args = agent_cargo_args(&target_dir);
    println!(
        "      $ RUSTFLAGS=\"-C target-feature=+crt-static\" cargo {}",
        args.join(" ")
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(crate::workspace_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the agent failed ({status}); `--no-agent` leaves it out");
    }
    let bin = target_dir.join("x86_64-unknown-linux-gnu/release/bulkhead-agent");
    let bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    if !is_static_elf(&bytes) {
        bail!("{} has a program interpreter: not static", bin.display());
    }
    Ok(bytes)
}

/// `/init`: mounts what is not mounted yet (proc, sysfs, devtmpfs, devpts), loads `modules`
/// (paths under `/lib/modules/<release>/`) in order, makes sure `/dev/net/tun` exists and
/// `lo` is up, reports, then runs the agent (which needs sysfs for the channel devices,
/// `uio_pci_generic`, `tun` and busybox `ip`), and keeps a shell on the console whatever
/// happens.
///
/// With `bulkhead.home=` on the command line (a private volume) it also loads `nbd` (only
/// then, with one device) and, beside the agent, waits for the agent to serve the volume
/// as `/dev/nbd0` ([`HOME_MOUNT`]), makes an ext2 file system on it if it holds none yet
/// (told by the superblock's magic 0xEF53 at byte 1080, never by a failed mount) and mounts
/// it at `/home` (the kernel's ext4 driver): `appvm: /home on the private volume (N MiB,
/// created|found)`, then `/run/home.mounted` (or `/run/home.failed`).
pub fn init_script(release: Option<&str>, modules: &[String], root_only: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Generated by `cargo xtask appvm`.\n\
         export PATH=/bin\n\
         mnt() { grep -q \" $2 \" /proc/mounts 2>/dev/null || mount -t \"$1\" \"$1\" \"$2\"; }\n\
         mnt proc /proc\n\
         mnt sysfs /sys\n\
         mnt devtmpfs /dev\n\
         mkdir -p /dev/pts /dev/net /run /tmp\n\
         mnt devpts /dev/pts\n",
    );
    s.push_str(
        "home=\n\
         root=\n\
         for w in $(cat /proc/cmdline); do case \"$w\" in bulkhead.home=*) home=\"${w#bulkhead.home=}\" ;; bulkhead.root=*) root=\"${w#bulkhead.root=}\" ;; esac; done\n",
    );
    s.push_str(volumes::HOME_MOUNT);
    s.push_str(volumes::ROOT_MOUNT);
    if let Some(release) = release {
        for m in modules {
            let name = modules::module_name(m);
            let path = format!("/lib/modules/{release}/{m}");
            let failed = format!("echo \"appvm: insmod {name} failed\"");
            let _ = if name == modules::HOME_MODULE {
                // nbd0 the private volume, nbd1 the template's root.
                writeln!(
                    s,
                    "[ -z \"$home$root\" ] || insmod {path} nbds_max=2 || {failed}"
                )
            } else if root_only.contains(m) {
                writeln!(s, "[ -z \"$root\" ] || insmod {path} || {failed}")
            } else {
                writeln!(s, "insmod {path} || {failed}")
            };
        }
    }
    let _ = write!(
        s,
        "[ -e /dev/net/tun ] || mknod /dev/net/tun c 10 200\n\
         ip link set lo up\n\
         echo \"{INIT_OK}\"\n\
         echo \"appvm: kernel $(uname -r), $(grep -c . /proc/modules) modules loaded\"\n\
         if [ -n \"$root\" ]; then\n\
         \x20   {{ if root_mount; then h=/sysroot/home; else h=/home; fi; [ -z \"$home\" ] || home_mount \"$h\"; }} &\n\
         elif [ -n \"$home\" ]; then\n\
         \x20   home_mount /home &\n\
         fi\n\
         case \" $(cat /proc/cmdline) \" in *\" appvm.selftest=\"*) /bin/appvm-selftest & ;; esac\n\
         if [ -x /bin/agent ]; then\n\
         \x20   /bin/agent\n\
         \x20   echo \"appvm: agent exited with status $?\"\n\
         fi\n\
         while true; do\n\
         \x20   setsid cttyhack sh\n\
         \x20   sleep 1\n\
         done\n"
    );
    s
}

/// Builds the archive and compresses it; `extra_modules` are loaded after [`modules::WANTED`].
pub fn build(
    kernel: &Kernel,
    busybox: &[u8],
    agent: Option<&[u8]>,
    extra_modules: &[&str],
) -> Result<Built> {
    let mut a = Archive::new();
    for dir in ["dev", "etc", "proc", "sys", "run", "tmp", "root"] {
        a.dir(dir);
    }
    a.add("dev/console", Node::CharDev { major: 5, minor: 1 });
    a.add("dev/null", Node::CharDev { major: 1, minor: 3 });
    a.file("bin/busybox", busybox.to_vec(), true);
    for applet in APPLETS {
        a.symlink(&format!("bin/{applet}"), "busybox");
    }
    a.file("etc/hostname", b"appvm\n".to_vec(), false);
    a.file(
        "bin/appvm-selftest",
        SELFTEST_SCRIPT.as_bytes().to_vec(),
        true,
    );

    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "      busybox        {}",
        human_bytes(busybox.len() as u64)
    );
    let _ = writeln!(summary, "      applets        {}", APPLETS.join(" "));

    let mut load = Vec::new();
    let mut root_only: Vec<String> = Vec::new();
    let release = kernel.modules.as_ref().map(|(r, _)| r.as_str());
    if let Some((release, dir)) = &kernel.modules {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("reading {}", dir.join(name).display()))
        };
        let base: Vec<&str> = modules::WANTED
            .iter()
            .chain(extra_modules)
            .copied()
            .collect();
        let wanted: Vec<&str> = base.iter().chain(modules::ROOT_MODULES).copied().collect();
        let deps = modules::dep_table(dir, &wanted)?;
        let builtin = modules::parse_builtin(&read("modules.builtin").unwrap_or_default());
        let r = modules::resolve(&deps, &builtin, &wanted);
        // What only a template root needs: loaded only with `bulkhead.root=`.
        let always = modules::resolve(&deps, &builtin, &base).load_order;
        root_only = r
            .load_order
            .iter()
            .filter(|m| !always.contains(m))
            .cloned()
            .collect();
        let mut bytes = 0;
        for path in &r.load_order {
            let data =
                std::fs::read(dir.join(path)).with_context(|| format!("reading module {path}"))?;
            bytes += data.len();
            a.file(&format!("lib/modules/{release}/{path}"), data, false);
        }
        a.file(
            &format!("lib/modules/{release}/modules.dep"),
            modules::dep_subset(&deps, &r.load_order).into_bytes(),
            false,
        );
        let names: Vec<String> = r
            .load_order
            .iter()
            .map(|p| modules::module_name(p))
            .collect();
        let _ = writeln!(
            summary,
            "      modules        {} ({}) from {} in the dependency table, load order: {}",
            names.len(),
            human_bytes(bytes as u64),
            deps.len(),
            names.join(" ")
        );
        if !r.builtin.is_empty() {
            let _ = writeln!(summary, "      built in       {}", r.builtin.join(" "));
        }
        if !r.absent.is_empty() {
            let _ = writeln!(summary, "      not in kernel  {}", r.absent.join(" "));
        }
        load = r.load_order;
    } else {
        let _ = writeln!(
            summary,
            "      modules        none (a bare bzImage was given)"
        );
    }
    match agent {
        Some(agent) => {
            a.file("bin/agent", agent.to_vec(), true);
            // `dispvm COMMAND`, `qvm-run ...` at the shell: the agent, by the name it is called.
            for name in AGENT_LINKS {
                a.symlink(&format!("bin/{name}"), "agent");
            }
            let _ = writeln!(
                summary,
                "      agent          {}",
                human_bytes(agent.len() as u64)
            );
        }
        None => {
            let _ = writeln!(
                summary,
                "      agent          none: /init keeps a shell instead"
            );
        }
    }
    a.file(
        "init",
        init_script(release, &load, &root_only).into_bytes(),
        true,
    );
    let _ = writeln!(summary, "      entries        {}", a.entries().count());

    let cpio = a.to_bytes();
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&cpio)?;
    Ok(Built {
        cpio_len: cpio.len(),
        gz: gz.finish()?,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_loads_modules_in_order_then_reports() {
        let s = init_script(
            Some("6.1.0-1-cloud-amd64"),
            &[
                "kernel/net/core/failover.ko".into(),
                "kernel/drivers/net/virtio_net.ko".into(),
            ],
            &[],
        );
        let failover = s
            .find("insmod /lib/modules/6.1.0-1-cloud-amd64/kernel/net/core/failover.ko")
            .unwrap();
        let net = s.find("kernel/drivers/net/virtio_net.ko").unwrap();
        let ok = s.find(INIT_OK).unwrap();
        let agent = s.find("/bin/agent\n").unwrap();
        assert!(failover < net && net < ok && ok < agent);
        assert!(s.starts_with("#!/bin/sh\n"));
        let sysfs = s.find("mnt sysfs /sys").unwrap();
        let tun = s.find("mknod /dev/net/tun c 10 200").unwrap();
        assert!(sysfs < failover && net < tun && tun < ok);
        assert!(s.ends_with("done\n"));
        assert!(!init_script(None, &[], &[]).contains("insmod"));
    }

    #[test]
    fn nbd_and_home_only_with_a_private_volume() {
        let s = init_script(
            Some("6.1"),
            &[
                "kernel/drivers/uio/uio.ko".into(),
                "kernel/drivers/block/nbd.ko".into(),
                "kernel/drivers/md/dm-mod.ko".into(),
            ],
            &["kernel/drivers/md/dm-mod.ko".into()],
        );
        assert!(s.contains("\ninsmod /lib/modules/6.1/kernel/drivers/uio/uio.ko || "));
        assert!(s.contains(
            "\n[ -z \"$home$root\" ] || insmod /lib/modules/6.1/kernel/drivers/block/nbd.ko nbds_max=2 || "
        ));
        assert!(s.contains(
            "\n[ -z \"$root\" ] || insmod /lib/modules/6.1/kernel/drivers/md/dm-mod.ko || "
        ));
        let mount = s.find("    home_mount /home &").unwrap();
        let root = s
            .find("if root_mount; then h=/sysroot/home; else h=/home; fi")
            .unwrap();
        assert!(s.find("home=\n").unwrap() < s.find("nbd.ko").unwrap());
        assert!(root < mount && mount < s.find("/bin/agent\n").unwrap());
        // The magic, never a failed mount, says whether the volume holds a file system.
        let home = volumes::HOME_MOUNT;
        assert!(home.contains("skip=135 count=1") && home.contains("\"53ef\""));
        // The root: only the verified device, read-only, under an in-memory upper layer.
        let root = volumes::ROOT_MOUNT;
        assert!(root.contains("mount -t squashfs -o ro \"$dev\" /run/root/lower"));
        assert!(root.contains("mount -t tmpfs"));
        assert!(root.contains("upperdir=/run/root/mem/upper"));
        assert!(
            APPLETS.contains(&"mke2fs") && APPLETS.contains(&"od") && APPLETS.contains(&"umount")
        );
        assert!(SELFTEST_SCRIPT.contains("umount $h && sync /dev/nbd0"));
        sh_n(&s);
    }

    /// `sh -n`: the whole script parses (skipped without a shell).
    fn sh_n(script: &str) {
        use std::process::Stdio;
        let Ok(mut sh) = Command::new("sh")
            .arg("-n")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            return;
        };
        if let Some(mut stdin) = sh.stdin.take() {
            stdin.write_all(script.as_bytes()).unwrap();
        }
        let out = sh.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn static_elf_check() {
        let mut elf = vec![0u8; 0x100];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf[0x78..0x7c].copy_from_slice(&6u32.to_le_bytes()); // PT_PHDR
        assert!(is_static_elf(&elf));
        elf[0x78..0x7c].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn selftest_script_is_valid_shell() {
        sh_n(SELFTEST_SCRIPT);
        assert!(SELFTEST_SCRIPT.contains("/bin/agent xstate-probe"));
        assert!(SELFTEST_SCRIPT.contains("cpus)\n    /bin/agent cpu-probe ||"));
        assert!(SELFTEST_SCRIPT.contains("/bin/agent block-hostile \"$c\" ||"));
        assert!(SELFTEST_SCRIPT.contains("/bin/agent netbench"));
        assert!(SELFTEST_SCRIPT.contains("/bin/agent blockbench \"$d\""));
        assert!(volumes::HOME_MOUNT.contains("*\" appvm.nohome \"*)"));
        assert!(SELFTEST_SCRIPT.contains("{ dispvm '"));
        // `panic-on:N` needs its applet.
        assert!(SELFTEST_SCRIPT.contains("taskset -c \"$n\" sh -c"));
        assert!(APPLETS.contains(&"taskset"));
    }

    #[test]
    fn every_agent_command_has_its_link() {
        let path = crate::workspace_root().join("linux-appvm/agent/src/commands/mod.rs");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("pub const NAMES").unwrap();
        let block = &text[start..start + text[start..].find("];").unwrap()];
        let names: Vec<&str> = block.split('"').skip(1).step_by(2).collect();
        assert!(names.contains(&"qvm-run"), "{names:?}");
        let mut links: Vec<&str> = AGENT_LINKS
            .iter()
            .copied()
            .filter(|n| *n != "dispvm")
            .collect();
        links.sort();
        assert_eq!(links, names);
    }

    #[test]
    fn agent_is_built_for_linux_gnu() {
        let args = agent_cargo_args(Path::new("/t"));
        assert_eq!(
            args.join(" "),
            "build --release -p bulkhead-agent --target x86_64-unknown-linux-gnu --target-dir /t"
        );
    }
}
