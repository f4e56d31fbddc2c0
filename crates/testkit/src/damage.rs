//! Files damaged as a bad disk or a stray write would damage them, for the tests of
//! what a store does with them.

use std::path::Path;

/// How a file is damaged, at eight places spread over it.
#[derive(Clone, Copy, Debug)]
pub enum Damage {
    /// 64 bytes flipped (each XOR 0xa5) in the middle of the 4 KiB page at each
    /// place: records damaged, the page's header whole (a header damaged where a
    /// branch of a table's tree lies loses every record below it, which `ZeroPage`
    /// covers).
    Flip,
    /// The 4 KiB page holding each place zeroed.
    ZeroPage,
}

/// Damages the file at `path` in place; returns its bytes after the damage.
pub fn damage(path: &Path, how: Damage) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("the file to damage");
    let len = bytes.len();
    for part in 1..9 {
        let at = len * part / 9;
        match how {
            Damage::Flip => {
                let middle = (at / 4096 * 4096 + 2048).min(len.saturating_sub(64));
                bytes[middle..(middle + 64).min(len)]
                    .iter_mut()
                    .for_each(|b| *b ^= 0xa5);
            }
            Damage::ZeroPage => {
                let page = at / 4096 * 4096;
                bytes[page..(page + 4096).min(len)].fill(0);
            }
        }
    }
    std::fs::write(path, &bytes).expect("the damaged file written");
    bytes
}
