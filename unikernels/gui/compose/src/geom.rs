//! Rectangles on the screen, in pixels; every operation saturates, so no input overflows.

/// A rectangle: `x, y` its top-left corner, `w × h` its size. Empty when either is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

impl Rect {
    /// The rectangle `(x, y, w, h)`; a negative size is taken as 0.
    pub const fn new(x: i32, y: i32, w: i32, h: i32) -> Rect {
        Rect {
            x,
            y,
            w: if w < 0 { 0 } else { w },
            h: if h < 0 { 0 } else { h },
        }
    }

    /// One past the right edge.
    pub const fn right(&self) -> i32 {
        self.x.saturating_add(self.w)
    }

    /// One past the bottom edge.
    pub const fn bottom(&self) -> i32 {
        self.y.saturating_add(self.h)
    }

    /// Whether it covers no pixel.
    pub const fn is_empty(&self) -> bool {
        self.w <= 0 || self.h <= 0
    }

    /// The pixels both cover (empty if none).
    pub fn intersect(&self, o: &Rect) -> Rect {
        let x = self.x.max(o.x);
        let y = self.y.max(o.y);
        Rect::new(
            x,
            y,
            self.right().min(o.right()) - x,
            self.bottom().min(o.bottom()) - y,
        )
    }

    /// The smallest rectangle covering both (the other one if one is empty).
    pub fn union(&self, o: &Rect) -> Rect {
        if self.is_empty() {
            return *o;
        }
        if o.is_empty() {
            return *self;
        }
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        Rect::new(
            x,
            y,
            self.right().max(o.right()) - x,
            self.bottom().max(o.bottom()) - y,
        )
    }

    /// Whether pixel `(px, py)` is inside.
    pub const fn contains(&self, px: i32, py: i32) -> bool {
        px >= self.x && py >= self.y && px < self.right() && py < self.bottom()
    }

    /// Moved by `(dx, dy)`.
    pub const fn offset(&self, dx: i32, dy: i32) -> Rect {
        Rect::new(
            self.x.saturating_add(dx),
            self.y.saturating_add(dy),
            self.w,
            self.h,
        )
    }

    /// Grown by `left, top, right, bottom` pixels on each side.
    pub const fn grow(&self, left: i32, top: i32, right: i32, bottom: i32) -> Rect {
        Rect::new(
            self.x.saturating_sub(left),
            self.y.saturating_sub(top),
            self.w.saturating_add(left).saturating_add(right),
            self.h.saturating_add(top).saturating_add(bottom),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rect() -> impl Strategy<Value = Rect> {
        // Client input reaches a `Rect` as u16 values placed on a screen, so this range
        // covers every rectangle the gui qube makes.
        (
            -70_000i32..70_000,
            -70_000i32..70_000,
            -10i32..140_000,
            -10i32..140_000,
        )
            .prop_map(|(x, y, w, h)| Rect::new(x, y, w, h))
    }

    #[test]
    fn intersection_and_union() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, 5, 10, 10);
        assert_eq!(a.intersect(&b), Rect::new(5, 5, 5, 5));
        assert_eq!(a.union(&b), Rect::new(0, 0, 15, 15));
        assert!(a.intersect(&Rect::new(10, 0, 5, 5)).is_empty());
        assert_eq!(Rect::default().union(&b), b);
    }

    proptest! {
        /// A pixel is in the intersection exactly when it is in both; the union covers both.
        #[test]
        fn intersection_is_exact(a in rect(), b in rect(), px in -50i32..50, py in -50i32..50) {
            let i = a.intersect(&b);
            prop_assert_eq!(i.contains(px, py), a.contains(px, py) && b.contains(px, py));
            let u = a.union(&b);
            if a.contains(px, py) || b.contains(px, py) {
                prop_assert!(u.contains(px, py));
            }
        }
    }
}
