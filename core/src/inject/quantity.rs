//! Kubernetes resource quantities (`100m`, `1Gi`, `2e3`): validation and the canonical form the API
//! server writes back (`1000m` becomes `1`, `1024Mi` becomes `1Gi`), so injected resources read the same
//! as Istio's.

/// How a quantity was written, which decides how it is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// Parses a quantity and returns its canonical form, or why it is not a quantity.
pub fn canonical(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?} is not a quantity (e.g. 100m, 128Mi, 2)");
    let s = text.trim();
    if s.is_empty() || s != text {
        return Err(bad());
    }
    let (negative, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(bad());
    }
    let (format, exp10, exp2): (Format, i32, u32) = match suffix {
        "" => (Format::DecimalSi, 0, 0),
        "n" => (Format::DecimalSi, -9, 0),
        "u" => (Format::DecimalSi, -6, 0),
        "m" => (Format::DecimalSi, -3, 0),
        "k" => (Format::DecimalSi, 3, 0),
        "M" => (Format::DecimalSi, 6, 0),
        "G" => (Format::DecimalSi, 9, 0),
        "T" => (Format::DecimalSi, 12, 0),
        "P" => (Format::DecimalSi, 15, 0),
        "E" => (Format::DecimalSi, 18, 0),
        "Ki" => (Format::BinarySi, 0, 10),
        "Mi" => (Format::BinarySi, 0, 20),
        "Gi" => (Format::BinarySi, 0, 30),
        "Ti" => (Format::BinarySi, 0, 40),
        "Pi" => (Format::BinarySi, 0, 50),
        "Ei" => (Format::BinarySi, 0, 60),
        other => {
            let exp = other.strip_prefix(['e', 'E']).ok_or_else(bad)?;
            let exp: i32 = exp.parse().map_err(|_| bad())?;
            if !(-30..=30).contains(&exp) {
                return Err(bad());
            }
            (Format::DecimalExponent, exp, 0)
        }
    };
    // Value in nano-units, rounded up as Kubernetes does for sub-nano precision.
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut scale = exp10 + 9 - frac_part.len() as i32;
    let mut mantissa: i128 = 0;
    let mut round_up = false;
    for (i, d) in digits.bytes().enumerate() {
        let remaining = (digits.len() - i - 1) as i32;
        if scale + remaining < 0 {
            // This digit is below a nano-unit.
            round_up |= d != b'0';
            continue;
        }
        mantissa = mantissa.checked_mul(10).and_then(|m| m.checked_add(i128::from(d - b'0'))).ok_or_else(bad)?;
    }
    if scale < 0 {
        scale = 0;
    }
    let mut nanos = mantissa.checked_mul(10i128.checked_pow(scale as u32).ok_or_else(bad)?).ok_or_else(bad)?;
    nanos = nanos.checked_mul(1i128 << exp2).ok_or_else(bad)?;
    if round_up {
        nanos += 1;
    }
    if nanos > 9_223_372_036_854_775_807i128 * 1_000_000_000 {
        return Err(bad());
    }
    let sign = if negative && nanos != 0 { "-" } else { "" };
    Ok(format!("{sign}{}", render(nanos, format)))
}

/// Writes a non-negative nano-unit value in Kubernetes' canonical form for the format.
fn render(nanos: i128, format: Format) -> String {
    const NANO: i128 = 1_000_000_000;
    if nanos == 0 {
        return "0".into();
    }
    if format == Format::BinarySi && nanos % NANO == 0 && nanos / NANO >= 1024 {
        let mut value = nanos / NANO;
        let mut index = 0;
        while value % 1024 == 0 && index < 6 {
            value /= 1024;
            index += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][index];
        return format!("{value}{suffix}");
    }
    if format == Format::BinarySi && nanos % NANO == 0 {
        return (nanos / NANO).to_string();
    }
    // Decimal: the largest multiple-of-three exponent that keeps the mantissa whole.
    let mut value = nanos;
    let mut exp = -9;
    while value % 1000 == 0 && exp < 18 {
        value /= 1000;
        exp += 3;
    }
    if format == Format::DecimalExponent {
        return if exp == 0 { value.to_string() } else { format!("{value}e{exp}") };
    }
    let suffix = match exp {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{value}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn canonical_forms_match_kubernetes() {
        for (input, want) in [
            ("100m", "100m"),
            ("1000m", "1"),
            ("2000m", "2"),
            ("2", "2"),
            ("0.5", "500m"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("128Mi", "128Mi"),
            ("1.5Gi", "1536Mi"),
            ("1k", "1k"),
            ("1500", "1500"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("512", "512"),
        ] {
            assert_eq!(canonical(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in ["", "abc", "1x", "1.2.3", " 1", "Mi", "1Gb", "."] {
            let err = canonical(bad).unwrap_err();
            assert!(err.contains("not a quantity"), "{bad}: {err}");
        }
    }
}
