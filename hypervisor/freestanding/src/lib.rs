//! What the prebuilt `core` of the host target expects from the image that links it, when
//! that image has no libc: `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp` and a
//! `rust_eh_personality` symbol (core is built with unwinding; our images abort on panic, so
//! the personality routine is never called).
//!
//! They are written in assembly so LLVM cannot recognise a loop in their body and turn it
//! back into a call to the function itself, and so link-time optimisation cannot drop them.
//! Every image links this crate with `use bulkhead_freestanding as _;`.
//!
//! The functions follow the System V calling convention and the C standard's contracts;
//! `memmove` handles overlap by copying backwards when the destination is above the source.
#![no_std]

// Only ever a dependency of image binaries (it is not a default workspace member and has no
// tests): a host program linking it would replace libc's mem functions with these.
core::arch::global_asm!(include_str!("mem.s"));
