//! Fixed-capacity collections without unsafe code or dependencies: what the manifest types
//! hold, and what the hypervisor uses instead of a heap (`bulkhead_hvcore::collections`
//! re-exports them). Every operation that could overflow returns the rejected value.
//!
//! - [`BoundedVec`]: up to `N` values of any type, in `[Option<T>; N]`; the first `len`
//!   slots are `Some`. No slices of `T` (that would take unsafe code); iterate instead.
//! - [`ArrayVec`]: up to `N` plain (`Copy + Default`) values in `[T; N]`, usable as a
//!   slice.
//! - [`BoundedString`]: up to `N` bytes of UTF-8, `Copy`.
//! - [`BoundedDeque`]: a FIFO ring of up to `N` `Copy` values.

use core::fmt;

/// Up to `N` values, in insertion order.
pub struct BoundedVec<T, const N: usize> {
    slots: [Option<T>; N],
    len: usize,
}

impl<T, const N: usize> BoundedVec<T, N> {
    /// An empty vector.
    pub const fn new() -> Self {
        BoundedVec {
            slots: [const { None }; N],
            len: 0,
        }
    }

    /// Appends `value`, or gives it back when the vector is full.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(value);
                self.len += 1;
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Removes and returns the last value.
    pub fn pop(&mut self) -> Option<T> {
        let last = self.len.checked_sub(1)?;
        self.len = last;
        self.slots[last].take()
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        while self.pop().is_some() {}
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no more fit.
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// The value at `index`.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.slots[..self.len].get(index)?.as_ref()
    }

    /// The value at `index`, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots[..self.len].get_mut(index)?.as_mut()
    }

    /// The values in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone {
        self.slots[..self.len].iter().flatten()
    }

    /// The values in order, mutably.
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> {
        self.slots[..self.len].iter_mut().flatten()
    }

    /// The first value.
    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    /// The last value.
    pub fn last(&self) -> Option<&T> {
        self.get(self.len.checked_sub(1)?)
    }

    /// A vector of the values `iter` yields, or `None` if there are more than `N`.
    pub fn try_from_iter(iter: impl IntoIterator<Item = T>) -> Option<Self> {
        let mut v = Self::new();
        for value in iter {
            v.push(value).ok()?;
        }
        Some(v)
    }
}

impl<T: Clone, const N: usize> BoundedVec<T, N> {
    /// A vector of copies of `values`, or `None` if there are more than `N`.
    pub fn from_slice(values: &[T]) -> Option<Self> {
        Self::try_from_iter(values.iter().cloned())
    }
}

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone, const N: usize> Clone for BoundedVec<T, N> {
    fn clone(&self) -> Self {
        BoundedVec {
            slots: self.slots.clone(),
            len: self.len,
        }
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for BoundedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq, const N: usize> Eq for BoundedVec<T, N> {}

impl<T, const N: usize> core::ops::Index<usize> for BoundedVec<T, N> {
    type Output = T;

    /// Panics when `index` is not below `len`, as slice indexing does.
    fn index(&self, index: usize) -> &T {
        match self.get(index) {
            Some(v) => v,
            None => panic!(
                "index {index} out of range for a BoundedVec of {}",
                self.len
            ),
        }
    }
}

impl<T, const N: usize> core::ops::IndexMut<usize> for BoundedVec<T, N> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(index) {
            Some(v) => v,
            None => panic!("index {index} out of range for a BoundedVec of {len}"),
        }
    }
}

impl<'a, T, const N: usize> IntoIterator for &'a BoundedVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::iter::Flatten<core::slice::Iter<'a, Option<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.slots[..self.len].iter().flatten()
    }
}

impl<T, const N: usize> IntoIterator for BoundedVec<T, N> {
    type Item = T;
    type IntoIter = core::iter::Flatten<core::array::IntoIter<Option<T>, N>>;

    /// The values in order (the slots past `len` are `None`).
    fn into_iter(self) -> Self::IntoIter {
        self.slots.into_iter().flatten()
    }
}

/// Up to `N` plain values, usable as a slice (the slots past `len` hold `T::default()`).
#[derive(Clone, Copy)]
pub struct ArrayVec<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> ArrayVec<T, N> {
    /// An empty vector.
    pub fn new() -> Self {
        ArrayVec {
            items: [T::default(); N],
            len: 0,
        }
    }

    /// Appends `value`, or gives it back when the vector is full.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = value;
                self.len += 1;
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Removes and returns the last value.
    pub fn pop(&mut self) -> Option<T> {
        self.len = self.len.checked_sub(1)?;
        Some(core::mem::take(&mut self.items[self.len]))
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.items = [T::default(); N];
        self.len = 0;
    }

    /// A vector of the values `iter` yields, or `None` if there are more than `N`.
    pub fn try_from_iter(iter: impl IntoIterator<Item = T>) -> Option<Self> {
        let mut v = Self::new();
        for value in iter {
            v.push(value).ok()?;
        }
        Some(v)
    }

    /// Whether no more fit.
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    /// The values, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

impl<T: Copy + Default, const N: usize> Default for ArrayVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default, const N: usize> core::ops::Deref for ArrayVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy + Default, const N: usize> core::ops::DerefMut for ArrayVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for ArrayVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for ArrayVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Default + Eq, const N: usize> Eq for ArrayVec<T, N> {}

impl<T: Copy + Default, const N: usize> IntoIterator for ArrayVec<T, N> {
    type Item = T;
    type IntoIter = core::iter::Take<core::array::IntoIter<T, N>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len)
    }
}

impl<'a, T: Copy + Default, const N: usize> IntoIterator for &'a ArrayVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// Up to `N` bytes of UTF-8 text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BoundedString<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

