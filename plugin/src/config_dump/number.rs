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

/// `filter_metadata`: a map of maps, keeping only the string values of the inner maps.
pub(crate) fn string_maps<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        String(String),
        Other(serde::de::IgnoredAny),
    }
    let raw: Option<std::collections::BTreeMap<String, Option<std::collections::BTreeMap<String, Scalar>>>> =
        Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(filter, values)| {
            let strings = values
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Scalar::String(s) => Some((k, s)),
                    Scalar::Other(_) => None,
                })
                .collect();
            (filter, strings)
        })
        .collect())
}
