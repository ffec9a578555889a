//! How a delivery's body is kept in `delivery_bodies`: LZ4-compressed when that makes it
//! smaller, as received otherwise (the row's `codec` says which; migration 0018).
//!
//! Why: a 7.7 KB GitHub push is three pages of SQLite's b-tree (a leaf cell and two overflow
//! pages), each written to the WAL by the intake writer and again into the database file by
//! the checkpointer; bodies were 38 % of the WAL's frames (BENCHMARKS.md, issue 12).
//! Compressed (2.3 KB) it is one leaf cell. LZ4 because it costs about 5 µs per push and
//! decompresses in 1 µs; zstd and deflate shrink JSON a little more for 3–12× the CPU.
//!
//! GitHub's bodies are compressed with a dictionary ([`LZ4_GITHUB`]): a push's key names and
//! URL templates, so even a push's first occurrence of them costs a reference, not the text.
//! 7.7 KB → 1.7 KB instead of 2.3 KB, which is what lets two bodies share a 4 KiB page (SQLite
//! puts one 2.3 KB cell on a page, and the rest of the page stays empty).
//!
//! A body is encoded by the hook request's own task ([`Stored::of`], before it queues for the
//! writer), so the one writer thread spends no time on it, and decoded in the store's reads
//! ([`decode`]), so nothing outside the store sees the difference.

use bytes::Bytes;

use super::DeliveryStatus;
use super::batch::{NewDelivery, REJECTED_BODY_KEEP};

/// The `codec` of a compressed body: LZ4's block format after the decoded size as a 4-byte
/// little-endian integer (`lz4_flex::block::compress_prepend_size`).
pub(super) const LZ4: &str = "lz4";

/// The `codec` of a GitHub body compressed as [`LZ4`] is, with [`GITHUB_DICTIONARY`].
pub(super) const LZ4_GITHUB: &str = "lz4+github1";

/// The dictionary of [`LZ4_GITHUB`]: octokit/webhooks' example push
/// (`payload-examples/api.github.com/push/with-new-branch.payload.json`, MIT; our
/// `tests/fixtures/github/push-branch-created.json`) with its owner and repository names,
/// numbers, commit ids and node ids blanked, so that it holds what every push shares and
/// nothing of one repository. Stored bodies need it as it is: never change this file (its
/// SHA-256 is pinned by a test); a new dictionary is a new codec name.
const GITHUB_DICTIONARY: &[u8] = include_bytes!("body/github-push.json");

/// Bodies shorter than this are kept as they are: compressing them saves no page.
const COMPRESS_FROM: usize = 512;

/// LZ4 never expands a byte into more than this many (a run of one byte at the format's limit),
/// so a stored size beyond `stored.len() * MAX_RATIO` is corruption, not a body to allocate.
const MAX_RATIO: usize = 255;

/// What is written to `delivery_bodies` for a delivery.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The bytes of the `body` column.
    pub(super) bytes: Bytes,
    /// The `codec` column: `None` when `bytes` is the body (or its start) as received.
    pub(super) codec: Option<&'static str>,
    /// `body_size`: the size received, when less than all of it is kept (a refused delivery
    /// keeps its first [`REJECTED_BODY_KEEP`] bytes).
    pub(super) size: Option<i64>,
}

impl Stored {
    /// What is kept of `d`'s body, compressed if that is smaller. Cuts a refused delivery's
    /// body to its start first, so a refused 1 MiB request costs no 1 MiB compression.
    pub(crate) fn of(d: &NewDelivery) -> Stored {
        let (kept, size) =
            if d.status == DeliveryStatus::Rejected && d.body.len() > REJECTED_BODY_KEEP {
                let size = i64::try_from(d.body.len()).unwrap_or(i64::MAX);
                (d.body.slice(..REJECTED_BODY_KEEP), Some(size))
            } else {
                (d.body.clone(), None)
            };
        // `sources::Source::Github`'s name (the store sits below `sources`).
        let (codec, dictionary) = match d.source.as_str() {
            "github" => (LZ4_GITHUB, GITHUB_DICTIONARY),
            _ => (LZ4, &[][..]),
        };
        match compress(&kept, dictionary) {
            Some(packed) => Stored {
                bytes: packed.into(),
                codec: Some(codec),
                size,
            },
            None => Stored {
                bytes: kept,
                codec: None,
                size,
            },
        }
    }
}

