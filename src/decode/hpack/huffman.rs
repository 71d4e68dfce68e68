//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B). Header strings, `:path` included,
//! are usually Huffman-coded, so every decoded request goes through here: decoding is a
//! 4-bit state machine (one table step per nibble, no per-bit branching, no allocation
//! beyond the output) built once, at first use, from the code table below.

use std::sync::OnceLock;

/// The code of each symbol, right-aligned, and its length in bits: bytes 0..=255, then
/// EOS (256). Transcribed from RFC 7541 Appendix B.
pub(crate) const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),     //   0
    (0x7fffd8, 23),   //   1
    (0xfffffe2, 28),  //   2
    (0xfffffe3, 28),  //   3
    (0xfffffe4, 28),  //   4
    (0xfffffe5, 28),  //   5
    (0xfffffe6, 28),  //   6
    (0xfffffe7, 28),  //   7
    (0xfffffe8, 28),  //   8
    (0xffffea, 24),   //   9
    (0x3ffffffc, 30), //  10
    (0xfffffe9, 28),  //  11
    (0xfffffea, 28),  //  12
    (0x3ffffffd, 30), //  13
    (0xfffffeb, 28),  //  14
    (0xfffffec, 28),  //  15
    (0xfffffed, 28),  //  16
    (0xfffffee, 28),  //  17
    (0xfffffef, 28),  //  18
    (0xffffff0, 28),  //  19
    (0xffffff1, 28),  //  20
    (0xffffff2, 28),  //  21
    (0x3ffffffe, 30), //  22
    (0xffffff3, 28),  //  23
    (0xffffff4, 28),  //  24
    (0xffffff5, 28),  //  25
    (0xffffff6, 28),  //  26
    (0xffffff7, 28),  //  27
    (0xffffff8, 28),  //  28
    (0xffffff9, 28),  //  29
    (0xffffffa, 28),  //  30
    (0xffffffb, 28),  //  31
    (0x14, 6),        //  32 ' '
    (0x3f8, 10),      //  33 '!'
    (0x3f9, 10),      //  34 '"'
    (0xffa, 12),      //  35 '#'
    (0x1ff9, 13),     //  36 '$'
    (0x15, 6),        //  37 '%'
    (0xf8, 8),        //  38 '&'
    (0x7fa, 11),      //  39 "'"
    (0x3fa, 10),      //  40 '('
    (0x3fb, 10),      //  41 ')'
    (0xf9, 8),        //  42 '*'
    (0x7fb, 11),      //  43 '+'
    (0xfa, 8),        //  44 ','
    (0x16, 6),        //  45 '-'
    (0x17, 6),        //  46 '.'
    (0x18, 6),        //  47 '/'
    (0x0, 5),         //  48 '0'
    (0x1, 5),         //  49 '1'
    (0x2, 5),         //  50 '2'
    (0x19, 6),        //  51 '3'
    (0x1a, 6),        //  52 '4'
    (0x1b, 6),        //  53 '5'
    (0x1c, 6),        //  54 '6'
    (0x1d, 6),        //  55 '7'
    (0x1e, 6),        //  56 '8'
    (0x1f, 6),        //  57 '9'
    (0x5c, 7),        //  58 ':'
    (0xfb, 8),        //  59 ';'
    (0x7ffc, 15),     //  60 '<'
    (0x20, 6),        //  61 '='
    (0xffb, 12),      //  62 '>'
    (0x3fc, 10),      //  63 '?'
    (0x1ffa, 13),     //  64 '@'
    (0x21, 6),        //  65 'A'
    (0x5d, 7),        //  66 'B'
    (0x5e, 7),        //  67 'C'
    (0x5f, 7),        //  68 'D'
    (0x60, 7),        //  69 'E'
    (0x61, 7),        //  70 'F'
    (0x62, 7),        //  71 'G'
    (0x63, 7),        //  72 'H'
    (0x64, 7),        //  73 'I'
    (0x65, 7),        //  74 'J'
    (0x66, 7),        //  75 'K'
    (0x67, 7),        //  76 'L'
    (0x68, 7),        //  77 'M'
    (0x69, 7),        //  78 'N'
    (0x6a, 7),        //  79 'O'
    (0x6b, 7),        //  80 'P'
    (0x6c, 7),        //  81 'Q'
    (0x6d, 7),        //  82 'R'
    (0x6e, 7),        //  83 'S'
    (0x6f, 7),        //  84 'T'
    (0x70, 7),        //  85 'U'
    (0x71, 7),        //  86 'V'
    (0x72, 7),        //  87 'W'
    (0xfc, 8),        //  88 'X'
    (0x73, 7),        //  89 'Y'
    (0xfd, 8),        //  90 'Z'
    (0x1ffb, 13),     //  91 '['
    (0x7fff0, 19),    //  92 '\\'
    (0x1ffc, 13),     //  93 ']'
    (0x3ffc, 14),     //  94 '^'
    (0x22, 6),        //  95 '_'
    (0x7ffd, 15),     //  96 '`'
    (0x3, 5),         //  97 'a'
    (0x23, 6),        //  98 'b'
    (0x4, 5),         //  99 'c'
    (0x24, 6),        // 100 'd'
    (0x5, 5),         // 101 'e'
    (0x25, 6),        // 102 'f'
    (0x26, 6),        // 103 'g'
    (0x27, 6),        // 104 'h'
    (0x6, 5),         // 105 'i'
    (0x74, 7),        // 106 'j'
    (0x75, 7),        // 107 'k'
    (0x28, 6),        // 108 'l'
    (0x29, 6),        // 109 'm'
    (0x2a, 6),        // 110 'n'
    (0x7, 5),         // 111 'o'
    (0x2b, 6),        // 112 'p'
    (0x76, 7),        // 113 'q'
    (0x2c, 6),        // 114 'r'
    (0x8, 5),         // 115 's'
    (0x9, 5),         // 116 't'
    (0x2d, 6),        // 117 'u'
    (0x77, 7),        // 118 'v'
    (0x78, 7),        // 119 'w'
    (0x79, 7),        // 120 'x'
    (0x7a, 7),        // 121 'y'
    (0x7b, 7),        // 122 'z'
    (0x7ffe, 15),     // 123 '{'
    (0x7fc, 11),      // 124 '|'
    (0x3ffd, 14),     // 125 '}'
    (0x1ffd, 13),     // 126 '~'
    (0xffffffc, 28),  // 127
    (0xfffe6, 20),    // 128
    (0x3fffd2, 22),   // 129
    (0xfffe7, 20),    // 130
    (0xfffe8, 20),    // 131
    (0x3fffd3, 22),   // 132
    (0x3fffd4, 22),   // 133
    (0x3fffd5, 22),   // 134
    (0x7fffd9, 23),   // 135
    (0x3fffd6, 22),   // 136
    (0x7fffda, 23),   // 137
    (0x7fffdb, 23),   // 138
    (0x7fffdc, 23),   // 139
    (0x7fffdd, 23),   // 140
    (0x7fffde, 23),   // 141
    (0xffffeb, 24),   // 142
    (0x7fffdf, 23),   // 143
    (0xffffec, 24),   // 144
    (0xffffed, 24),   // 145
    (0x3fffd7, 22),   // 146
    (0x7fffe0, 23),   // 147
    (0xffffee, 24),   // 148
    (0x7fffe1, 23),   // 149
    (0x7fffe2, 23),   // 150
    (0x7fffe3, 23),   // 151
    (0x7fffe4, 23),   // 152
    (0x1fffdc, 21),   // 153
    (0x3fffd8, 22),   // 154
    (0x7fffe5, 23),   // 155
    (0x3fffd9, 22),   // 156
    (0x7fffe6, 23),   // 157
    (0x7fffe7, 23),   // 158
    (0xffffef, 24),   // 159
    (0x3fffda, 22),   // 160
    (0x1fffdd, 21),   // 161
    (0xfffe9, 20),    // 162
    (0x3fffdb, 22),   // 163
    (0x3fffdc, 22),   // 164
    (0x7fffe8, 23),   // 165
    (0x7fffe9, 23),   // 166
    (0x1fffde, 21),   // 167
    (0x7fffea, 23),   // 168
    (0x3fffdd, 22),   // 169
    (0x3fffde, 22),   // 170
    (0xfffff0, 24),   // 171
    (0x1fffdf, 21),   // 172
    (0x3fffdf, 22),   // 173
    (0x7fffeb, 23),   // 174
    (0x7fffec, 23),   // 175
    (0x1fffe0, 21),   // 176
    (0x1fffe1, 21),   // 177
    (0x3fffe0, 22),   // 178
    (0x1fffe2, 21),   // 179
    (0x7fffed, 23),   // 180
    (0x3fffe1, 22),   // 181
    (0x7fffee, 23),   // 182
    (0x7fffef, 23),   // 183
    (0xfffea, 20),    // 184
    (0x3fffe2, 22),   // 185
    (0x3fffe3, 22),   // 186
    (0x3fffe4, 22),   // 187
    (0x7ffff0, 23),   // 188
    (0x3fffe5, 22),   // 189
    (0x3fffe6, 22),   // 190
    (0x7ffff1, 23),   // 191
    (0x3ffffe0, 26),  // 192
    (0x3ffffe1, 26),  // 193
    (0xfffeb, 20),    // 194
    (0x7fff1, 19),    // 195
    (0x3fffe7, 22),   // 196
    (0x7ffff2, 23),   // 197
    (0x3fffe8, 22),   // 198
    (0x1ffffec, 25),  // 199
    (0x3ffffe2, 26),  // 200
    (0x3ffffe3, 26),  // 201
    (0x3ffffe4, 26),  // 202
    (0x7ffffde, 27),  // 203
    (0x7ffffdf, 27),  // 204
    (0x3ffffe5, 26),  // 205
    (0xfffff1, 24),   // 206
    (0x1ffffed, 25),  // 207
    (0x7fff2, 19),    // 208
    (0x1fffe3, 21),   // 209
    (0x3ffffe6, 26),  // 210
    (0x7ffffe0, 27),  // 211
    (0x7ffffe1, 27),  // 212
    (0x3ffffe7, 26),  // 213
    (0x7ffffe2, 27),  // 214
    (0xfffff2, 24),   // 215
    (0x1fffe4, 21),   // 216
    (0x1fffe5, 21),   // 217
    (0x3ffffe8, 26),  // 218
    (0x3ffffe9, 26),  // 219
    (0xffffffd, 28),  // 220
    (0x7ffffe3, 27),  // 221
    (0x7ffffe4, 27),  // 222
    (0x7ffffe5, 27),  // 223
    (0xfffec, 20),    // 224
    (0xfffff3, 24),   // 225
    (0xfffed, 20),    // 226
    (0x1fffe6, 21),   // 227
    (0x3fffe9, 22),   // 228
    (0x1fffe7, 21),   // 229
    (0x1fffe8, 21),   // 230
    (0x7ffff3, 23),   // 231
    (0x3fffea, 22),   // 232
    (0x3fffeb, 22),   // 233
    (0x1ffffee, 25),  // 234
    (0x1ffffef, 25),  // 235
    (0xfffff4, 24),   // 236
    (0xfffff5, 24),   // 237
    (0x3ffffea, 26),  // 238
    (0x7ffff4, 23),   // 239
    (0x3ffffeb, 26),  // 240
    (0x7ffffe6, 27),  // 241
    (0x3ffffec, 26),  // 242
    (0x3ffffed, 26),  // 243
    (0x7ffffe7, 27),  // 244
    (0x7ffffe8, 27),  // 245
    (0x7ffffe9, 27),  // 246
    (0x7ffffea, 27),  // 247
    (0x7ffffeb, 27),  // 248
    (0xffffffe, 28),  // 249
    (0x7ffffec, 27),  // 250
    (0x7ffffed, 27),  // 251
    (0x7ffffee, 27),  // 252
    (0x7ffffef, 27),  // 253
    (0x7fffff0, 27),  // 254
    (0x3ffffee, 26),  // 255
    (0x3fffffff, 30), // 256 EOS
];

