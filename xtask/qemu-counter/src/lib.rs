//! A QEMU TCG plugin for `cargo xtask bench --network` (`-plugin file=LIB,out=FILE`): counts
//! the guest instructions the emulated CPU executes and the VMRUN instructions among them
//! (one VM entry each, every one ended by one VM exit), and writes the counters to `FILE`
//! whenever the guest executes the mark instruction [`MARK`], a NOP with a displacement no
//! compiler emits. A program in the guest brackets what it measures with two marks, so the
//! difference of two lines is what the whole machine (hypervisor, every qube) executed in
//! between. Linked against nothing: QEMU resolves the `qemu_plugin_*` functions when it
//! loads the library (plugin API version 1, QEMU 7.2).
//!
//! Instructions are counted per translated block, when the block starts: a block left early
//! (an exception, a VM exit on an intercepted instruction) counts its remaining
//! instructions too; a slight overcount. They are also split by where the block's code lies
//! in the address space it runs in ([`Region`]): Bulkhead's layout puts the hypervisor,
//! the unikernels, a Linux kernel and Linux programs at addresses that do not overlap.
//! Finally the wall-clock time the vCPU spent halted (QEMU's idle and resume callbacks).
//!
//! With `blocks=FILE` (`cargo xtask bench --qemu --profile`), every translated block also
//! gets a counter of its own, and at exit `FILE` gets one line per block that ran:
//! `0xADDRESS INSTRUCTIONS RUNS CODE` (its first bytes, in hex), for xtask to name with the ELF symbol tables.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The mark: `nop dword ptr [rax + rax*1 + 0x4b4d4842]` ("BHMK" as the displacement).
pub const MARK: [u8; 8] = [0x0f, 0x1f, 0x84, 0x00, 0x42, 0x48, 0x4d, 0x4b];
/// VMRUN (`0f 01 d8`), possibly after a prefix.
const VMRUN: [u8; 3] = [0x0f, 0x01, 0xd8];

/// The plugin API version this library was written against (QEMU 7.2's).
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static qemu_plugin_version: c_int = 1;

/// Where code runs, told apart by its virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// 1-2 MiB: the hypervisor's image (hypervisor/hypervisor.ld, identity-mapped).
    Hypervisor,
    /// 2-4 MiB: the unikernels' images (linked at 2 MiB, each well under 2 MiB).
    Unikernels,
    /// The upper half: a Linux kernel and its modules.
    LinuxKernel,
    /// Everything else: Linux programs (busybox at 4 MiB, the static-PIE agent high up).
    Other,
}

impl Region {
    /// All of them, in report order.
    pub const ALL: [Region; 4] = [
        Region::Hypervisor,
        Region::Unikernels,
        Region::LinuxKernel,
        Region::Other,
    ];

    /// The region of code at `vaddr`.
    pub fn of(vaddr: u64) -> Region {
        match vaddr {
            0x10_0000..0x20_0000 => Region::Hypervisor,
            0x20_0000..0x40_0000 => Region::Unikernels,
            0xffff_8000_0000_0000.. => Region::LinuxKernel,
            _ => Region::Other,
        }
    }

    /// Its word in the report lines.
    pub fn word(self) -> &'static str {
        match self {
            Region::Hypervisor => "hypervisor",
            Region::Unikernels => "unikernels",
            Region::LinuxKernel => "linux-kernel",
            Region::Other => "programs",
        }
    }
}

