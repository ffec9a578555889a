//! Bytes that do not compress, for tests that need a body to take its size on disk: ferry
//! stores bodies LZ4-compressed when that is smaller (`src/store/body.rs`), so a run of one
//! byte would fill nothing. Included by the store's unit tests and by `tests/it`.

// `pub` for `tests/it`; inside the library the module is private to its tests.
#![allow(unreachable_pub)]

/// `size` pseudo-random bytes (xorshift64 from `seed`): LZ4 cannot shrink them.
pub fn incompressible(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