/// The symbol number of EOS, which must never appear inside a string.
pub(crate) const EOS: usize = 256;

/// Why a Huffman-coded string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// The 30-bit EOS code appeared inside the string (RFC 7541 §5.2 forbids it).
    #[error("Huffman string contains the EOS symbol")]
    EosInString,
    /// The string ends with 8 or more bits of EOS prefix: padding is at most 7 bits.
    #[error("Huffman padding is longer than 7 bits")]
    PaddingTooLong,
    /// The string ends inside a code that is not a prefix of EOS (padding must be ones).
    #[error("Huffman padding is not a prefix of the EOS code")]
    PaddingNotEos,
}

/// The largest number of bytes `encoded_len` Huffman-coded bytes can decode to: the
/// shortest code is 5 bits.
pub fn max_decoded_len(encoded_len: usize) -> usize {
    encoded_len.saturating_mul(8) / 5
}

/// Decodes the Huffman-coded `input`, appending the bytes to `out`. On error `out` may
/// hold a partial result.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let machine = machine();
    out.reserve(max_decoded_len(input.len()));
    let mut state = 0u8;
    for &byte in input {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = machine.steps[usize::from(state)][usize::from(nibble)];
            if step.flags & STEP_FAIL != 0 {
                return Err(HuffmanError::EosInString);
            }
            if step.flags & STEP_EMIT != 0 {
                out.push(step.symbol);
            }
            state = step.next;
        }
    }
    match machine.end[usize::from(state)] {
        EndState::Accept => Ok(()),
        EndState::PaddingTooLong => Err(HuffmanError::PaddingTooLong),
        EndState::PaddingNotEos => Err(HuffmanError::PaddingNotEos),
    }
}