/// `body` LZ4-compressed (with `dictionary`, if not empty), or `None` when that would not make
/// it smaller (short bodies, already compressed ones) or it is too large for the 4-byte size in
/// front.
fn compress(body: &[u8], dictionary: &[u8]) -> Option<Vec<u8>> {
    if body.len() < COMPRESS_FROM || u32::try_from(body.len()).is_err() {
        return None;
    }
    let packed = lz4_flex::block::compress_prepend_size_with_dict(body, dictionary);
    (packed.len() < body.len()).then_some(packed)
}

/// Why a stored body cannot be decoded: a damaged row, or a codec this ferry does not know.
/// The reader keeps it as the delivery's `unreadable` (`deliveries.rs`) rather than failing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("unknown codec {0:?}")]
    UnknownCodec(String),
    #[error("LZ4 body shorter than its size")]
    Short,
    #[error("LZ4 body of {stored} bytes claims {claimed} decoded")]
    Claims { stored: usize, claimed: usize },
    #[error("LZ4: {0}")]
    Lz4(#[from] lz4_flex::block::DecompressError),
}

/// The body as received from a `delivery_bodies` row's `body` and `codec` (no row: empty).
pub(super) fn decode(bytes: Option<Vec<u8>>, codec: Option<&str>) -> Result<Vec<u8>, BodyError> {
    let bytes = bytes.unwrap_or_default();
    match codec {
        None => Ok(bytes),
        Some(LZ4) => decompress(&bytes, &[]),
        Some(LZ4_GITHUB) => decompress(&bytes, GITHUB_DICTIONARY),
        Some(other) => Err(BodyError::UnknownCodec(other.to_string())),
    }
}

