//! A QEMU TCG plugin counting executions of every translated block, and the reader of what it
//! writes (for xtask). See the README.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod ffi;

/// One line of the plugin's output: a block's start address, its instructions and how often
/// it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Virtual address of its first instruction (in whatever address space ran it).
    pub addr: u64,
    /// Instructions in the block.
    pub insns: u64,
    /// Times it ran.
    pub runs: u64,
}

impl Block {
    /// Formats the line the plugin writes.
    pub fn line(&self) -> String {
        format!("{:#x} {} {}", self.addr, self.insns, self.runs)
    }

    /// Reads a line written by [`Block::line`].
    pub fn parse(line: &str) -> Option<Block> {
        let mut f = line.split_whitespace();
        let addr = u64::from_str_radix(f.next()?.strip_prefix("0x")?, 16).ok()?;
        let insns = f.next()?.parse().ok()?;
        let runs = f.next()?.parse().ok()?;
        f.next().is_none().then_some(Block { addr, insns, runs })
    }
}

#[cfg(test)]
mod tests {
    use super::Block;

    #[test]
    fn lines_round_trip() {
        let b = Block {
            addr: 0x10_2040,
            insns: 7,
            runs: 123_456,
        };
        assert_eq!(Block::parse(&b.line()), Some(b));
        assert_eq!(Block::parse("0x10 1"), None);
        assert_eq!(Block::parse("16 1 2"), None);
        assert_eq!(Block::parse("0x10 1 2 3"), None);
    }
}
