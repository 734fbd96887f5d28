//! Checksum and structure validators. They run only on regex-confirmed candidates, never on the
//! whole stream, so they can afford to be exact rather than fast.
//!
//! A validator returns the byte length of the accepted value (a prefix of the candidate), or `None`
//! when the candidate is not a real value. Returning a prefix lets a rule's regex be generous about
//! where a value ends (an IBAN followed by an uppercase word, a card number followed by a year)
//! while the validator decides exactly.

use std::fmt;

/// The validators a rule file can name in `validator = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validator {
    /// Luhn checksum plus known issuer (IIN) ranges and their lengths.
    PaymentCard,
    /// Luhn checksum only (for organisation-specific numbers).
    Luhn,
    /// Hong Kong identity card number with its check digit (one- or two-letter prefix).
    Hkid,
    /// 18-character PRC resident identity number: region, birth date, ISO 7064 MOD 11-2 check.
    CnResidentId,
    /// IBAN: country code, the country's length, ISO 13616 mod 97.
    Iban,
    /// US social security number (dashed): invalid areas, groups and serials excluded.
    UsSsn,
    /// AWS access key id: base32 body, not a degenerate repetition.
    AwsAccessKey,
    /// GitHub token (ghp_/gho_/ghu_/ghs_/ghr_) with its CRC32 base62 checksum.
    GithubToken,
}

impl Validator {
    /// All validators with their rule-file names.
    pub const ALL: [(&'static str, Validator); 8] = [
        ("payment-card", Validator::PaymentCard),
        ("luhn", Validator::Luhn),
        ("hkid", Validator::Hkid),
        ("cn-resident-id", Validator::CnResidentId),
        ("iban", Validator::Iban),
        ("us-ssn", Validator::UsSsn),
        ("aws-access-key", Validator::AwsAccessKey),
        ("github-token", Validator::GithubToken),
    ];

    /// Looks a validator up by its rule-file name.
    pub fn from_name(name: &str) -> Option<Validator> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The rule-file name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, v)| *v == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// Validates `value`; returns the accepted prefix length in bytes.
    pub fn check(self, value: &[u8]) -> Option<usize> {
        match self {
            Validator::PaymentCard => payment_card(value),
            Validator::Luhn => whole(value, luhn_value(value)),
            Validator::Hkid => whole(value, hkid(value)),
            Validator::CnResidentId => whole(value, cn_resident_id(value)),
            Validator::Iban => iban(value),
            Validator::UsSsn => whole(value, us_ssn(value)),
            Validator::AwsAccessKey => whole(value, aws_access_key(value)),
            Validator::GithubToken => whole(value, github_token(value)),
        }
    }

    /// The canonical form used for exclusions and value HMACs (so that `4111 1111 ...` and
    /// `4111-1111-...` correlate).
    pub fn canonical(self, value: &[u8]) -> Vec<u8> {
        match self {
            Validator::PaymentCard | Validator::Luhn => value.iter().copied().filter(u8::is_ascii_digit).collect(),
            Validator::Iban | Validator::Hkid => value.iter().filter(|b| b.is_ascii_alphanumeric()).map(u8::to_ascii_uppercase).collect(),
            Validator::CnResidentId => value.iter().map(u8::to_ascii_uppercase).collect(),
            _ => value.to_vec(),
        }
    }
}

impl Validator {
    /// The masked sample shown for a value: card numbers are masked in their digits-only form
    /// (`4111********1111`), SSNs show only the last four digits (`***-**-6789`), other values are
    /// masked as written.
    pub fn sample(self, value: &[u8], canonical: &[u8]) -> String {
        match self {
            Validator::PaymentCard | Validator::Luhn => crate::mask(&String::from_utf8_lossy(canonical)),
            Validator::UsSsn if value.len() == 11 => {
                format!("***-**-{}", String::from_utf8_lossy(&value[7..]))
            }
            _ => crate::mask(&String::from_utf8_lossy(value)),
        }
    }
}

impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn whole(value: &[u8], ok: bool) -> Option<usize> {
    ok.then_some(value.len())
}

/// Luhn (mod 10) over the digits of `digits` (non-digits are not allowed here).
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
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

