//! The only module with unsafe code: raw access to the shared region.
//!
//! Everything here touches memory that the peer qube may change at any moment, so nothing
//! here ever holds a Rust reference to region bytes except through `AtomicU32`. The rules:
//!
//! 1. Bounds are proven once, at construction: [`Ring::new`] checks that the ring described
//!    by a validated [`Geometry`] lies inside the region and is aligned. Every later access
//!    is at a fixed offset of that ring or in a slot chosen by `index & (slot_count - 1)`,
//!    at a payload offset below `max_payload`; the checks that remain are on lengths.
//! 2. Control words (the consumer index, the waiting flag, slot sequence and length words) are
//!    `AtomicU32`s made from raw pointers: each load is one fetch, whatever the peer does.
//! 3. Payload bytes are read with volatile loads into private memory, each byte once, and
//!    written with plain stores through raw pointers. Between two honest endpoints the slot
//!    sequence words and the consumer index (release/acquire) order every payload access, so there is no
//!    data race; a hostile peer's concurrent writes come from another qube, outside this
//!    program, and can change only the bytes we read, never make us read them twice.
//!
//! Under `cfg(loom)` the region is a model instead: the control words are loom atomics and
//! every slot is a loom `UnsafeCell`, so the model checker sees each access and reports any
//! payload access the indices do not order.

#[cfg(not(loom))]
pub(crate) use raw::Ring;
#[cfg(not(loom))]
pub use raw::SharedRegion;

#[cfg(loom)]
pub(crate) use model::Ring;
#[cfg(loom)]
pub use model::SharedRegion;

use bulkhead_abi::channel::{Geometry, RING_CONTROL_SIZE, SLOT_HEADER};

/// The parts of a ring a [`Geometry`] gives, checked against a region of `len` bytes.
#[derive(Clone, Copy)]
#[cfg_attr(loom, allow(dead_code))]
struct RingShape {
    /// Offset of the ring's control block.
    offset: usize,
    /// Offset of slot 0.
    slots: usize,
    /// log2 of the slot size.
    slot_shift: u32,
    /// `slot_count - 1`.
    mask: u32,
    /// Largest payload.
    max_payload: usize,
}

impl RingShape {
    fn new(g: &Geometry, which: usize, len: usize) -> Option<RingShape> {
        let offset = usize::try_from(*g.ring_offset.get(which)?).ok()?;
        let ring_size = usize::try_from(g.ring_size).ok()?;
        let slot_size = usize::try_from(g.slot_size).ok()?;
        let slot_count = usize::try_from(g.slot_count).ok()?;
        let control = usize::try_from(RING_CONTROL_SIZE).ok()?;
        let slots_len = slot_count.checked_mul(slot_size)?;
        let fits = offset.is_multiple_of(64)
            && g.slot_size.is_power_of_two()
            && g.slot_count.is_power_of_two()
            && g.slot_size > SLOT_HEADER
            && slot_size.is_multiple_of(8)
            && control.checked_add(slots_len)? <= ring_size
            && offset.checked_add(ring_size)? <= len;
        fits.then_some(RingShape {
            offset,
            slots: offset + control,
            slot_shift: g.slot_size.trailing_zeros(),
            mask: g.slot_count - 1,
            max_payload: usize::try_from(g.slot_size - SLOT_HEADER).ok()?,
        })
    }
}

/// The initial words (offset, value) of ring `which` for indices starting at `start`, as
/// `SharedRegion::init_header_at` writes them: the consumer index, the waiting flag, and each
/// slot's sequence word as the lap before `start` left it (so a start just below the wrap,
/// which the tests use, never finds a zero word it could take for a message).
#[cfg(not(loom))]
fn initial_words(g: &Geometry, which: usize, start: u32) -> impl Iterator<Item = (u64, u32)> {
    use bulkhead_abi::channel::{CONSUMER_OFFSET, SEQ_OFFSET, WAITING_OFFSET, published_seq};
    let ring = u64::from(g.ring_offset[which]);
    let control = [(ring + CONSUMER_OFFSET, start), (ring + WAITING_OFFSET, 0)];
    let slots = (0..g.slot_count).map(move |m| {
        let index = start.wrapping_add(m);
        let slot = u64::from(index & (g.slot_count - 1)) * u64::from(g.slot_size);
        let lap_before = published_seq(index.wrapping_sub(g.slot_count));
        (ring + RING_CONTROL_SIZE + slot + SEQ_OFFSET, lap_before)
    });
    control.into_iter().chain(slots)
}

