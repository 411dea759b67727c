//! Durations in Go's `time.ParseDuration` grammar (`300ms`, `1.5h`, `2h45m`), the one grammar of
//! every duration the mesh reads: capture settings, the webhook's and the plugin's flags.

use std::time::Duration;

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text does not follow the grammar (a number and a unit, repeated).
    #[error("{text:?} is not a duration (e.g. 5s, 500ms, 1m30s)")]
    Syntax {
        /// The text as given.
        text: String,
    },
    /// A unit other than `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
    #[error("{text:?} is not a duration: unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    Unit {
        /// The text as given.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// A negative duration (`-5s`): nothing here waits a negative time.
    #[error("{text:?} is not a duration: it is negative")]
    Negative {
        /// The text as given.
        text: String,
    },
    /// Larger than Go's limit (about 290 years).
    #[error("{text:?} is not a duration: it is too large")]
    Overflow {
        /// The text as given.
        text: String,
    },
}

/// Go's largest duration in nanoseconds (`math.MaxInt64`).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a duration exactly as Go's `time.ParseDuration` does (`0`, or one or more
/// `NUMBER UNIT` pairs with an optional sign; no spaces), refusing negative values.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax { text: text.to_string() };
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int, tail) = rest.split_at(int_len);
        let (frac, tail) = match tail.strip_prefix('.') {
            Some(after) => {
                let len = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", tail),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(syntax());
        }
        let unit_len = tail.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(syntax()),
            other => return Err(DurationError::Unit { text: text.to_string(), unit: other.to_string() }),
        };
        let overflow = || DurationError::Overflow { text: text.to_string() };
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| overflow())? };
        let mut nanos = whole.checked_mul(scale).ok_or_else(overflow)?;
        // The fraction, digit by digit (Go drops digits beyond nanosecond precision).
        let mut place = scale;
        for digit in frac.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(nanos).filter(|t| *t <= MAX_NANOS).ok_or_else(overflow)?;
        rest = tail;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative { text: text.to_string() });
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow { text: text.to_string() })?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// kubectl's duration flags (`--request-timeout`): Go's grammar, or a bare integer of seconds.
pub fn parse_or_seconds(text: &str) -> Result<Duration, DurationError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map(Duration::from_secs).map_err(|_| DurationError::Overflow { text: text.into() });
    }
    parse(text)
}

/// Formats a duration the way Go prints simple ones: `5s`, `500ms`, `1m30s`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d.subsec_nanos() != 0 {
        if d.as_nanos().is_multiple_of(1_000_000) {
            return format!("{}ms", d.as_millis());
        }
        return format!("{}ns", d.as_nanos());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_grammar() {
        let ok = [
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("5s", Duration::from_secs(5)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("2h45m", Duration::from_secs(9900)),
            (".5s", Duration::from_millis(500)),
            ("5.s", Duration::from_secs(5)),
            ("1us", Duration::from_micros(1)),
            ("1µs", Duration::from_micros(1)),
            ("3ns", Duration::from_nanos(3)),
            ("1.0000000019s", Duration::new(1, 1)),
        ];
        for (text, want) in ok {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        for text in ["", "5", " 5s", "5s ", ".s", "s", "5x", "1d", "--5s", "5s5"] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
        assert!(matches!(parse("-5s"), Err(DurationError::Negative { .. })));
        assert!(matches!(parse("3000000h"), Err(DurationError::Overflow { .. })));
        assert_eq!(
            parse("5d").unwrap_err().to_string(),
            "\"5d\" is not a duration: unknown unit \"d\" (use ns, us, ms, s, m or h)"
        );
    }

    #[test]
    fn kubectl_form_takes_bare_seconds() {
        assert_eq!(parse_or_seconds("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_or_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_or_seconds("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_or_seconds("abc").unwrap_err().to_string().contains("\"abc\""));
    }

    #[test]
    fn format_round_trips() {
        for d in
            [Duration::from_secs(5), Duration::from_millis(1500), Duration::from_secs(3723), Duration::from_nanos(7)]
        {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
