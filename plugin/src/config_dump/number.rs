//! Lenient numbers: protobuf's JSON mapping writes 64-bit integers as strings, and YAML printers
//! sometimes quote numbers, so every numeric field accepts both forms.

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

fn to_u32<E: serde::de::Error>(raw: NumberOrString) -> Result<u32, E> {
    match raw {
        NumberOrString::Number(n) => u32::try_from(n).map_err(|_| E::custom(format!("{n} is out of range"))),
        NumberOrString::String(s) => s.trim().parse().map_err(|_| E::custom(format!("{s:?} is not a number"))),
    }
}

/// An optional `u32` given as a number or a string.
pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<NumberOrString>::deserialize(d)?.map(to_u32).transpose()
}

/// A list of `u32`, each given as a number or a string.
pub(crate) fn vec_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    Option::<Vec<NumberOrString>>::deserialize(d)?.unwrap_or_default().into_iter().map(to_u32).collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

/// A list that Istio 1.5's struct-form configs sometimes wrote as a single object.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::Many(v)) => v,
        Some(OneOrMany::One(x)) => vec![x],
    })
}

/// `filter_metadata`: a map of maps, keeping only the string values of the inner maps, as vectors.
/// Filter name → `(key, value)` string pairs.
pub(crate) type StringMaps = Vec<(String, Vec<(String, String)>)>;

pub(crate) fn string_maps<'de, D: Deserializer<'de>>(d: D) -> Result<StringMaps, D::Error> {
    struct Outer;
    impl<'de> serde::de::Visitor<'de> for Outer {
        type Value = StringMaps;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("filter_metadata: a map of filter names to maps")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(filter) = map.next_key::<String>()? {
                let Inner(mut values) = map.next_value::<Inner>()?;
                values.shrink_to_fit();
                out.push((filter, values));
            }
            out.shrink_to_fit();
            Ok(out)
        }
    }
    struct Inner(Vec<(String, String)>);
    impl<'de> Deserialize<'de> for Inner {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Inner;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map of metadata values")
                }
                fn visit_unit<E>(self) -> Result<Inner, E> {
                    Ok(Inner(Vec::new()))
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Inner, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        if let Scalar::String(s) = map.next_value::<Scalar>()? {
                            out.push((key, s));
                        }
                    }
                    Ok(Inner(out))
                }
            }
            d.deserialize_any(V)
        }
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        String(String),
        Other(serde::de::IgnoredAny),
    }
    d.deserialize_any(Outer)
}
