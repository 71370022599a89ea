//! The agent of a Linux AppVM (the binary is `src/main.rs`, the event loop [`agent`]):
//! its parts, host-tested.
//!
//! - [`config`]: the `bulkhead.*` settings from the kernel command line;
//! - [`channel`]: the channels, PCI channel devices through `uio_pci_generic` ([`channel::uio`])
//!   carrying `bulkhead-ring` endpoints ([`channel::ring`]), behind [`channel::Transport`];
//! - [`net`]: the TAP interface and its configuration;
//! - [`bridge`]: frames between the TAP interface and the firewall's channel;
//! - [`gui`]: the AppVM's windows, a client of the gui qube showing [`terminal`]s;
//! - [`terminal`]: a shell on a pseudo-terminal, its output parsed and drawn into pixels;
//! - [`dispvm`]: `dispvm COMMAND`, a command run in a disposable from this qube's shell;
//! - [`blockdev`]: the private volume (`bulkhead.home=`) served to the kernel's NBD driver
//!   as `/dev/nbd0`, which `/init` mounts at `/home`, and the template's root
//!   (`bulkhead.root=`) as `/dev/nbd1` under dm-verity; and the `block-hostile` self-test,
//!   a hostile client of the storage qube on those channels ([`blockdev::hostile`]);
//! - [`root`]: waiting for `/init` to mount the template's root, and moving the agent into
//!   it (`chroot`);
//! - [`bulktest`]: the `bulk-test` self-test, bulk areas against the testing qube;
//! - [`cpuprobe`]: the `cpu-probe` self-test, threads pinned to each CPU and round trips
//!   between two;
//! - [`netbench`]: the guest side of `cargo xtask bench --network` (bulk TCP to the host);
//! - [`blockbench`]: the guest side of `cargo xtask bench --storage` (`O_DIRECT` requests to
//!   a raw block device);
//! - [`services`]: the disposable request and the qrexec services (`qubes.VMShell`,
//!   `qubes.Filecopy` and its stream, `qubes.OpenInVM`);
//! - [`qrexec`]: the daemon on the channel to the admin qube (calls served and made);
//! - [`commands`]: `qvm-run`, `qvm-copy`, `qvm-open-in-dvm`, `qvm-ls`, ... (the agent
//!   binary called by those names);
//! - [`sys`]: `unsafe` system calls (mmap, poll, ioctl, reboot, the `*at` calls, CPU
//!   affinity, the NBD and device-mapper ioctls) and the benchmark mark;
//! - [`xstate`]: the `xstate-probe` self-test (`unsafe` instructions in [`xstate::cpu`], the
//!   only other module with `unsafe`);
//! - [`log`]: console lines.

pub mod agent;
pub mod blockbench;
pub mod blockdev;
pub mod bridge;
pub mod bulktest;
pub mod channel;
pub mod commands;
pub mod config;
pub mod cpuprobe;
pub mod dispvm;
pub mod gui;
pub mod log;
pub mod net;
pub mod netbench;
pub mod qrexec;
pub mod root;
pub mod services;
pub mod sys;
pub mod terminal;
pub mod xstate;
