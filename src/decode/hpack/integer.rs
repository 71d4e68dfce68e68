//! HPACK prefix integers (RFC 7541 §5.1): indices, string lengths and table sizes are
//! all coded this way, and every one of them comes from untrusted bytes, so decoding
//! caps the value at 2^32 - 1 and the encoding at five continuation bytes.

/// Why a prefix integer could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntegerError {
    /// The input ends before the last continuation byte.
    #[error("input ends inside a prefix integer")]
    Truncated,
    /// The value exceeds 2^32 - 1, or the encoding is longer than any such value needs.
    #[error("prefix integer exceeds 2^32 - 1")]
    Overflow,
}

/// Five continuation bytes carry 35 bits: enough for any `u32` after the prefix.
const MAX_CONTINUATION_BYTES: usize = 5;

/// Decodes a prefix integer whose prefix is the low `prefix_bits` bits of `input[0]`
/// (clamped to 1..=8; the bits above belong to the caller). Returns the value and the
/// number of bytes it used.
pub fn decode_integer(input: &[u8], prefix_bits: u8) -> Result<(u32, usize), IntegerError> {
    let bits = prefix_bits.clamp(1, 8);
    let prefix_max: u32 = (1u32 << bits) - 1;
    let first = *input.first().ok_or(IntegerError::Truncated)?;
    let prefix = u32::from(first) & prefix_max;
    if prefix < prefix_max {
        return Ok((prefix, 1));
    }
    let mut value = u64::from(prefix_max);
    for (i, &byte) in input
        .iter()
        .skip(1)
        .take(MAX_CONTINUATION_BYTES)
        .enumerate()
    {
        // i < 5, so the shift is at most 28 and the sum stays far below u64::MAX.
        value += u64::from(byte & 0x7f) << (7 * i);
        if value > u64::from(u32::MAX) {
            return Err(IntegerError::Overflow);
        }
        if byte & 0x80 == 0 {
            let value = u32::try_from(value).map_err(|_| IntegerError::Overflow)?;
            return Ok((value, i + 2));
        }
    }
    if input.len() > MAX_CONTINUATION_BYTES {
        Err(IntegerError::Overflow)
    } else {
        Err(IntegerError::Truncated)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test-only encoder: `high_bits` are the representation bits above the prefix.
    pub(crate) fn encode_integer(value: u32, prefix_bits: u8, high_bits: u8) -> Vec<u8> {
        let prefix_max = (1u32 << prefix_bits) - 1;
        if value < prefix_max {
            return vec![high_bits | value as u8];
        }
        let mut out = vec![high_bits | prefix_max as u8];
        let mut rest = value - prefix_max;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
        out
    }

    #[test]
    fn rfc_examples() {
        // C.1.1: 10 in a 5-bit prefix.
        assert_eq!(decode_integer(&[0x0a], 5), Ok((10, 1)));
        // Bits above the prefix are ignored.
        assert_eq!(decode_integer(&[0xea], 5), Ok((10, 1)));
        // C.1.2: 1337 in a 5-bit prefix.
        assert_eq!(decode_integer(&[0x1f, 0x9a, 0x0a], 5), Ok((1337, 3)));
        // C.1.3: 42 in an 8-bit prefix, trailing bytes untouched.
        assert_eq!(decode_integer(&[0x2a, 0xff], 8), Ok((42, 1)));
    }

    #[test]
    fn limits() {
        assert_eq!(decode_integer(&[], 5), Err(IntegerError::Truncated));
        assert_eq!(decode_integer(&[0x1f], 5), Err(IntegerError::Truncated));
        assert_eq!(
            decode_integer(&[0x1f, 0x80], 5),
            Err(IntegerError::Truncated)
        );
        // u32::MAX fits exactly; one more overflows.
        let max = encode_integer(u32::MAX, 7, 0x80);
        assert_eq!(decode_integer(&max, 7), Ok((u32::MAX, max.len())));
        assert_eq!(
            decode_integer(&[0x7f, 0x81, 0xff, 0xff, 0xff, 0x0f], 7),
            Err(IntegerError::Overflow)
        );
        // Endless zero continuation bytes are refused after five.
        assert_eq!(
            decode_integer(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 5),
            Err(IntegerError::Overflow)
        );
        // Five continuation bytes of small value are fine.
        assert_eq!(
            decode_integer(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x00], 5),
            Ok((31, 6))
        );
    }

    #[test]
    fn round_trips() {
        for prefix in 1..=8u8 {
            for value in [
                0,
                1,
                30,
                31,
                127,
                128,
                255,
                256,
                1337,
                65535,
                1 << 28,
                u32::MAX,
            ] {
                let bytes = encode_integer(value, prefix, 0);
                assert_eq!(decode_integer(&bytes, prefix), Ok((value, bytes.len())));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::test_rng::XorShift(0x1234_5678_9abc_def1);
        for _ in 0..20_000 {
            let bytes = rng.bytes(8);
            let len = usize::from(bytes[0] % 9);
            if let Ok((_, used)) = decode_integer(&bytes[..len], bytes[1] % 10) {
                assert!(used <= len);
            }
        }
    }
}
