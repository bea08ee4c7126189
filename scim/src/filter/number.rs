//! Exact decimal numbers of any length, so `1e400`, `12345678901234567890123` and `0.1` compare
//! numerically without overflow or rounding.

use std::cmp::Ordering;

/// A decimal number: `sign × 0.d₁d₂… × 10^exp`, digits without leading or trailing zeros (zero has
/// no digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

/// Exponents beyond this are clamped; no two distinct values a client can send differ only there.
const EXP_LIMIT: i64 = 1 << 50;

impl Decimal {
    /// Parses a JSON number (RFC 8259 §6): `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    pub fn parse(text: &str) -> Option<Decimal> {
        let b = text.as_bytes();
        let mut i = 0;
        let negative = b.first() == Some(&b'-');
        if negative {
            i += 1;
        }
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int = &b[int_start..i];
        if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
            return None;
        }
        let mut frac: &[u8] = &[];
        if i < b.len() && b[i] == b'.' {
            let s = i + 1;
            i = s;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac = &b[s..i];
            if frac.is_empty() {
                return None;
            }
        }
        let mut exp: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let neg_exp = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                exp = (exp * 10 + i64::from(b[i] - b'0')).min(EXP_LIMIT);
                i += 1;
            }
            if s == i {
                return None;
            }
            if neg_exp {
                exp = -exp;
            }
        }
        if i != b.len() {
            return None;
        }
        let all: Vec<u8> = int.iter().chain(frac).map(|d| d - b'0').collect();
        let lead = all.iter().take_while(|d| **d == 0).count();
        let mut digits = all[lead..].to_vec();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                exp: 0,
            });
        }
        let int_len = i64::try_from(int.len()).unwrap_or(EXP_LIMIT);
        let lead = i64::try_from(lead).unwrap_or(EXP_LIMIT);
        Some(Decimal {
            negative,
            digits,
            exp: (exp + int_len - lead).clamp(-EXP_LIMIT, EXP_LIMIT),
        })
    }

    /// A JSON number text that [`Decimal::parse`] reads back as this value.
    pub fn to_text(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        let digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}0.{digits}e{}", self.exp)
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.exp
            .cmp(&other.exp)
            .then_with(|| self.digits.cmp(&other.digits))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn equal_numbers_in_different_spellings_compare_equal() {
        assert_eq!(d("1"), d("1.0"));
        assert_eq!(d("100"), d("1e2"));
        assert_eq!(d("0.5"), d("5E-1"));
        assert_eq!(d("-0"), d("0"));
        assert_eq!(d("0.000"), d("0"));
        for s in ["0", "-1.25e-7", "12345678901234567890", "1e400"] {
            assert_eq!(Decimal::parse(&d(s).to_text()), Some(d(s)), "{s}");
        }
    }

    #[test]
    fn order_is_numeric_at_any_length() {
        assert!(d("2") > d("10e-1"));
        assert!(d("12345678901234567890123") > d("12345678901234567890122"));
        assert!(d("1e400") > d("9e399"));
        assert!(d("-1") < d("0"));
        assert!(d("-2") < d("-1.5"));
        assert!(d("0.1") < d("0.11"));
        assert!(d("1e-99999999999999999999") > d("0"));
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1x", "--1", "0x10",
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }
}
