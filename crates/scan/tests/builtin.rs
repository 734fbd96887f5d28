//! The shipped detectors: they compile, their own examples pass, and the scanner reports
//! masked findings.
use portcullis_scan::{Confidence, Ruleset, Scanner, Severity};

fn scan(text: &str) -> Vec<portcullis_scan::Finding> {
    let mut s = Scanner::new(Ruleset::builtin());
    s.feed(text.as_bytes());
    s.finish()
}

#[test]
fn builtin_has_the_nine_public_ids() {
    let rules = Ruleset::builtin();
    let mut ids: Vec<&str> = rules.detectors().iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "aws-access-key", "classification-marking", "cn-resident-id", "github-token", "hkid", "iban", "payment-card", "private-key",
            "us-ssn"
        ]
    );
}

#[test]
fn builtin_examples_pass() {
    let failures = Ruleset::builtin().test_examples();
    let text: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{}", text.join("\n"));
}

#[test]
fn card_and_hkid_masked() {
    let f = scan("Pay with 4111 1111 1111 1111 or 4111111111111111; HKID A123456(3), A123456(3).");
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].detector, "hkid");
    assert_eq!(f[0].count, 2);
    assert_eq!(f[0].samples, ["A12****(3)"]);
    assert_eq!(f[0].severity, Severity::High);
    assert_eq!(f[1].detector, "payment-card");
    assert_eq!(f[1].count, 2);
    assert!(f[1].samples.contains(&"4111********1111".to_string()), "{:?}", f[1].samples);
    assert_eq!(f[1].confidence, Confidence::Medium, "no card keyword nearby");
}