fn luhn_value(value: &[u8]) -> bool {
    let digits: Vec<u8> = value.iter().copied().filter(u8::is_ascii_digit).collect();
    digits.len() >= 8 && luhn(&digits)
}

/// Issuer ranges: (low prefix, high prefix, prefix digits, allowed lengths).
/// Sources: ISO/IEC 7812 registrations as published by the networks (Visa, Mastercard incl.
/// 2-series, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir).
const IIN_RANGES: &[(u32, u32, usize, &[usize])] = &[
    (4, 4, 1, &[13, 16, 19]),                           // Visa
    (51, 55, 2, &[16]),                                 // Mastercard
    (2221, 2720, 4, &[16]),                             // Mastercard 2-series
    (34, 34, 2, &[15]),                                 // American Express
    (37, 37, 2, &[15]),                                 // American Express
    (6011, 6011, 4, &[16, 17, 18, 19]),                 // Discover
    (644, 649, 3, &[16, 17, 18, 19]),                   // Discover
    (65, 65, 2, &[16, 17, 18, 19]),                     // Discover / RuPay
    (3528, 3589, 4, &[16, 17, 18, 19]),                 // JCB
    (300, 305, 3, &[14, 15, 16, 17, 18, 19]),           // Diners Club International
    (36, 36, 2, &[14, 15, 16, 17, 18, 19]),             // Diners Club International
    (38, 39, 2, &[14, 15, 16, 17, 18, 19]),             // Diners Club
    (62, 62, 2, &[16, 17, 18, 19]),                     // UnionPay
    (2200, 2204, 4, &[16, 17, 18, 19]),                 // Mir
    (5018, 5018, 4, &[12, 13, 14, 15, 16, 17, 18, 19]), // Maestro
    (5020, 5020, 4, &[12, 13, 14, 15, 16, 17, 18, 19]), // Maestro
    (5038, 5038, 4, &[12, 13, 14, 15, 16, 17, 18, 19]), // Maestro
    (5893, 5893, 4, &[12, 13, 14, 15, 16, 17, 18, 19]), // Maestro
    (6304, 6304, 4, &[12, 13, 14, 15, 16, 17, 18, 19]), // Maestro
    (6759, 6759, 4, &[12, 13, 14, 15, 16, 17, 18, 19]), // Maestro UK
    (6761, 6763, 4, &[12, 13, 14, 15, 16, 17, 18, 19]), // Maestro
];

/// True when the digit string is Luhn-valid and in a known issuer range with a length that
/// issuer uses.
pub fn card_number(digits: &[u8]) -> bool {
    if !(12..=19).contains(&digits.len()) || !luhn(digits) {
        return false;
    }
    // The first 1..=4 digits as numbers, computed once for all ranges.
    let mut prefix = [0u32; 5];
    for n in 1..5 {
        prefix[n] = prefix[n - 1] * 10 + u32::from(digits[n - 1] - b'0');
    }
    IIN_RANGES.iter().any(|&(lo, hi, n, lens)| {
        let p = prefix[n];
        p >= lo && p <= hi && lens.contains(&digits.len())
    })
}

/// Payment card: the whole candidate, or the candidate without its last separator-delimited
/// group (a card number followed by a short number).
fn payment_card(value: &[u8]) -> Option<usize> {
    let digits_of = |v: &[u8]| -> Option<([u8; 19], usize)> {
        let mut out = [0u8; 19];
        let mut n = 0;
        for &b in v.iter().filter(|b| b.is_ascii_digit()) {
            *out.get_mut(n)? = b;
            n += 1;
        }
        Some((out, n))
    };
    if let Some((d, n)) = digits_of(value)
        && card_number(&d[..n])
    {
        return Some(value.len());
    }
    let cut = value.iter().rposition(|b| *b == b' ' || *b == b'-')?;
    let (d, n) = digits_of(&value[..cut])?;
    card_number(&d[..n]).then_some(cut)
}

fn hk_letter(b: u8) -> Option<u32> {
    b.is_ascii_uppercase().then(|| u32::from(b - b'A') + 10)
}