/// The step emits `symbol`.
const STEP_EMIT: u8 = 1;
/// The nibble completes EOS (or, for an incomplete code table, a missing code).
const STEP_FAIL: u8 = 2;

/// What one nibble does from one state. States are the internal nodes of the code tree
/// (the root is 0); since the shortest code is 5 bits, a nibble completes at most one.
#[derive(Debug, Clone, Copy, Default)]
struct Step {
    next: u8,
    symbol: u8,
    flags: u8,
}

/// Whether a string may end in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndState {
    /// At a symbol boundary, or after at most 7 bits of EOS prefix.
    Accept,
    PaddingTooLong,
    PaddingNotEos,
}

/// The decoding automaton: 256 states (a complete prefix code of 257 symbols has 256
/// internal nodes) times 16 nibbles.
struct Machine {
    steps: [[Step; 16]; 256],
    end: [EndState; 256],
}

fn machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(|| build_machine(&CODES))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Missing,
    Node(usize),
    Leaf(usize),
}

/// The binary code tree: per internal node its two children, its depth and whether the
/// path to it is all ones (a prefix of EOS).
struct CodeTree {
    children: Vec<[Child; 2]>,
    depth: Vec<u32>,
    all_ones: Vec<bool>,
}

fn build_tree(codes: &[(u32, u8)]) -> CodeTree {
    let mut tree = CodeTree {
        children: vec![[Child::Missing; 2]],
        depth: vec![0],
        all_ones: vec![true],
    };
    for (symbol, &(code, len)) in codes.iter().enumerate() {
        let mut node = 0usize;
        for shift in (0..u32::from(len)).rev() {
            let bit = ((code >> shift) & 1) as usize;
            let Some(slot) = tree.children.get(node).map(|c| c[bit]) else {
                break;
            };
            if shift == 0 {
                tree.children[node][bit] = Child::Leaf(symbol);
            } else if let Child::Node(next) = slot {
                node = next;
            } else {
                let next = tree.children.len();
                tree.children.push([Child::Missing; 2]);
                tree.depth.push(tree.depth[node] + 1);
                tree.all_ones.push(tree.all_ones[node] && bit == 1);
                tree.children[node][bit] = Child::Node(next);
                node = next;
            }
        }
    }
    tree
}

