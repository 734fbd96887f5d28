//! Deterministic test data for the scan throughput bench (`benches/scan_throughput.rs`) and the
//! scan crate's profiling example: English-like prose with rare sensitive values, match-dense
//! CSV, random binary.
#![allow(dead_code)]

pub const MIB: usize = 1 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are",
    "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
    "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "department", "policy", "quarterly", "report",
    "meeting", "budget", "secretary", "confidential", "restricted", "access", "customer", "account", "approval", "committee", "project",
    "deadline", "contract", "invoice", "schedule", "security", "government", "review", "information", "Minister", "Council", "Asia",
    "Hong", "Kong", "summary", "figures", "growth", "github", "keys", "private", "office", "staff", "identity", "card", "bank",
];

/// English-like prose: words, punctuation, paragraphs, some numbers (years, amounts, pages),
/// and a sensitive value about once per MiB.
pub fn prose(len: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rare = ["4111 1111 1111 1111", "A123456(3)", "TOP SECRET", "536-22-8726", "GB82 WEST 1234 5698 7654 32"];
    let mut out = Vec::with_capacity(len + 256);
    let mut sentence = 0;
    while out.len() < len {
        let w = WORDS[rng.below(WORDS.len())];
        if sentence == 0 {
            let mut cap = w.as_bytes().to_vec();
            cap[0] = cap[0].to_ascii_uppercase();
            out.extend_from_slice(&cap);
        } else {
            out.extend_from_slice(w.as_bytes());
        }
        sentence += 1;
        match rng.below(200) {
            0..=2 => out.extend_from_slice(format!(" {}", 1990 + rng.below(40)).as_bytes()),
            3 => out.extend_from_slice(format!(" ${}.{:02}", rng.below(100_000), rng.below(100)).as_bytes()),
            4 => out.extend_from_slice(format!(" (page {})", rng.below(300)).as_bytes()),
            _ => {}
        }
        if rng.below(MIB / 8) == 0 {
            out.extend_from_slice(b" ");
            out.extend_from_slice(rare[rng.below(rare.len())].as_bytes());
        }
        if sentence > 8 && rng.below(8) == 0 {
            out.extend_from_slice(if rng.below(6) == 0 { b".\n\n" } else { b". " });
            sentence = 0;
        } else {
            out.push(if rng.below(15) == 0 { b',' } else { b' ' });
            if out.last() == Some(&b',') {
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

/// CSV where every row holds several sensitive values.
pub fn dense_csv(len: usize) -> Vec<u8> {
    let mut rng = Rng(42);
    let cards = ["4111 1111 1111 1111", "5555555555554444", "378282246310005", "4012-8888-8888-1881", "4111111111111112"];
    let ids = ["A123456(3)", "G123456(A)", "AB987654(3)", "A123456(4)"];
    let ibans = ["GB82WEST12345698765432", "DE89370400440532013000", "NL91ABNA0417164300"];
    let mut out = b"id,name,card,ssn,hkid,iban,amount\n".to_vec();
    let mut i = 0u64;
    while out.len() < len {
        i += 1;
        let row = format!(
            "{i},Customer {i},{},{:03}-{:02}-{:04},{},{},{}.{:02}\n",
            cards[rng.below(cards.len())],
            1 + rng.below(660),
            1 + rng.below(98),
            1 + rng.below(9998),
            ids[rng.below(ids.len())],
            ibans[rng.below(ibans.len())],
            rng.below(10_000),
            rng.below(100)
        );
        out.extend_from_slice(row.as_bytes());
    }
    out.truncate(len);
    out
}

pub fn random_binary(len: usize) -> Vec<u8> {
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `n` distinct made-up project code names (lowercase, 6-10 letters, like "kalomi" or
/// "zupenisa"): an organisation's keyword dictionary.
#[allow(dead_code)] // not every user of this module needs it
pub fn code_names(n: usize) -> Vec<String> {
    const SYLLABLES: [&str; 20] =
        ["ka", "lo", "mi", "ra", "to", "ve", "zu", "pe", "ni", "sa", "do", "fi", "gu", "ha", "je", "qu", "xo", "yi", "wa", "be"];
    let mut rng = Rng(99);
    let mut names = std::collections::BTreeSet::new();
    while names.len() < n {
        let k = 3 + rng.below(3);
        names.insert((0..k).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect::<String>());
    }
    names.into_iter().collect()
}