/// The text did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError;

impl<const N: usize> BoundedString<N> {
    /// An empty string.
    pub const fn new() -> Self {
        BoundedString {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Appends `s` whole, or nothing if it does not fit.
    pub fn push_str(&mut self, s: &str) -> Result<(), CapacityError> {
        let end = self.len.checked_add(s.len()).filter(|&e| e <= N);
        let end = end.ok_or(CapacityError)?;
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }

    /// Appends one character, or nothing if it does not fit.
    pub fn push(&mut self, c: char) -> Result<(), CapacityError> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so the prefix is UTF-8.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for BoundedString<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TryFrom<&str> for BoundedString<N> {
    type Error = CapacityError;

    fn try_from(s: &str) -> Result<Self, CapacityError> {
        let mut out = Self::new();
        out.push_str(s)?;
        Ok(out)
    }
}

impl<const N: usize> core::ops::Deref for BoundedString<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Write for BoundedString<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s).map_err(|_| fmt::Error)
    }
}

impl<const N: usize> fmt::Display for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq<str> for BoundedString<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for BoundedString<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A FIFO ring of up to `N` values.
#[derive(Clone, Copy, Debug)]
pub struct BoundedDeque<T: Copy + Default, const N: usize> {
    items: [T; N],
    head: usize,
    len: usize,
}

impl<T: Copy + Default, const N: usize> BoundedDeque<T, N> {
    /// An empty ring.
    pub fn new() -> Self {
        BoundedDeque {
            items: [T::default(); N],
            head: 0,
            len: 0,
        }
    }

    /// Appends at the back, or gives the value back when full.
    pub fn push_back(&mut self, value: T) -> Result<(), T> {
        if self.len == N {
            return Err(value);
        }
        self.items[(self.head + self.len) % N] = value;
        self.len += 1;
        Ok(())
    }

    /// Takes the value at the front.
    pub fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let v = self.items[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(v)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no more fit.
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The values front to back.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        (0..self.len).map(move |i| &self.items[(self.head + i) % N])
    }
}

impl<T: Copy + Default, const N: usize> Default for BoundedDeque<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u16),
        Pop,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u16>().prop_map(Op::Push),
            2 => Just(Op::Pop),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #[test]
        fn vec_behaves_like_a_capped_vec(ops in proptest::collection::vec(op(), 0..200)) {
            let mut v = BoundedVec::<u16, 8>::new();
            let mut model: Vec<u16> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(x) => {
                        let r = v.push(x);
                        if model.len() < 8 {
                            prop_assert_eq!(r, Ok(()));
                            model.push(x);
                        } else {
                            prop_assert_eq!(r, Err(x));
                        }
                    }
                    Op::Pop => prop_assert_eq!(v.pop(), model.pop()),
                    Op::Clear => {
                        v.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(v.len(), model.len());
                prop_assert!(v.iter().eq(model.iter()));
                prop_assert_eq!(v.last(), model.last());
                for i in 0..10 {
                    prop_assert_eq!(v.get(i), model.get(i));
                }
            }
        }

        #[test]
        fn array_vec_behaves_like_a_capped_vec(ops in proptest::collection::vec(op(), 0..200)) {
            let mut v = ArrayVec::<u16, 8>::new();
            let mut model: Vec<u16> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(x) => {
                        let r = v.push(x);
                        if model.len() < 8 {
                            prop_assert_eq!(r, Ok(()));
                            model.push(x);
                        } else {
                            prop_assert_eq!(r, Err(x));
                        }
                    }
                    Op::Pop => prop_assert_eq!(v.pop(), model.pop()),
                    Op::Clear => {
                        v.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(v.as_slice(), model.as_slice());
            }
        }

        #[test]
        fn deque_behaves_like_a_capped_vecdeque(ops in proptest::collection::vec(op(), 0..200)) {
            let mut d = BoundedDeque::<u16, 5>::new();
            let mut model: VecDeque<u16> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(x) => {
                        let r = d.push_back(x);
                        if model.len() < 5 {
                            prop_assert_eq!(r, Ok(()));
                            model.push_back(x);
                        } else {
                            prop_assert_eq!(r, Err(x));
                        }
                    }
                    Op::Pop => prop_assert_eq!(d.pop_front(), model.pop_front()),
                    Op::Clear => {
                        d.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(d.len(), model.len());
                prop_assert!(d.iter().eq(model.iter()));
            }
        }

        #[test]
        fn string_keeps_whole_pieces(pieces in proptest::collection::vec(".{0,6}", 0..12)) {
            let mut s = BoundedString::<16>::new();
            let mut model = std::string::String::new();
            for p in &pieces {
                if model.len() + p.len() <= 16 {
                    prop_assert!(s.push_str(p).is_ok());
                    model.push_str(p);
                } else {
                    prop_assert_eq!(s.push_str(p), Err(CapacityError));
                }
                prop_assert_eq!(s.as_str(), model.as_str());
            }
        }
    }

    #[test]
    fn indexing_and_equality() {
        let v = BoundedVec::<u8, 3>::from_slice(&[1, 2, 3]).unwrap();
        assert_eq!(v[2], 3);
        assert!(BoundedVec::<u8, 2>::from_slice(&[1, 2, 3]).is_none());
        assert_eq!(v.clone(), v);
        let s = BoundedString::<4>::try_from("abcd").unwrap();
        assert_eq!(s, "abcd");
        assert!(BoundedString::<3>::try_from("abcd").is_err());
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn indexing_past_the_end_panics_like_a_slice() {
        let v = BoundedVec::<u8, 3>::from_slice(&[1]).unwrap();
        let _ = v[1];
    }
}
