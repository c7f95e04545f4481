//! Checks that turn a regex candidate into a finding: check digits (Luhn, mod-97), number
//! ranges, entropy, placeholder words, base64url. All pure functions over ASCII bytes.

/// Whether `digits` (ASCII `0`-`9` only) pass the Luhn check used by payment cards.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.len() < 2 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Whether a digit string has the issuer prefix and length of a payment card scheme
/// (Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro).
/// Numbers of other shapes (IMEIs, tracking numbers) fail here even when Luhn passes.
pub fn card_shape(digits: &[u8]) -> bool {
    let len = digits.len();
    let prefix = |n: usize| -> u32 {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
    };
    match digits.first() {
        Some(b'4') => matches!(len, 13 | 16 | 19),
        Some(b'5') => match prefix(2) {
            51..=55 => len == 16,
            50 | 56..=59 => (13..=19).contains(&len),
            _ => false,
        },
        Some(b'2') => (2221..=2720).contains(&prefix(4)) && len == 16,
        Some(b'3') => {
            let p2 = prefix(2);
            let p3 = prefix(3);
            let p4 = prefix(4);
            if p2 == 34 || p2 == 37 {
                len == 15
            } else if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 {
                (14..=19).contains(&len)
            } else if (3528..=3589).contains(&p4) {
                (16..=19).contains(&len)
            } else {
                false
            }
        }
        Some(b'6') => (16..=19).contains(&len),
        _ => false,
    }
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// The IBAN length of a country code (uppercase), if the country uses IBANs.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(cc, _)| cc.as_slice() == country)
        .map(|(_, len)| *len)
}

/// Whether `iban` (uppercase letters and digits, no spaces) has its country's length and
/// passes the ISO 7064 mod-97 check.
pub fn iban_valid(iban: &[u8]) -> bool {
    if iban.len() < 5
        || !iban
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return false;
    }
    if iban_length(&iban[..2]) != Some(iban.len()) || !iban[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Move the first four characters to the end, read letters as 10..35, take it mod 97.
    let mut rem = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            let v = u32::from(b - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem == 1
}

/// Whether area, group and serial form a possible US social security number: area not
/// 000, 666 or 900-999; group not 00; serial not 0000.
pub fn ssn_valid(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Shannon entropy of the byte distribution of `s`, in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Words that mark a documentation placeholder rather than a real credential
/// (`AKIAIOSFODNN7EXAMPLE`, `sk-your-key-here`, `ghp_xxxx…`).
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "xxxx",
    "your",
    "dummy",
    "placeholder",
    "redacted",
    "sample",
    "changeme",
    "insert",
    "replace",
    "fake",
    "...",
];

/// Whether a secret-like value is a placeholder: it contains a placeholder word (see the
/// crate docs), an ellipsis, `<`/`>`, or a run of six or more identical characters.
pub fn is_placeholder(value: &[u8]) -> bool {
    if value.windows(3).any(|w| w == "…".as_bytes()) || value.contains(&b'<') {
        return true;
    }
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDER_WORDS
        .iter()
        .any(|w| lower.windows(w.len()).any(|x| x == w.as_bytes()))
    {
        return true;
    }
    let mut run = 1;
    for w in value.windows(2) {
        if w[0] == w[1] {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else {
            run = 1;
        }
    }
    false
}

/// Whether `s` has at least one ASCII letter and one ASCII digit.
pub fn mixes_letters_and_digits(s: &[u8]) -> bool {
    s.iter().any(u8::is_ascii_alphabetic) && s.iter().any(u8::is_ascii_digit)
}

/// Decodes unpadded base64url (RFC 4648 §5); `None` on any invalid character or length.
pub fn base64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn value(b: u8) -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for &b in chunk {
            acc = (acc << 6) | value(b)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

/// Whether a JWT header segment decodes to a JSON object with a string `alg`.
pub fn jwt_header_ok(segment: &[u8]) -> bool {
    base64url_decode(segment)
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v.get("alg").is_some_and(serde_json::Value::is_string))
}

/// 64-bit FNV-1a: a stable hash for remembering which passages were scanned (stable across
/// builds and Rust versions, unlike `DefaultHasher`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_card_numbers_and_rejects_one_digit_off() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"378282246310005"));
        assert!(luhn(b"5555555555554444"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"1234567812345678"));
        assert!(!luhn(b"12a4"));
    }

    #[test]
    fn card_shape_knows_issuer_prefixes_and_lengths() {
        assert!(card_shape(b"4111111111111111"));
        assert!(card_shape(b"378282246310005"));
        assert!(!card_shape(b"3782822463100051"), "Amex is 15 digits");
        assert!(card_shape(b"2221000000000009"));
        assert!(
            !card_shape(b"2021000000000009"),
            "2021 is no Mastercard range"
        );
        assert!(
            !card_shape(b"356938035643809"),
            "a 15-digit IMEI starting 35"
        );
        assert!(!card_shape(b"9400100000000000"), "a postal tracking number");
        assert!(card_shape(b"30569309025904"), "Diners 14 digits");
    }

    #[test]
    fn iban_needs_the_country_length_and_mod_97() {
        assert!(iban_valid(b"DE89370400440532013000"));
        assert!(iban_valid(b"GB82WEST12345698765432"));
        assert!(iban_valid(b"FR1420041010050500013M02606"));
        assert!(!iban_valid(b"DE89370400440532013001"), "check digits off");
        assert!(!iban_valid(b"DE8937040044053201300"), "one short");
        assert!(!iban_valid(b"ZZ89370400440532013000"), "no such country");
    }

    #[test]
    fn ssn_ranges_exclude_000_666_9xx_00_and_0000() {
        assert!(ssn_valid(123, 45, 6789));
        assert!(!ssn_valid(0, 45, 6789));
        assert!(!ssn_valid(666, 45, 6789));
        assert!(!ssn_valid(912, 45, 6789));
        assert!(!ssn_valid(123, 0, 6789));
        assert!(!ssn_valid(123, 45, 0));
    }

    #[test]
    fn entropy_is_zero_for_one_symbol_and_high_for_varied_text() {
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!(shannon_entropy(b"h7Gq2LpX9vRt4KzW") > 3.5);
    }

    #[test]
    fn placeholders_are_recognised() {
        assert!(is_placeholder(b"AKIAIOSFODNN7EXAMPLE"));
        assert!(is_placeholder(b"sk-your-key-here"));
        assert!(is_placeholder(b"ghp_000000000000"));
        assert!(is_placeholder("sk-abc…".as_bytes()));
        assert!(!is_placeholder(b"h7Gq2LpX9vRt4KzW"));
    }

    #[test]
    fn base64url_round_trips_a_jwt_header() {
        let decoded = base64url_decode(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9").expect("valid");
        assert_eq!(decoded, br#"{"alg":"HS256","typ":"JWT"}"#);
        assert!(jwt_header_ok(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"));
        assert!(!jwt_header_ok(b"eyJ0eXAiOiJKV1QifQ"), "no alg");
        assert!(base64url_decode(b"a").is_none());
        assert!(base64url_decode(b"ab!d").is_none());
    }
}