/// Hong Kong identity card: `X123456(D)`, `XY123456(D)`, with or without parentheses/space.
/// Check digit: weights 9..2 over (letter(s), six digits), a missing first letter counts as 36
/// (space); check = (11 - sum mod 11) mod 11, 10 written `A`.
pub fn hkid(value: &[u8]) -> bool {
    // At most 9 alphanumerics can be valid; a fixed buffer avoids an allocation per candidate.
    let mut buf = [0u8; 16];
    let mut n = 0;
    for &b in value.iter().filter(|b| b.is_ascii_alphanumeric()) {
        let Some(slot) = buf.get_mut(n) else { return false };
        *slot = b;
        n += 1;
    }
    let chars = &buf[..n];
    let (letters, rest) = match chars.iter().position(u8::is_ascii_digit) {
        Some(p) => chars.split_at(p),
        None => return false,
    };
    if !(1..=2).contains(&letters.len()) || rest.len() != 7 {
        return false;
    }
    let (digits, check) = rest.split_at(6);
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (c1, c2) = match letters {
        [a] => (36, hk_letter(*a)),
        [a, b] => match hk_letter(*a) {
            Some(a) => (a, hk_letter(*b)),
            None => return false,
        },
        _ => return false,
    };
    let Some(c2) = c2 else { return false };
    let mut sum = 9 * c1 + 8 * c2;
    for (i, d) in digits.iter().enumerate() {
        sum += (7 - i as u32) * u32::from(d - b'0');
    }
    let expect = (11 - sum % 11) % 11;
    let expect = if expect == 10 { b'A' } else { b'0' + expect as u8 };
    check == [expect]
}

/// PRC province-level region codes (GB/T 2260 first two digits).
const CN_REGIONS: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
    83, 91,
];