#[cfg(not(loom))]
mod raw {
    use super::RingShape;
    use crate::sync::{AtomicU32, AtomicU64};
    use bulkhead_abi::channel::{CONSUMER_OFFSET, GENERATION_OFFSET, Geometry, WAITING_OFFSET};
    use core::mem::MaybeUninit;
    use core::ptr;

    /// A channel's shared memory: where it is and how long it is.
    ///
    /// Cloning gives another handle on the same memory (one per endpoint in tests).
    #[derive(Clone)]
    pub struct SharedRegion {
        base: *mut u8,
        len: usize,
        /// Keeps memory from [`SharedRegion::zeroed`] alive.
        #[cfg(feature = "std")]
        owner: Option<std::sync::Arc<owned::Owned>>,
    }

    // SAFETY: a `SharedRegion` is an address range, not a borrow of Rust data: (1) every access
    // through it is atomic or volatile and bounds-checked against `len`; (2) the memory stays
    // valid for as long as any handle exists (the contract of `new`, or the `Arc` of `zeroed`);
    // (3) nothing in it is tied to the thread that made it. Moving it to another thread is fine.
    unsafe impl Send for SharedRegion {}

    impl core::fmt::Debug for SharedRegion {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("SharedRegion")
                .field("base", &self.base)
                .field("len", &self.len)
                .finish()
        }
    }

    impl SharedRegion {
        /// The region of `len` bytes at `base`.
        ///
        /// # Safety
        /// 1. `base .. base + len` is mapped, readable and writable for as long as this
        ///    `SharedRegion` or any clone of it (including the ones inside an `Endpoint`) exists.
        /// 2. No Rust reference to those bytes exists or is made while it is in use: other
        ///    parties (the peer qube, the hypervisor) may write them, but this program reaches
        ///    them only through `SharedRegion` handles.
        ///
        /// The alignment and the header are checked later, by `Endpoint::open`.
        pub unsafe fn new(base: *mut u8, len: usize) -> SharedRegion {
            SharedRegion {
                base,
                len,
                #[cfg(feature = "std")]
                owner: None,
            }
        }

        /// Bytes in the region.
        pub fn len(&self) -> usize {
            self.len
        }

        /// True for a region of no bytes.
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// Where the region starts.
        pub fn as_ptr(&self) -> *mut u8 {
            self.base
        }

        pub(crate) fn is_page_aligned(&self) -> bool {
            (self.base as usize).is_multiple_of(4096) && !self.base.is_null()
        }

        /// Copies `dst.len()` bytes from `offset` (volatile loads); false, copying nothing, when
        /// that range is not inside the region.
        pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
            if !self.contains(offset, dst.len()) {
                return false;
            }
            // SAFETY: (1) the range is inside the region (checked above), which is mapped and
            // readable (contract of `new`); (2) `dst` is a distinct, private buffer of
            // `dst.len()` bytes (it cannot alias the region: no reference to it exists).
            unsafe { fetch(self.base.add(offset), dst.as_mut_ptr(), dst.len()) };
            true
        }

        /// The reset generation in the header (the hypervisor's word; see
        /// `bulkhead_abi::channel::GENERATION_OFFSET`).
        #[inline]
        pub(crate) fn generation(&self) -> u32 {
            let at = GENERATION_OFFSET as usize;
            if !self.contains(at, 4) || !(self.base as usize).is_multiple_of(4) {
                return 0;
            }
            // SAFETY: (1) the word lies inside the region (checked above), mapped for as long
            // as `self` lives, which bounds the borrow; (2) it is 4-byte aligned (a 4-aligned
            // base plus 64); (3) this program touches these bytes only atomically or through
            // volatile copies (contract of `new`: no references).
            let word = unsafe { AtomicU32::from_ptr(self.base.add(at).cast::<u32>()) };
            word.load(crate::sync::Ordering::Relaxed)
        }

        /// Copies `src` to `offset` (volatile stores); false, writing nothing, when that range
        /// is not inside the region. Bulk buffers are written with it; tests use it to play
        /// the hostile peer.
        pub fn write_bytes(&self, offset: usize, src: &[u8]) -> bool {
            if !self.contains(offset, src.len()) {
                return false;
            }
            // SAFETY: (1) the range is inside the region (checked above), which is mapped and
            // writable (contract of `new`); (2) `src` is the caller's memory, which cannot
            // overlap the region (no references to region bytes exist).
            unsafe { store(src.as_ptr(), self.base.add(offset), src.len()) };
            true
        }

        /// Plays the hypervisor: writes the header for `geometry`, zeroes both rings' consumer
        /// indices and waiting flags and marks every slot empty (the payloads are left as
        /// they are). Writes nothing that would fall outside the region; `Endpoint::open`
        /// then refuses it.
        pub fn init_header(&self, geometry: &Geometry) {
            self.init_header_at(geometry, 0);
        }

        /// [`SharedRegion::init_header`] with every index starting at `start` (tests use
        /// values near `u32::MAX` to cross the wrap).
        #[doc(hidden)]
        pub fn init_header_at(&self, geometry: &Geometry, start: u32) {
            if self.write_bytes(0, &geometry.header()) {
                let words = super::initial_words(geometry, 0, start)
                    .chain(super::initial_words(geometry, 1, start));
                for (offset, value) in words {
                    if let Ok(offset) = usize::try_from(offset) {
                        self.write_bytes(offset, &value.to_le_bytes());
                    }
                }
            }
        }

        fn contains(&self, offset: usize, n: usize) -> bool {
            offset.checked_add(n).is_some_and(|end| end <= self.len)
        }
    }

    /// Copies `len` bytes from shared memory with volatile loads: each byte is fetched once,
    /// and the compiler cannot replace a later read of `dst` by a second read of `src`.
    ///
    /// # Safety
    /// 1. `src .. src + len` is readable shared memory;
    /// 2. `dst .. dst + len` is writable private memory that does not overlap it.
    #[inline]
    unsafe fn fetch(src: *const u8, dst: *mut u8, len: usize) {
        let words = if (src as usize).is_multiple_of(8) {
            len / 8
        } else {
            0
        };
        for i in 0..words {
            // SAFETY: `src` is 8-aligned and `i * 8 + 8 <= len`, so this u64 lies inside the
            // source range (1); the store is inside `dst` (2), which may be unaligned.
            unsafe {
                let w = ptr::read_volatile(src.add(i * 8).cast::<u64>());
                dst.add(i * 8).cast::<u64>().write_unaligned(w);
            }
        }
        for i in words * 8..len {
            // SAFETY: `i < len`: inside both ranges (1, 2).
            unsafe { dst.add(i).write(ptr::read_volatile(src.add(i))) };
        }
    }

    /// Copies `len` bytes into shared memory with volatile stores, eight at a time where the
    /// destination is aligned: every byte is written once, none is read back.
    ///
    /// # Safety
    /// 1. `dst .. dst + len` is writable shared memory;
    /// 2. `src .. src + len` is readable private memory that does not overlap it.
    #[inline]
    unsafe fn store(src: *const u8, dst: *mut u8, len: usize) {
        let head = dst.align_offset(8).min(len);
        let words = (len - head) / 8;
        for i in 0..head {
            // SAFETY: `i < head <= len`: inside both ranges (1, 2).
            unsafe { ptr::write_volatile(dst.add(i), src.add(i).read()) };
        }
        for w in 0..words {
            let at = head + w * 8;
            // SAFETY: `dst + at` is 8-aligned and `at + 8 <= len`: inside the destination (1);
            // the 8 source bytes are inside `src` (2), read unaligned.
            unsafe {
                let v = src.add(at).cast::<u64>().read_unaligned();
                ptr::write_volatile(dst.add(at).cast::<u64>(), v);
            }
        }
        for i in head + words * 8..len {
            // SAFETY: `i < len`: inside both ranges (1, 2).
            unsafe { ptr::write_volatile(dst.add(i), src.add(i).read()) };
        }
    }

    /// One ring of a channel, its bounds proven against the region once.
    pub(crate) struct Ring {
        /// Keeps the memory alive and carries its address.
        region: SharedRegion,
        shape: RingShape,
    }

    // SAFETY: the same as for `SharedRegion` (a `Ring` is a region handle plus offsets).
    unsafe impl Send for Ring {}

    impl Ring {
        /// Ring `which` (0 or 1) of `geometry` in `region`, or `None` if it does not lie inside
        /// the region, 64-byte aligned (the region itself must be 8-byte aligned).
        pub(crate) fn new(
            region: &SharedRegion,
            geometry: &Geometry,
            which: usize,
        ) -> Option<Ring> {
            if !(region.base as usize).is_multiple_of(64) {
                return None;
            }
            let shape = RingShape::new(geometry, which, region.len)?;
            Some(Ring {
                region: region.clone(),
                shape,
            })
        }

        /// The control word at `offset` of the ring (0 or 64).
        #[inline]
        fn word(&self, offset: u64) -> &AtomicU32 {
            // The offsets are the layout's constants, all below RING_CONTROL_SIZE.
            let at = self.shape.offset + offset as usize;
            // SAFETY: (1) `at + 4 <= offset + RING_CONTROL_SIZE <= len` (`RingShape::new`), so
            // the word lies inside the region, mapped for as long as `self.region` lives, which
            // bounds the returned lifetime; (2) `at` is a multiple of 4 from a 64-aligned base,
            // as `AtomicU32` needs; (3) all accesses of this program to these bytes are atomic
            // (contract of `SharedRegion::new`: no other references).
            unsafe { AtomicU32::from_ptr(self.region.base.add(at).cast::<u32>()) }
        }

        /// The consumer index (written by the consumer only).
        #[inline]
        pub(crate) fn consumer(&self) -> &AtomicU32 {
            self.word(CONSUMER_OFFSET)
        }

        /// The consumer-waiting flag (written by the consumer only).
        #[inline]
        pub(crate) fn waiting(&self) -> &AtomicU32 {
            self.word(WAITING_OFFSET)
        }

        /// Largest payload of a slot.
        #[inline]
        pub(crate) fn max_payload(&self) -> usize {
            self.shape.max_payload
        }

        /// Start of the slot for free-running `index`.
        #[inline]
        fn slot(&self, index: u32) -> *mut u8 {
            let at =
                self.shape.slots + (((index & self.shape.mask) as usize) << self.shape.slot_shift);
            // SAFETY: the slot number is below slot_count, so the whole slot lies inside the
            // ring, inside the region (`RingShape::new`).
            unsafe { self.region.base.add(at) }
        }

        /// The header of slot `index`: its sequence word (low half, offset 0) and its length
        /// word (high half, offset 4) as one `u64`, loaded and stored in one access.
        #[inline]
        fn slot_header(&self, index: u32) -> &AtomicU64 {
            // SAFETY: (1) the slot's first 8 bytes lie inside the region (see `slot`); the
            // lifetime is bounded by `self`, which keeps the region alive; (2) a slot starts
            // 64-aligned, as `AtomicU64` needs 8; (3) this program accesses these bytes only
            // atomically (contract of `new`).
            unsafe { AtomicU64::from_ptr(self.slot(index).cast::<u64>()) }
        }

        /// The sequence and length words of slot `index` (one fetch, acquire: the payload the
        /// producer wrote before publishing is visible after it; the caller validates both).
        #[inline]
        pub(crate) fn slot_seq_len(&self, index: u32) -> (u32, u32) {
            let h = self.slot_header(index).load(crate::sync::Ordering::Acquire);
            (h as u32, (h >> 32) as u32)
        }

        /// Publishes slot `index`: its sequence and length words in one store (release: after
        /// its payload).
        #[inline]
        pub(crate) fn publish_slot(&self, index: u32, seq: u32, len: u32) {
            let h = u64::from(seq) | (u64::from(len) << 32);
            self.slot_header(index)
                .store(h, crate::sync::Ordering::Release);
        }

        /// Copies the first `dst.len()` payload bytes of slot `index` into `dst`; false, copying
        /// nothing, when `dst` is longer than a payload.
        #[inline]
        pub(crate) fn read_payload(&self, index: u32, dst: &mut [u8]) -> bool {
            if dst.len() > self.shape.max_payload {
                return false;
            }
            // SAFETY: (1) the payload starts SLOT_HEADER bytes into the slot and
            // `dst.len() <= max_payload = slot_size - SLOT_HEADER`, so the source lies inside
            // the slot; (2) `dst` is private memory.
            unsafe { fetch(self.slot(index).add(8), dst.as_mut_ptr(), dst.len()) };
            true
        }

        /// Calls `f` with a private copy of the first `len` payload bytes of slot `index` (at
        /// most a payload: the caller has checked `len`, and a longer one is cut). The copy
        /// lives on the stack: 256 bytes for short messages, 4 KiB up to that size, 64 KiB
        /// beyond.
        #[inline]
        pub(crate) fn with_payload<R>(
            &self,
            index: u32,
            len: usize,
            f: impl FnOnce(&[u8]) -> R,
        ) -> R {
            let len = len.min(self.shape.max_payload);
            // SAFETY: the payload starts SLOT_HEADER bytes into the slot, and its `len <=
            // max_payload` bytes lie inside the slot (see `read_payload`), as `copy_then` needs.
            let src = unsafe { self.slot(index).add(8) };
            if len <= 256 {
                copy_then::<256, R>(src, len, f)
            } else if len <= 4096 {
                copy_then_cold::<4096, R>(src, len, f)
            } else {
                copy_then_cold::<{ bulkhead_abi::channel::MAX_SLOT_SIZE as usize }, R>(src, len, f)
            }
        }

        /// A postcard output that writes straight into the payload of slot `index`.
        #[inline]
        pub(crate) fn writer(&self, index: u32) -> SlotWriter<'_> {
            // SAFETY: the payload starts SLOT_HEADER bytes into the slot (see `read_payload`).
            let payload = unsafe { self.slot(index).add(8) };
            SlotWriter {
                payload,
                cap: self.shape.max_payload,
                pos: 0,
                _ring: core::marker::PhantomData,
            }
        }
    }

    /// Copies `len <= N` bytes from `src` into an `N`-byte stack buffer and calls `f` on them.
    #[inline(always)]
    fn copy_then<const N: usize, R>(src: *const u8, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let mut buf = [MaybeUninit::<u8>::uninit(); N];
        let len = len.min(N);
        // SAFETY: (1) the caller passes `len` readable bytes at `src`; (2) `buf` is private and
        // holds `N >= len` bytes.
        unsafe { fetch(src, buf.as_mut_ptr().cast::<u8>(), len) };
        // SAFETY: `fetch` initialised the first `len` bytes of `buf`, which outlives the slice.
        let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        f(bytes)
    }

    /// [`copy_then`] for long messages, out of line so that short ones keep a small frame.
    #[inline(never)]
    #[cold]
    fn copy_then_cold<const N: usize, R>(
        src: *const u8,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        copy_then::<N, R>(src, len, f)
    }

    /// Postcard output into a slot's payload: plain stores, bounded by the payload size.
    pub(crate) struct SlotWriter<'a> {
        payload: *mut u8,
        cap: usize,
        pos: usize,
        _ring: core::marker::PhantomData<&'a Ring>,
    }

    impl postcard::ser_flavors::Flavor for SlotWriter<'_> {
        type Output = usize;

        #[inline]
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            if self.pos >= self.cap {
                return Err(postcard::Error::SerializeBufferFull);
            }
            // SAFETY: `pos < cap = max_payload`: inside the slot's payload, which stays mapped
            // while the borrowed `Ring` lives; the slot is ours until we publish it.
            unsafe { self.payload.add(self.pos).write(data) };
            self.pos += 1;
            Ok(())
        }

        #[inline]
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            if data.len() > self.cap - self.pos {
                return Err(postcard::Error::SerializeBufferFull);
            }
            // SAFETY: `pos + data.len() <= cap`: inside the payload (see `try_push`); `data` is
            // the caller's memory, which cannot overlap the region (no references to it exist).
            unsafe {
                ptr::copy_nonoverlapping(data.as_ptr(), self.payload.add(self.pos), data.len())
            };
            self.pos += data.len();
            Ok(())
        }

        #[inline]
        fn finalize(self) -> postcard::Result<usize> {
            Ok(self.pos)
        }
    }

    impl SlotWriter<'_> {
        /// Copies raw bytes into the payload; false if they do not fit.
        #[inline]
        pub(crate) fn put(mut self, bytes: &[u8]) -> bool {
            postcard::ser_flavors::Flavor::try_extend(&mut self, bytes).is_ok()
        }
    }

    #[cfg(feature = "std")]
    mod owned {
        use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};

        /// Bytes of guard before and after an owned region.
        pub(super) const GUARD: usize = 4096;
        /// What the guard bytes hold.
        pub(super) const GUARD_BYTE: u8 = 0xA5;

        /// Page-aligned heap memory with a guard page on each side.
        pub(crate) struct Owned {
            pub(super) ptr: *mut u8,
            layout: Layout,
        }

        // SAFETY: `Owned` only frees its allocation on drop; the bytes are accessed through
        // `SharedRegion` handles under their own rules.
        unsafe impl Send for Owned {}
        // SAFETY: as above; `Owned` has no methods that access the bytes.
        unsafe impl Sync for Owned {}

        impl Owned {
            pub(super) fn new(len: usize) -> Owned {
                let size = len.checked_add(2 * GUARD).expect("region size overflows");
                let layout = Layout::from_size_align(size, 4096).expect("region size overflows");
                // SAFETY: `layout` has a non-zero size (at least two guard pages).
                let ptr = unsafe { alloc_zeroed(layout) };
                if ptr.is_null() {
                    handle_alloc_error(layout);
                }
                // SAFETY: both guards lie inside the fresh allocation of `len + 2 * GUARD` bytes.
                unsafe {
                    ptr.write_bytes(GUARD_BYTE, GUARD);
                    ptr.add(GUARD + len).write_bytes(GUARD_BYTE, GUARD);
                }
                Owned { ptr, layout }
            }
        }

        impl Drop for Owned {
            fn drop(&mut self) {
                // SAFETY: `ptr` came from `alloc_zeroed(layout)` and is freed once.
                unsafe { dealloc(self.ptr, self.layout) };
            }
        }
    }

    #[cfg(feature = "std")]
    impl SharedRegion {
        /// Bytes of guard memory before and after a region from [`SharedRegion::zeroed`].
        #[doc(hidden)]
        pub const GUARD: usize = owned::GUARD;

        /// A region of `len` zeroed bytes on the heap, page-aligned, with a guard page before
        /// and after it (see [`SharedRegion::guards_intact`]); freed when the last handle goes.
        ///
        /// # Panics
        /// If the allocation fails or its size overflows.
        pub fn zeroed(len: usize) -> SharedRegion {
            let owned = std::sync::Arc::new(owned::Owned::new(len));
            // SAFETY: the allocation starts GUARD bytes before `base`, so `base` is page-aligned
            // and `base .. base + len` lies inside it; the `Arc` stored in every clone keeps it
            // alive, and no reference to its bytes is ever made.
            let base = unsafe { owned.ptr.add(owned::GUARD) };
            SharedRegion {
                base,
                len,
                owner: Some(owned),
            }
        }

        /// For a region from [`SharedRegion::zeroed`]: whether both guard pages still hold
        /// their pattern (nothing wrote next to the region). True for other regions.
        #[doc(hidden)]
        pub fn guards_intact(&self) -> bool {
            let Some(owned) = &self.owner else {
                return true;
            };
            let ok = |start: *const u8| {
                // SAFETY: `start .. start + GUARD` is one of the two guard pages inside the
                // allocation that `owned` keeps alive; no handle ever gives access to them, so
                // nothing writes them while this shared borrow lives (unless the ring code
                // is wrong, which is what this check is for).
                let guard = unsafe { core::slice::from_raw_parts(start, owned::GUARD) };
                guard == [owned::GUARD_BYTE; owned::GUARD]
            };
            // SAFETY: the guard after the region starts at `base + len`, inside the allocation.
            ok(owned.ptr) && ok(unsafe { self.base.add(self.len) })
        }
    }
}