/// Instructions executed per [`Region`] (added to by the code QEMU generates, one add per
/// block).
static INSNS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// VMRUNs executed.
static VMRUNS: AtomicU64 = AtomicU64::new(0);
/// Marks seen.
static MARKS: AtomicU64 = AtomicU64::new(0);
/// The `blocks=` file's path (the marks' snapshots go next to it).
static BLOCKS_PATH: Mutex<Option<String>> = Mutex::new(None);
/// Where the lines go.
static OUT: Mutex<Option<File>> = Mutex::new(None);
/// With `blocks=`: where the per-block lines go, and every block's counter.
static BLOCKS: Mutex<Option<(File, Vec<&'static Block>)>> = Mutex::new(None);
/// Wall-clock nanoseconds the vCPU spent halted (idle), up to the last resume.
static IDLE_NS: AtomicU64 = AtomicU64::new(0);
/// When the vCPU last went idle, if it is idle now.
static IDLE_SINCE: Mutex<Option<Instant>> = Mutex::new(None);

/// One translated block's counter (leaked: QEMU adds to `runs`, through the pointer we give
/// it, until it exits; an atomic, so writes from outside Rust are allowed).
struct Block {
    vaddr: u64,
    insns: u64,
    /// The first bytes of its code (up to 16, whole instructions): which image it came from
    /// when two share addresses (the unikernels).
    code: Vec<u8>,
    runs: AtomicU64,
}

/// QEMU's opaque translation block.
#[repr(C)]
pub struct Tb {
    _private: [u8; 0],
}

/// QEMU's opaque instruction.
#[repr(C)]
pub struct Insn {
    _private: [u8; 0],
}

/// `enum qemu_plugin_op`: QEMU_PLUGIN_INLINE_ADD_U64.
const INLINE_ADD_U64: c_int = 0;
/// `enum qemu_plugin_cb_flags`: QEMU_PLUGIN_CB_NO_REGS.
const CB_NO_REGS: c_int = 0;

type TbTransCb = extern "C" fn(id: u64, tb: *mut Tb);
type InsnExecCb = extern "C" fn(vcpu: c_uint, userdata: *mut c_void);
type AtExitCb = extern "C" fn(id: u64, userdata: *mut c_void);
type VcpuCb = extern "C" fn(id: u64, vcpu: c_uint);

// The functions QEMU exports to its plugins (include/qemu/qemu-plugin.h, API version 1).
unsafe extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: u64, cb: TbTransCb);
    fn qemu_plugin_register_atexit_cb(id: u64, cb: AtExitCb, userdata: *mut c_void);
    fn qemu_plugin_register_vcpu_idle_cb(id: u64, cb: VcpuCb);
    fn qemu_plugin_register_vcpu_resume_cb(id: u64, cb: VcpuCb);
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_vaddr(tb: *const Tb) -> u64;
    fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    fn qemu_plugin_insn_data(insn: *const Insn) -> *const c_void;
    fn qemu_plugin_insn_size(insn: *const Insn) -> usize;
    fn qemu_plugin_register_vcpu_tb_exec_inline(tb: *mut Tb, op: c_int, ptr: *mut c_void, imm: u64);
    fn qemu_plugin_register_vcpu_insn_exec_inline(
        insn: *mut Insn,
        op: c_int,
        ptr: *mut c_void,
        imm: u64,
    );
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: InsnExecCb,
        flags: c_int,
        userdata: *mut c_void,
    );
}

/// Called by QEMU once, at load: `argv` holds `out=FILE`. Returns 0 on success.
///
/// # Safety
/// QEMU passes `argc` valid C strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qemu_plugin_install(
    id: u64,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let (mut out, mut blocks) = (None, None);
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: QEMU gives `argc` pointers to NUL-terminated strings that outlive the plugin.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) }.to_string_lossy();
        if let Some(path) = arg.strip_prefix("out=") {
            out = Some(path.to_string());
        } else if let Some(path) = arg.strip_prefix("blocks=") {
            blocks = Some(path.to_string());
        }
    }
    if let Some(path) = blocks {
        match File::create(&path) {
            Ok(f) => {
                *BLOCKS.lock().unwrap_or_else(|e| e.into_inner()) = Some((f, Vec::new()));
                *BLOCKS_PATH.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
            }
            Err(e) => {
                eprintln!("bulkhead-qemu-counter: cannot create {path}: {e}");
                return 1;
            }
        }
    }
    let Some(path) = out else {
        eprintln!("bulkhead-qemu-counter: no out=FILE argument");
        return 1;
    };
    match File::create(&path) {
        Ok(f) => *OUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(f),
        Err(e) => {
            eprintln!("bulkhead-qemu-counter: cannot create {path}: {e}");
            return 1;
        }
    }
    // SAFETY: `id` is the one QEMU gave us; the callbacks have the signatures QEMU expects.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
        qemu_plugin_register_atexit_cb(id, on_exit, std::ptr::null_mut());
        qemu_plugin_register_vcpu_idle_cb(id, on_idle);
        qemu_plugin_register_vcpu_resume_cb(id, on_resume);
    }
    0
}