fn build_machine(codes: &[(u32, u8)]) -> Machine {
    let tree = build_tree(codes);
    let mut machine = Machine {
        steps: [[Step::default(); 16]; 256],
        end: [EndState::PaddingNotEos; 256],
    };
    // A correct table has exactly 256 internal nodes (checked by a test); `min` keeps a
    // wrong one from indexing out of bounds.
    for state in 0..tree.children.len().min(256) {
        for nibble in 0..16u8 {
            let mut node = state;
            let mut step = Step::default();
            for shift in (0..4).rev() {
                let bit = usize::from((nibble >> shift) & 1);
                match tree.children[node][bit] {
                    Child::Node(next) => node = next,
                    Child::Leaf(symbol) => match u8::try_from(symbol) {
                        Ok(byte) if symbol != EOS => {
                            step.flags |= STEP_EMIT;
                            step.symbol = byte;
                            node = 0;
                        }
                        _ => {
                            step.flags = STEP_FAIL;
                            break;
                        }
                    },
                    Child::Missing => {
                        step.flags = STEP_FAIL;
                        break;
                    }
                }
            }
            step.next = u8::try_from(node).unwrap_or(0);
            machine.steps[state][usize::from(nibble)] = step;
        }
        machine.end[state] = if state == 0 {
            EndState::Accept
        } else if !tree.all_ones[state] {
            EndState::PaddingNotEos
        } else if tree.depth[state] <= 7 {
            EndState::Accept
        } else {
            EndState::PaddingTooLong
        };
    }
    machine
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test-only encoder from the same table: MSB-first codes, padded with ones.
    pub(crate) fn huffman_encode(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut acc: u64 = 0;
        let mut bits: u32 = 0;
        for &byte in input {
            let (code, len) = CODES[usize::from(byte)];
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
            acc &= (1u64 << bits) - 1;
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
        }
        out
    }

    fn decode_vec(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, &mut out).map(|()| out)
    }

    use crate::test_rng::XorShift;

    #[test]
    fn code_table_is_a_complete_canonical_prefix_code() {
        let tree = build_tree(&CODES);
        assert_eq!(tree.children.len(), 256, "internal nodes");
        assert!(tree
            .children
            .iter()
            .all(|c| c.iter().all(|ch| *ch != Child::Missing)));
        // Canonical: sorted by (length, symbol), each code is the previous one plus one,
        // shifted left when the length grows.
        let mut order: Vec<usize> = (0..CODES.len()).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        let mut expected: u32 = 0;
        let mut prev_len = CODES[order[0]].1;
        for (i, &s) in order.iter().enumerate() {
            let (code, len) = CODES[s];
            if i > 0 {
                expected = (expected + 1) << (len - prev_len);
            }
            assert_eq!(code, expected, "symbol {s}");
            prev_len = len;
        }
        assert_eq!(CODES[EOS], (0x3fff_ffff, 30));
    }

    #[test]
    fn decodes_rfc_examples() {
        // RFC 7541 C.4.1 and C.6.1 strings.
        let cases: [(&[u8], &[u8]); 6] = [
            (
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                b"www.example.com",
            ),
            (&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], b"no-cache"),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f],
                b"custom-key",
            ),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
                b"custom-value",
            ),
            (&[0x64, 0x02], b"302"),
            (&[0xae, 0xc3, 0x77, 0x1a, 0x4b], b"private"),
        ];
        for (encoded, plain) in cases {
            assert_eq!(decode_vec(encoded).unwrap(), plain);
            assert_eq!(huffman_encode(plain), encoded);
        }
        assert_eq!(decode_vec(&[]).unwrap(), b"");
    }

    #[test]
    fn round_trips_random_strings() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let len = (rng.next() % 64) as usize;
            let plain: Vec<u8> = (0..len)
                .map(|_| {
                    // Mostly ASCII, sometimes any byte (long codes).
                    let r = rng.next();
                    if r.is_multiple_of(4) {
                        (r >> 8) as u8
                    } else {
                        b' ' + ((r >> 8) % 95) as u8
                    }
                })
                .collect();
            let encoded = huffman_encode(&plain);
            assert_eq!(decode_vec(&encoded).unwrap(), plain);
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let plain: Vec<u8> = (0..=255u8).collect();
        assert_eq!(decode_vec(&huffman_encode(&plain)).unwrap(), plain);
    }

    #[test]
    fn padding_rules() {
        // 'a' is 00011 (5 bits): 3 bits of ones pad it.
        assert_eq!(decode_vec(&[0b0001_1111]).unwrap(), b"a");
        // Padding of zeros is not a prefix of EOS.
        assert_eq!(decode_vec(&[0b0001_1000]), Err(HuffmanError::PaddingNotEos));
        // A whole byte of ones after a complete symbol: 8 bits of padding.
        assert_eq!(
            decode_vec(&[0b0001_1111, 0xff]),
            Err(HuffmanError::PaddingTooLong)
        );
        assert_eq!(decode_vec(&[0xff]), Err(HuffmanError::PaddingTooLong));
        // 7 bits of padding are fine: '0' (00000) + 'a'... use "00" = 10 bits + 6 ones.
        let two_zeros = huffman_encode(b"00");
        assert_eq!(two_zeros, [0x00, 0x3f]);
        assert_eq!(decode_vec(&two_zeros).unwrap(), b"00");
        // EOS (30 ones) inside the string.
        assert_eq!(
            decode_vec(&[0xff, 0xff, 0xff, 0xfc]),
            Err(HuffmanError::EosInString)
        );
        assert_eq!(
            decode_vec(&[0x1f, 0xff, 0xff, 0xff, 0xff]),
            Err(HuffmanError::EosInString)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(12345);
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let len = (rng.next() % 40) as usize;
            let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            out.clear();
            if decode(&input, &mut out).is_ok() {
                assert!(out.len() <= max_decoded_len(input.len()));
            }
        }
    }
}