#[cfg(loom)]
mod model {
    use super::RingShape;
    use crate::sync::{AtomicU32, AtomicU64};
    use bulkhead_abi::channel::Geometry;
    use loom::cell::UnsafeCell;
    use std::sync::Arc;
    use std::vec::Vec;

    /// A model of a channel's shared memory for loom: atomics and checked cells.
    #[derive(Clone, Debug)]
    pub struct SharedRegion {
        model: Arc<Model>,
    }

    #[derive(Debug)]
    struct Model {
        len: usize,
        header: [u8; bulkhead_abi::channel::HEADER_BYTES],
        rings: [RingModel; 2],
    }

    #[derive(Debug)]
    struct RingModel {
        consumer: AtomicU32,
        waiting: AtomicU32,
        headers: Vec<AtomicU64>,
        slots: Vec<UnsafeCell<Slot>>,
    }

    #[derive(Debug)]
    struct Slot {
        payload: Vec<u8>,
    }

    // SAFETY: the cells are loom's: every access goes through `with`/`with_mut`, which loom
    // checks for races between the model's threads (that is what the model is for).
    unsafe impl Sync for Model {}
    // SAFETY: as above.
    unsafe impl Send for Model {}

    impl SharedRegion {
        /// A model region of `len` bytes initialised for `geometry`, every index at `start`.
        pub fn model(geometry: &Geometry, len: usize, start: u32) -> SharedRegion {
            let n = geometry.slot_count;
            let lap_before = |slot: u32| {
                // The index in `start .. start + n` that uses `slot`, one lap back.
                let index = start.wrapping_add(slot.wrapping_sub(start) & (n - 1));
                bulkhead_abi::channel::published_seq(index.wrapping_sub(n))
            };
            let ring = || RingModel {
                consumer: AtomicU32::new(start),
                waiting: AtomicU32::new(0),
                headers: (0..n)
                    .map(|slot| AtomicU64::new(u64::from(lap_before(slot))))
                    .collect(),
                slots: (0..geometry.slot_count)
                    .map(|_| {
                        UnsafeCell::new(Slot {
                            payload: std::vec![0; geometry.max_payload() as usize],
                        })
                    })
                    .collect(),
            };
            SharedRegion {
                model: Arc::new(Model {
                    len,
                    header: geometry.header(),
                    rings: [ring(), ring()],
                }),
            }
        }

