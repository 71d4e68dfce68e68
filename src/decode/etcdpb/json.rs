//! Serde helpers that make our prost message structs print the canonical proto3 JSON
//! mapping (what `grpcurl` prints): bytes as padded standard base64, 64-bit integers as
//! strings, enums by name, default values left out. The message structs refer to these
//! helpers through `#[serde(serialize_with = ...)]` and `skip_serializing_if` attributes.

use base64::Engine;
use serde::ser::SerializeSeq;
use serde::Serializer;

/// True when a field holds its proto3 default value, which proto3 JSON leaves out.
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `bytes` fields: standard base64 with padding.
pub fn bytes<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(value))
}

/// `repeated bytes` fields.
pub fn bytes_list<S: Serializer>(values: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for value in values {
        seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(value))?;
    }
    seq.end()
}

/// `int64` fields are JSON strings, so that 64-bit values survive JavaScript readers.
pub fn i64_str<S: Serializer>(value: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// `uint64` fields are JSON strings too.
pub fn u64_str<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// `repeated uint64` fields.
pub fn u64_str_list<S: Serializer>(values: &[u64], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for value in values {
        seq.serialize_element(&value.to_string())?;
    }
    seq.end()
}

/// An enum value by its name, or by its number when the name is unknown (as protobuf's
/// JSON printers do for values added in a newer schema).
pub fn enum_value<S: Serializer>(
    name: Option<&'static str>,
    value: i32,
    s: S,
) -> Result<S::Ok, S::Error> {
    match name {
        Some(name) => s.serialize_str(name),
        None => s.serialize_i32(value),
    }
}

/// `repeated` enum fields.
pub fn enum_list<S: Serializer>(
    names: impl Fn(i32) -> Option<&'static str>,
    values: &[i32],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for &value in values {
        match names(value) {
            Some(name) => seq.serialize_element(name)?,
            None => seq.serialize_element(&value)?,
        }
    }
    seq.end()
}

/// Declares a protobuf enum: the prost `Enumeration`, its proto value names, and the
/// JSON serializers for a field (`Name::json`) and a repeated field (`Name::json_list`).
macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($variant:ident = $value:literal => $text:literal),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
        #[repr(i32)]
        $vis enum $name {
            $($variant = $value),*
        }

        impl $name {
            /// The value's name in the .proto schema, if the value is known.
            pub fn proto_name(value: i32) -> Option<&'static str> {
                match value {
                    $($value => Some($text),)*
                    _ => None,
                }
            }

            /// Serializes an enum field by name (proto3 JSON).
            pub fn json<S: ::serde::Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
                $crate::decode::etcdpb::json::enum_value(Self::proto_name(*value), *value, s)
            }

            /// Serializes a repeated enum field by names (proto3 JSON).
            #[allow(dead_code)]
            pub fn json_list<S: ::serde::Serializer>(
                values: &[i32],
                s: S,
            ) -> Result<S::Ok, S::Error> {
                $crate::decode::etcdpb::json::enum_list(Self::proto_name, values, s)
            }
        }
    };
}
pub(crate) use proto_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_print_proto3_json_forms() {
        let mut out = Vec::new();
        bytes(b"foo", &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(out, b"\"Zm9v\"");
        out.clear();
        i64_str(&-5, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(out, b"\"-5\"");
        out.clear();
        u64_str(&u64::MAX, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(out, b"\"18446744073709551615\"");
        assert!(is_default(&0i64));
        assert!(!is_default(&vec![1u8]));
    }
}
