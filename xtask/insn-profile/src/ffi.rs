//! The QEMU plugin API (QEMU 7.2, plugin API version 1): the few functions this plugin uses,
//! declared by hand, and the two entry points QEMU looks for. The only module with `unsafe`.
//!
//! QEMU calls `qemu_plugin_install` once, then our translation callback for every block it
//! translates; for each we allocate a counter and have QEMU add 1 to it inline every time the
//! block runs. At exit the counters are written to the file named by the `out=` argument.

use crate::Block;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type PluginId = u64;

/// `struct qemu_plugin_tb`: opaque.
#[repr(C)]
struct Tb {
    _opaque: [u8; 0],
}

/// `QEMU_PLUGIN_INLINE_ADD_U64`.
const INLINE_ADD_U64: c_int = 0;

unsafe extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(
        id: PluginId,
        cb: extern "C" fn(id: PluginId, tb: *mut Tb),
    );
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_vaddr(tb: *const Tb) -> u64;
    fn qemu_plugin_register_vcpu_tb_exec_inline(tb: *mut Tb, op: c_int, ptr: *mut c_void, imm: u64);
    fn qemu_plugin_register_atexit_cb(
        id: PluginId,
        cb: extern "C" fn(id: PluginId, data: *mut c_void),
        data: *mut c_void,
    );
}

/// The plugin API version this plugin was written against.
#[unsafe(no_mangle)]
pub static qemu_plugin_version: c_int = 1;

/// One translated block's counter. Leaked on purpose: QEMU adds to `runs` (through the
/// pointer we give it: an atomic, so writes from outside Rust are allowed) until it exits.
struct Counter {
    addr: u64,
    insns: u64,
    runs: AtomicU64,
}

/// Every counter handed to QEMU, and where to write them.
struct State {
    counters: Vec<&'static Counter>,
    out: String,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

extern "C" fn on_translate(_id: PluginId, tb: *mut Tb) {
    // SAFETY: `tb` is the block QEMU is translating, valid for the duration of this call.
    let (addr, insns) = unsafe { (qemu_plugin_tb_vaddr(tb), qemu_plugin_tb_n_insns(tb) as u64) };
    let counter: &'static Counter = Box::leak(Box::new(Counter {
        addr,
        insns,
        runs: AtomicU64::new(0),
    }));
    let runs: *mut u64 = counter.runs.as_ptr();
    // SAFETY: `tb` as above; `runs` points to a leaked `u64` that lives until the process
    // ends, which QEMU increments inline when the block runs (single-threaded TCG under
    // `-icount`; at exit we read it after the last block has run).
    unsafe { qemu_plugin_register_vcpu_tb_exec_inline(tb, INLINE_ADD_U64, runs.cast(), 1) };
    if let Ok(mut s) = STATE.lock()
        && let Some(s) = s.as_mut()
    {
        s.counters.push(counter);
    }
}

extern "C" fn on_exit(_id: PluginId, _data: *mut c_void) {
    let Ok(mut guard) = STATE.lock() else { return };
    let Some(state) = guard.take() else { return };
    let mut text = String::new();
    for c in &state.counters {
        // QEMU has stopped running blocks when it calls the exit callback.
        let b = Block {
            addr: c.addr,
            insns: c.insns,
            runs: c.runs.load(Ordering::Relaxed),
        };
        if b.runs > 0 {
            text.push_str(&b.line());
            text.push('\n');
        }
    }
    if let Err(e) = std::fs::write(&state.out, text) {
        eprintln!("bulkhead-insn-profile: writing {}: {e}", state.out);
    }
}

/// Called by QEMU when it loads the plugin: `argv` holds `out=FILE`.
///
/// # Safety
/// QEMU passes `argc` valid NUL-terminated strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let mut out = None;
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: `i < argc`, and each of QEMU's `argc` entries is a valid C string.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
        if let Some(path) = arg.to_str().ok().and_then(|a| a.strip_prefix("out=")) {
            out = Some(path.to_string());
        }
    }
    let Some(out) = out else {
        eprintln!("bulkhead-insn-profile: needs out=FILE");
        return -1;
    };
    if let Ok(mut s) = STATE.lock() {
        *s = Some(State {
            counters: Vec::new(),
            out,
        });
    }
    // SAFETY: `id` is the id QEMU gave us; the callbacks have the signatures QEMU calls them
    // with and live for the whole process.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
        qemu_plugin_register_atexit_cb(id, on_exit, std::ptr::null_mut());
    }
    0
}
