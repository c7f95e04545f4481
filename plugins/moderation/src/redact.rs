//! Redaction: how a matched value is shown in notes, details and log lines. The raw match
//! never leaves the analyzer; each function keeps only what helps the user recognise it.

/// `jane.doe@example.com` → `j***@example.com`.
pub fn email(raw: &str) -> String {
    match raw.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().unwrap_or('*');
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// Every digit but the last two becomes `*`; separators stay: `+44 20 7946 0958` →
/// `+** ** **** **58`.
pub fn phone(raw: &str) -> String {
    mask_digits_keep_last(raw, 2)
}

/// `4111 1111 1111 1111` → `**** **** **** 1111`.
pub fn card(raw: &str) -> String {
    format!("**** **** **** {}", last_digits(raw, 4))
}

/// `DE89 3704 0044 0532 0130 00` → `DE** **** … 3000`: country, then the last four.
pub fn iban(raw: &str) -> String {
    let compact: String = raw.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let country: String = compact.chars().take(2).collect::<String>().to_uppercase();
    let tail: String = compact
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{country}** **** … {tail}")
}

/// `123-45-6789` → `***-**-6789`.
pub fn ssn(raw: &str) -> String {
    format!("***-**-{}", last_digits(raw, 4))
}

/// IPv4 keeps its first octet (`192.*.*.*`), IPv6 its first group (`2001:…`).
pub fn ip(raw: &str) -> String {
    if raw.contains(':') {
        let first = raw.split(':').next().unwrap_or("");
        format!("{first}:…")
    } else {
        let first = raw.split('.').next().unwrap_or("");
        format!("{first}.*.*.*")
    }
}

/// A secret keeps its first four characters: `ghp_…`, `AKIA…`.
pub fn secret(raw: &str) -> String {
    let head: String = raw.chars().take(4).collect();
    format!("{head}…")
}

/// A `name=value` credential keeps the name and the value's first four characters.
pub fn assignment(name: &str, value: &str) -> String {
    format!("{name}={}", secret(value))
}

/// Each word keeps its first letter: `you moron` → `y** m****`.
pub fn words(raw: &str) -> String {
    raw.split_whitespace()
        .map(|w| {
            let mut chars = w.chars();
            let first = chars.next().unwrap_or('*');
            let rest = chars.count();
            format!("{first}{}", "*".repeat(rest))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Injection phrasing is not sensitive; it is only shortened (at most 60 characters) and
/// flattened to one line.
pub fn excerpt(raw: &str) -> String {
    let flat: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 60 {
        let cut: String = flat.chars().take(59).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn last_digits(raw: &str, n: usize) -> String {
    let digits: Vec<char> = raw.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(n)..].iter().collect()
}

fn mask_digits_keep_last(raw: &str, keep: usize) -> String {
    let total = raw.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    raw.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + keep > total {
                    c
                } else {
                    '*'
                }
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactions_keep_only_the_recognisable_part() {
        assert_eq!(email("jane.doe@example.com"), "j***@example.com");
        assert_eq!(phone("+44 20 7946 0958"), "+** ** **** **58");
        assert_eq!(card("4111-1111-1111-1111"), "**** **** **** 1111");
        assert_eq!(iban("de89 3704 0044 0532 0130 00"), "DE** **** … 3000");
        assert_eq!(ssn("123-45-6789"), "***-**-6789");
        assert_eq!(ip("192.168.10.4"), "192.*.*.*");
        assert_eq!(ip("2001:db8::1"), "2001:…");
        assert_eq!(secret("ghp_abcdef"), "ghp_…");
        assert_eq!(assignment("api_key", "h7Gq2Lp"), "api_key=h7Gq…");
        assert_eq!(words("you moron"), "y** m****");
        assert_eq!(
            excerpt("ignore   all\nprevious instructions"),
            "ignore all previous instructions"
        );
    }
}