        /// Bytes in the region.
        pub fn len(&self) -> usize {
            self.model.len
        }

        /// True for a region of no bytes.
        pub fn is_empty(&self) -> bool {
            self.model.len == 0
        }

        pub(crate) fn is_page_aligned(&self) -> bool {
            true
        }

        /// The model is never reset.
        pub(crate) fn generation(&self) -> u32 {
            0
        }

        /// Reads the header (the only plain bytes of the model).
        pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> bool {
            match offset
                .checked_add(dst.len())
                .and_then(|end| self.model.header.get(offset..end))
            {
                Some(src) => {
                    dst.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    /// One ring of the model.
    pub(crate) struct Ring {
        region: SharedRegion,
        which: usize,
        shape: RingShape,
    }

    impl Ring {
        pub(crate) fn new(
            region: &SharedRegion,
            geometry: &Geometry,
            which: usize,
        ) -> Option<Ring> {
            let shape = RingShape::new(geometry, which, region.model.len)?;
            Some(Ring {
                region: region.clone(),
                which,
                shape,
            })
        }

        fn ring(&self) -> &RingModel {
            &self.region.model.rings[self.which]
        }

        pub(crate) fn consumer(&self) -> &AtomicU32 {
            &self.ring().consumer
        }

        pub(crate) fn waiting(&self) -> &AtomicU32 {
            &self.ring().waiting
        }

        pub(crate) fn max_payload(&self) -> usize {
            self.shape.max_payload
        }

        fn cell(&self, index: u32) -> &UnsafeCell<Slot> {
            &self.ring().slots[(index & self.shape.mask) as usize]
        }

        pub(crate) fn slot_seq_len(&self, index: u32) -> (u32, u32) {
            let h = self.ring().headers[(index & self.shape.mask) as usize]
                .load(crate::sync::Ordering::Acquire);
            (h as u32, (h >> 32) as u32)
        }

        pub(crate) fn publish_slot(&self, index: u32, seq: u32, len: u32) {
            self.ring().headers[(index & self.shape.mask) as usize].store(
                u64::from(seq) | (u64::from(len) << 32),
                crate::sync::Ordering::Release,
            );
        }

        pub(crate) fn read_payload(&self, index: u32, dst: &mut [u8]) -> bool {
            if dst.len() > self.shape.max_payload {
                return false;
            }
            // SAFETY: loom checks this read against every write of the cell.
            self.cell(index)
                .with(|s| dst.copy_from_slice(unsafe { &(&(*s).payload)[..dst.len()] }));
            true
        }

        pub(crate) fn with_payload<R>(
            &self,
            index: u32,
            len: usize,
            f: impl FnOnce(&[u8]) -> R,
        ) -> R {
            let mut copy = std::vec![0; len.min(self.shape.max_payload)];
            self.read_payload(index, &mut copy);
            f(&copy)
        }

        pub(crate) fn writer(&self, index: u32) -> SlotWriter<'_> {
            SlotWriter {
                cell: self.cell(index),
                cap: self.shape.max_payload,
                pos: 0,
            }
        }
    }

    /// Postcard output into a model slot.
    pub(crate) struct SlotWriter<'a> {
        cell: &'a UnsafeCell<Slot>,
        cap: usize,
        pos: usize,
    }

    impl postcard::ser_flavors::Flavor for SlotWriter<'_> {
        type Output = usize;

        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.try_extend(&[data])
        }

        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            if data.len() > self.cap - self.pos {
                return Err(postcard::Error::SerializeBufferFull);
            }
            let at = self.pos;
            // SAFETY: loom checks this write against every access of the cell.
            self.cell.with_mut(|s| unsafe {
                (&mut (*s).payload)[at..at + data.len()].copy_from_slice(data)
            });
            self.pos += data.len();
            Ok(())
        }

        fn finalize(self) -> postcard::Result<usize> {
            Ok(self.pos)
        }
    }

    impl SlotWriter<'_> {
        pub(crate) fn put(mut self, bytes: &[u8]) -> bool {
            postcard::ser_flavors::Flavor::try_extend(&mut self, bytes).is_ok()
        }
    }
}