/// ISO 7064 MOD 11-2 check character of the first 17 digits.
pub fn iso7064_mod11_2(digits17: &[u8]) -> Option<u8> {
    if digits17.len() != 17 || !digits17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = digits17.iter().zip(W).map(|(d, w)| u32::from(d - b'0') * w).sum();
    Some(b"10X98765432"[(sum % 11) as usize])
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

fn num(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// 18-character PRC resident identity number (GB 11643-1999).
pub fn cn_resident_id(value: &[u8]) -> bool {
    if value.len() != 18 || !value[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !CN_REGIONS.contains(&(num(&value[..2]) as u8)) {
        return false;
    }
    let (y, m, d) = (num(&value[6..10]), num(&value[10..12]), num(&value[12..14]));
    if !(1880..=2099).contains(&y) || !valid_date(y, m, d) {
        return false;
    }
    iso7064_mod11_2(&value[..17]) == Some(value[17].to_ascii_uppercase())
}

/// IBAN lengths per country (SWIFT IBAN registry).
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
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
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
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// Length of a valid IBAN for this country code.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    // The table is sorted by country code (see the test below).
    let key: [u8; 2] = country.try_into().ok()?;
    IBAN_LENGTHS.binary_search_by(|(c, _)| (**c).cmp(&key)).ok().map(|i| IBAN_LENGTHS[i].1)
}

/// ISO 13616 check: move the first four characters to the end, letters to 10..35, mod 97 == 1.
pub fn iban_mod97(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    // Accumulate in 64 bits and reduce only when large: the same remainder with far fewer
    // divisions (the value stays below 2^56 * 100 + 35 before each reduction).
    let mut rem: u64 = 0;
    for &c in rotated {
        match c {
            b'0'..=b'9' => rem = rem * 10 + u64::from(c - b'0'),
            b'A'..=b'Z' => rem = rem * 100 + u64::from(c - b'A') + 10,
            _ => return false,
        }
        if rem >= 1 << 56 {
            rem %= 97;
        }
    }
    rem % 97 == 1
}

/// IBAN in compact or space-grouped form; accepts the prefix that has exactly the country's
/// length (the regex may have taken a following uppercase word).
fn iban(value: &[u8]) -> Option<usize> {
    let want = iban_length(value.get(..2)?)?;
    // Country lengths are at most 34: a stack buffer avoids an allocation per candidate.
    let mut compact = [0u8; 40];
    let mut n = 0;
    let mut cut = None;
    for (i, &b) in value.iter().enumerate() {
        if b == b' ' {
            continue;
        }
        if !b.is_ascii_alphanumeric() {
            return None;
        }
        *compact.get_mut(n)? = b;
        n += 1;
        if n == want {
            cut = Some(i + 1);
            break;
        }
    }
    let cut = cut?;
    // The value must end there: at the end of the candidate or at a group separator.
    if cut < value.len() && value[cut] != b' ' {
        return None;
    }
    iban_mod97(&compact[..n]).then_some(cut)
}

/// Dashed US SSN `AAA-GG-SSSS`: area not 000, 666 or 900-999; group not 00; serial not 0000.
pub fn us_ssn(value: &[u8]) -> bool {
    if value.len() != 11 || value[3] != b'-' || value[6] != b'-' {
        return false;
    }
    let (a, g, s) = (&value[..3], &value[4..6], &value[7..]);
    if !a.iter().chain(g).chain(s).all(u8::is_ascii_digit) {
        return false;
    }
    let area = num(a);
    area != 0 && area != 666 && area < 900 && num(g) != 0 && num(s) != 0
}

/// AWS access key id: 4-letter prefix then 16 base32 characters, not a degenerate repetition.
pub fn aws_access_key(value: &[u8]) -> bool {
    if value.len() != 20 {
        return false;
    }
    let body = &value[4..];
    if !body.iter().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(b)) {
        return false;
    }
    let mut seen = [false; 256];
    body.iter().for_each(|b| seen[usize::from(*b)] = true);
    seen.iter().filter(|s| **s).count() >= 5
}

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32_TABLE: [u32; 256] = crc32_table();

/// CRC-32 (IEEE 802.3, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC32_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 of `n`, left-padded with `0` to 6 characters (GitHub's checksum encoding).
pub fn base62_6(mut n: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// GitHub token: `gh?_` + 30 base62 characters + 6-character base62 CRC32 of those 30, or a
/// fine-grained personal access token `github_pat_` + 82 word characters (no published
/// checksum: checked by shape, as gitleaks' and trufflehog's rules do).
pub fn github_token(value: &[u8]) -> bool {
    if let Some(rest) = value.strip_prefix(b"github_pat_") {
        return rest.len() == 82 && rest.iter().copied().all(crate::engine::is_word_byte);
    }
    if value.len() != 40 || !value.starts_with(b"gh") || value[3] != b'_' {
        return false;
    }
    if !matches!(value[2], b'p' | b'o' | b'u' | b's' | b'r') {
        return false;
    }
    let (random, check) = value[4..].split_at(30);
    random.iter().chain(check).all(u8::is_ascii_alphanumeric) && base62_6(crc32(random)) == check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iban_table_is_sorted_for_binary_search() {
        assert!(IBAN_LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
        for (c, n) in IBAN_LENGTHS {
            assert_eq!(iban_length(c.as_slice()), Some(*n));
        }
        assert_eq!(iban_length(b"ZZ"), None);
        assert_eq!(iban_length(b"G"), None);
        assert_eq!(iban_length(b"GBX"), None);
    }

    #[test]
    fn mod97_matches_the_step_by_step_remainder() {
        let reference = |compact: &[u8]| {
            let mut rem: u32 = 0;
            for &c in compact[4..].iter().chain(&compact[..4]) {
                match c {
                    b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
                    b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A') + 10) % 97,
                    _ => return false,
                }
            }
            rem == 1
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 5..40 {
            for _ in 0..200 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let r = (x % 40) as u8;
                        if r < 10 {
                            b'0' + r
                        } else if r < 36 {
                            b'A' + r - 10
                        } else {
                            b'z'
                        }
                    })
                    .collect();
                assert_eq!(iban_mod97(&v), reference(&v), "{}", String::from_utf8_lossy(&v));
            }
        }
        assert!(iban_mod97(b"GB82WEST12345698765432"));
        let zs = [b'Z'; 34];
        assert_eq!(iban_mod97(&zs), reference(&zs));
    }

    #[test]
    fn issuer_prefixes_decide_card_numbers() {
        assert!(card_number(b"4111111111111111"));
        assert!(card_number(b"5555555555554444"));
        assert!(card_number(b"378282246310005"));
        assert!(card_number(b"6011111111111117"));
        assert!(!card_number(b"9999123456789019"));
        assert!(!card_number(b"4111111111111112"));
    }
}