/// A block is being translated: count its instructions when it runs, each VMRUN when it
/// runs, and report at each mark.
extern "C" fn on_translate(_id: u64, tb: *mut Tb) {
    // SAFETY: `tb` and the instructions it hands out are valid during this callback; the
    // counters are statics, so the pointers given for the inline adds never dangle.
    unsafe {
        let n = qemu_plugin_tb_n_insns(tb);
        let vaddr = qemu_plugin_tb_vaddr(tb);
        let region = Region::of(vaddr) as usize;
        let counter = INSNS[region].as_ptr().cast();
        qemu_plugin_register_vcpu_tb_exec_inline(tb, INLINE_ADD_U64, counter, n as u64);
        if let Some((_, list)) = BLOCKS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let mut code = Vec::new();
            for i in 0..n {
                let insn = qemu_plugin_tb_get_insn(tb, i);
                let len = qemu_plugin_insn_size(insn);
                if code.len() + len > 16 {
                    break;
                }
                code.extend_from_slice(std::slice::from_raw_parts(
                    qemu_plugin_insn_data(insn).cast::<u8>(),
                    len,
                ));
            }
            let block: &'static Block = Box::leak(Box::new(Block {
                vaddr,
                insns: n as u64,
                code,
                runs: AtomicU64::new(0),
            }));
            qemu_plugin_register_vcpu_tb_exec_inline(
                tb,
                INLINE_ADD_U64,
                block.runs.as_ptr().cast(),
                1,
            );
            list.push(block);
        }
        for i in 0..n {
            let insn = qemu_plugin_tb_get_insn(tb, i);
            let len = qemu_plugin_insn_size(insn);
            let bytes = std::slice::from_raw_parts(qemu_plugin_insn_data(insn).cast::<u8>(), len);
            if bytes.ends_with(&VMRUN) && len <= VMRUN.len() + 1 {
                qemu_plugin_register_vcpu_insn_exec_inline(
                    insn,
                    INLINE_ADD_U64,
                    VMRUNS.as_ptr().cast(),
                    1,
                );
            } else if bytes == MARK {
                qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_mark,
                    CB_NO_REGS,
                    std::ptr::null_mut(),
                );
            }
        }
    }
}

/// The vCPU halted (nothing to run until an interrupt).
extern "C" fn on_idle(_id: u64, _vcpu: c_uint) {
    *IDLE_SINCE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
}

/// The vCPU runs again.
extern "C" fn on_resume(_id: u64, _vcpu: c_uint) {
    if let Some(since) = IDLE_SINCE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        IDLE_NS.fetch_add(ns, Ordering::Relaxed);
    }
}

/// The guest executed a mark: one line with the counters.
extern "C" fn on_mark(_vcpu: c_uint, _userdata: *mut c_void) {
    let n = MARKS.fetch_add(1, Ordering::Relaxed) + 1;
    report(&format!("mark {n}"));
    let path = BLOCKS_PATH
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(path) = path
        && let Some((_, list)) = BLOCKS.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
    {
        let _ = std::fs::write(format!("{path}.mark{n}"), block_lines(list));
    }
}

/// One line per block that ran: `0xADDRESS INSTRUCTIONS RUNS CODE` (CODE: its first bytes
/// in hex).
fn block_lines(list: &[&'static Block]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for b in list.iter() {
        let runs = b.runs.load(Ordering::Relaxed);
        if runs > 0 {
            let _ = write!(text, "{:#x} {} {runs} ", b.vaddr, b.insns);
            for byte in &b.code {
                let _ = write!(text, "{byte:02x}");
            }
            text.push('\n');
        }
    }
    text
}

/// QEMU is leaving: the totals, and every block that ran.
extern "C" fn on_exit(_id: u64, _userdata: *mut c_void) {
    report("exit");
    if let Some((mut f, list)) = BLOCKS.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = f.write_all(block_lines(&list).as_bytes());
    }
}

/// `WHAT insns N vmruns N idle-ns N hypervisor N unikernels N linux-kernel N programs N`.
fn report(what: &str) {
    let counts = INSNS.each_ref().map(|c| c.load(Ordering::Relaxed));
    let mut line = format!(
        "{what} insns {} vmruns {} idle-ns {}",
        counts.iter().sum::<u64>(),
        VMRUNS.load(Ordering::Relaxed),
        IDLE_NS.load(Ordering::Relaxed)
    );
    for (r, n) in Region::ALL.iter().zip(counts) {
        line.push_str(&format!(" {} {n}", r.word()));
    }
    line.push('\n');
    if let Some(f) = OUT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = f.write_all(line.as_bytes());
        let _ = f.flush();
    }
}