/// The inverse of [`compress`], refusing a stored size that the stored bytes cannot hold, so a
/// damaged row costs an error, not a 4 GiB allocation.
fn decompress(packed: &[u8], dictionary: &[u8]) -> Result<Vec<u8>, BodyError> {
    let (size, block) = packed.split_first_chunk::<4>().ok_or(BodyError::Short)?;
    let size = usize::try_from(u32::from_le_bytes(*size)).unwrap_or(usize::MAX);
    if size > block.len().saturating_mul(MAX_RATIO) {
        return Err(BodyError::Claims {
            stored: block.len(),
            claimed: size,
        });
    }
    Ok(lz4_flex::block::decompress_with_dict(
        block, size, dictionary,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(status: DeliveryStatus, body: Vec<u8>) -> NewDelivery {
        let mut d = NewDelivery::internal("a", "generic", "push", body.into());
        d.status = status;
        d
    }

    fn github(body: Vec<u8>) -> NewDelivery {
        let mut d = delivery(DeliveryStatus::Received, body);
        d.source = "github".into();
        d
    }

    fn round_trip(stored: &Stored) -> Vec<u8> {
        decode(Some(stored.bytes.to_vec()), stored.codec).expect("decode")
    }

    #[test]
    fn a_json_push_is_stored_compressed_and_read_back_as_received() {
        let body = std::fs::read("bench/push-main.json").expect("push");
        let stored = Stored::of(&delivery(DeliveryStatus::Received, body.clone()));
        assert_eq!(stored.codec, Some(LZ4));
        assert!(
            stored.bytes.len() * 2 < body.len(),
            "{} of {}",
            stored.bytes.len(),
            body.len()
        );
        assert_eq!((round_trip(&stored), stored.size), (body, None));
    }

    /// With the dictionary a push of a repository it does not name (the bench's) takes under
    /// half a page, so two share one; without it, one 2.3 KB body takes a page of its own.
    #[test]
    fn a_github_push_is_compressed_with_the_dictionary_to_under_half_a_page() {
        let body = std::fs::read("bench/push-main.json").expect("push");
        let stored = Stored::of(&github(body.clone()));
        assert_eq!(stored.codec, Some(LZ4_GITHUB));
        assert!(stored.bytes.len() < 2000, "{} bytes", stored.bytes.len());
        assert_eq!(round_trip(&stored), body);
        let plain = Stored::of(&delivery(DeliveryStatus::Received, body));
        assert!(plain.bytes.len() > stored.bytes.len() + 500);
    }

    /// Stored bodies are decoded with this very dictionary: it must never change.
    #[test]
    fn the_github_dictionary_never_changes() {
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(GITHUB_DICTIONARY)),
            "9e572e58d16862750c02da444d3204126f6cc654ef9806936903ffa50ff6cd75",
            "a changed dictionary needs a new codec name"
        );
    }

    #[test]
    fn short_and_incompressible_bodies_are_kept_as_received() {
        let short = b"{\"ref\":\"refs/heads/main\"}".to_vec();
        let noise = crate::store::test_noise::incompressible(8192, 0);
        for body in [Vec::new(), short, noise] {
            let stored = Stored::of(&delivery(DeliveryStatus::Received, body.clone()));
            assert_eq!(stored.codec, None);
            assert_eq!(&stored.bytes[..], &body[..]);
            assert_eq!(round_trip(&stored), body);
        }
    }

    /// The most compressible bodies (one byte repeated, up to 16 MiB) stay within the ratio
    /// that [`decompress`] accepts: no real body is ever refused as damaged.
    #[test]
    fn the_most_compressible_bodies_read_back() {
        for size in [COMPRESS_FROM, 4096, 1024 * 1024, 16 * 1024 * 1024] {
            let body = vec![0u8; size];
            let stored = Stored::of(&delivery(DeliveryStatus::Received, body.clone()));
            assert_eq!(stored.codec, Some(LZ4));
            assert_eq!(round_trip(&stored), body, "{size} bytes");
            let stored = Stored::of(&github(body.clone()));
            assert_eq!(stored.codec, Some(LZ4_GITHUB));
            assert_eq!(round_trip(&stored), body, "{size} bytes, dictionary");
        }
    }

    #[test]
    fn a_refused_body_is_cut_to_its_start_before_compression() {
        let body = vec![b'x'; 1024 * 1024];
        let stored = Stored::of(&delivery(DeliveryStatus::Rejected, body.clone()));
        assert_eq!(stored.size, Some(1024 * 1024));
        assert_eq!(round_trip(&stored), &body[..REJECTED_BODY_KEEP]);
    }

    #[test]
    fn a_damaged_row_is_an_error_not_an_allocation() {
        let mut claims_4_gib = u32::MAX.to_le_bytes().to_vec();
        claims_4_gib.extend_from_slice(b"\x10x");
        for (bytes, codec, says) in [
            (claims_4_gib, Some(LZ4), "claims 4294967295 decoded"),
            (b"\x01\x00".to_vec(), Some(LZ4), "shorter than its size"),
            (b"\x40\x00\x00\x00\xff".to_vec(), Some(LZ4), "LZ4:"),
            (b"\x40\x00\x00\x00\xff".to_vec(), Some(LZ4_GITHUB), "LZ4:"),
            (b"x".to_vec(), Some("zip"), "unknown codec \"zip\""),
        ] {
            let err = decode(Some(bytes), codec).expect_err("damaged").to_string();
            assert!(err.contains(says), "{err}");
        }
        assert_eq!(decode(None, None).expect("no row"), b"");
    }
}
