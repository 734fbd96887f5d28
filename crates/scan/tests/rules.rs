//! Rule files: the format's features, and broken files reported as file:line + what is wrong,
//! with nothing loaded half-way.
use std::sync::Arc;

use portcullis_scan::{Confidence, RuleError, Ruleset, Scanner};

fn rules(toml: &str) -> Result<Ruleset, RuleError> {
    Ruleset::from_sources(&[("custom.toml".to_string(), toml.to_string())])
}

fn scan(rules: &Arc<Ruleset>, text: &str) -> Vec<portcullis_scan::Finding> {
    let mut s = Scanner::new(Arc::clone(rules));
    s.feed(text.as_bytes());
    s.finish()
}

fn err_text(toml: &str) -> String {
    match rules(toml) {
        Ok(_) => panic!("rule file should be rejected:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

const GOOD: &str = r#"
[[detector]]
id = "project-codename"
description = "Project code names"
severity = "medium"
keywords = ["BLUEBIRD", "Nightjar"]
"#;

#[test]
fn syntax_error_names_file_and_line() {
    let e = err_text("[[detector]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"low\nkeywords = [\"a\"]\n");
    assert!(e.starts_with("custom.toml:4:"), "{e}");
}

#[test]
fn unknown_field_names_line() {
    let e = err_text("[[detector]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"low\"\nkeyword = [\"a\"]\n");
    assert!(e.starts_with("custom.toml:5:") && e.contains("keyword"), "{e}");
}

#[test]
fn semantic_errors_name_the_line_and_problem() {
    let base = "[[detector]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"low\"\n";
    let cases = [
        ("regex = '''(unclosed'''\n", "custom.toml:5: detector `x`: bad regex"),
        ("regex = '''PROJ-\\d+'''\n", "custom.toml:5: detector `x`: regex match length must be bounded"),
        ("regex = '''a*'''\n", "custom.toml:5: detector `x`: regex can match empty text"),
        ("regex = '''\\d{4}'''\nvalidator = \"crc64\"\n", "custom.toml:6: detector `x`: unknown validator `crc64`"),
        ("keywords = [\"a\"]\nmin_count = 0\n", "custom.toml:6: detector `x`: min_count must be at least 1"),
        (
            "regex = '''\\d{4}'''\nmin_digits = 4\n",
            "custom.toml:6: detector `x`: min_digits and uppercase_before_digits need min_digit_run",
        ),
        ("regex = '''\\d{4}'''\nmin_digit_run = 4\nmin_digits = 3\n", "custom.toml:7: detector `x`: min_digits must be between"),
        (
            "keywords = [\"a\"]\nregex = '''a\\d'''\nmin_digit_run = 1\n",
            "custom.toml:7: detector `x`: min_digit_run applies to a regex-only detector",
        ),
    ];
    for (extra, want) in cases {
        let e = err_text(&format!("{base}{extra}"));
        assert!(e.starts_with(want), "got {e}\nwant {want}");
    }
    let e = err_text("[[detector]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"severe\"\nkeywords = [\"a\"]\n");
    assert!(e.starts_with("custom.toml:4:") && e.contains("unknown severity `severe`"), "{e}");
    let e = err_text("[[detector]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"low\"\n");
    assert!(e.contains("needs `keywords`, `regex` or both"), "{e}");
}

#[test]
fn broken_file_loads_nothing_and_duplicates_are_caught() {
    let bad = "[[detector]]\nid = \"y\"\ndescription = \"d\"\nseverity = \"low\"\nregex = '''('''\n";
    let r = Ruleset::from_sources(&[("a.toml".into(), GOOD.into()), ("b.toml".into(), bad.into())]);
    assert!(matches!(r, Err(RuleError::Invalid { ref file, line: 5, .. }) if file == "b.toml"), "{r:?}");
    let r = Ruleset::from_sources(&[("a.toml".into(), GOOD.into()), ("b.toml".into(), GOOD.into())]);
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with("b.toml:2:") && e.contains("duplicate id (first defined at a.toml:2)"), "{e}");
}

#[test]
fn load_dir_reads_every_toml_and_reports_the_path() {
    let dir = std::env::temp_dir().join(format!("portcullis-scan-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("codes.toml"), GOOD).unwrap();
    std::fs::write(dir.join("README.md"), "not a rule").unwrap();
    let r = Ruleset::load_dir(&dir).unwrap();
    assert_eq!(r.detectors().len(), 1);
    std::fs::write(dir.join("zz-broken.toml"), "[[detector]]\nid = 3\n").unwrap();
    let e = Ruleset::load_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("zz-broken.toml:2:"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(Ruleset::load_dir(&dir), Err(RuleError::Io { .. })));
}

#[test]
fn keyword_dictionary_of_thousands_whole_words() {
    // 5000 project code names, like an officer's dictionary export.
    let words: Vec<String> = (0..5000).map(|i| format!("PRJ{i:04}X")).collect();
    let list = words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ");
    let toml = format!(
        "[[detector]]\nid = \"codenames\"\ndescription = \"d\"\nseverity = \"high\"\nkeywords = [{list}]\n\
         [detector.examples]\nmatch = [\"see PRJ4999X now\"]\nno_match = [\"PRJ4999XY\"]\n"
    );
    let r = Arc::new(rules(&toml).unwrap());
    assert!(r.test_examples().is_empty());
    let f = scan(&r, "PRJ0001X, PRJ2500X and xPRJ0002X; PRJ0001X again. 中文PRJ0003X中文");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].count, 4, "{f:?}");
    // Combined with the built-ins, still one prefilter.
    let mut sources: Vec<(String, String)> = Ruleset::builtin_sources().iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
    sources.push(("codes.toml".into(), toml));
    let all = Ruleset::from_sources(&sources).unwrap();
    assert_eq!(all.literal_count(), 5000 + Ruleset::builtin().literal_count());
}

#[test]
fn case_insensitive_keywords_and_case_sensitive_builtins_share_the_automaton() {
    let toml = "[[detector]]\nid = \"words\"\ndescription = \"d\"\nseverity = \"low\"\nkeywords = [\"falcon\"]\ncase_insensitive = true\n";
    let mut sources: Vec<(String, String)> = Ruleset::builtin_sources().iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
    sources.push(("w.toml".into(), toml.into()));
    let r = Arc::new(Ruleset::from_sources(&sources).unwrap());
    let f = scan(&r, "FALCON and Falcon; the secret is out; TOP SECRET");
    let ids: Vec<(&str, u64)> = f.iter().map(|f| (f.detector.as_str(), f.count)).collect();
    assert_eq!(ids, [("classification-marking", 1), ("words", 2)]);
}

#[test]
fn regex_with_literal_prefix_uses_the_prefilter() {
    let toml = "[[detector]]\nid = \"ticket\"\ndescription = \"d\"\nseverity = \"low\"\nregex = '''PROJ-\\d{4}\\b'''\n";
    let r = Arc::new(rules(toml).unwrap());
    assert_eq!(r.detectors()[0].prefilter(), "literals");
    assert_eq!(scan(&r, "see PROJ-1234 and PROJ-12345")[0].count, 1);
    let toml = "[[detector]]\nid = \"anything\"\ndescription = \"d\"\nseverity = \"low\"\nregex = '''[a-z]{3}-[0-9]{2}'''\n";
    let r = Arc::new(rules(toml).unwrap());
    assert_eq!(r.detectors()[0].prefilter(), "full-scan");
    assert_eq!(scan(&r, "abc-12 xyz-99")[0].count, 2);
}

#[test]
fn exclusions_context_and_min_count() {
    let toml = r#"
[[detector]]
id = "emp"
description = "Employee numbers"
severity = "medium"
confidence = "low"
regex = '''\bE\d{6}\b'''
min_digit_run = 6
min_count = 2

[detector.context]
keywords = ["employee", "staff id"]
within = 20

[detector.exclude]
values = ["E000000"]
patterns = ['''E9\d{5}''']
"#;
    let r = Arc::new(rules(toml).unwrap());
    // One value: below min_count.
    assert!(scan(&r, "E123456").is_empty());
    // Excluded literal and pattern do not count.
    assert!(scan(&r, "E123456 E000000 E912345").is_empty());
    let f = scan(&r, "E123456 E654321");
    assert_eq!((f[0].count, f[0].confidence), (2, Confidence::Low));
    let f = scan(&r, "E123456 and employee E654321");
    assert_eq!((f[0].count, f[0].confidence), (2, Confidence::Medium));
    // Context farther than `within` does not count.
    let f = scan(&r, "employee ........................ E123456 E654321");
    assert_eq!(f[0].confidence, Confidence::Low);

    let required = toml.replace("within = 20", "within = 20\nrequired = true");
    let r = Arc::new(rules(&required).unwrap());
    assert!(scan(&r, "E123456 E654321").is_empty());
    assert_eq!(scan(&r, "staff id E123456, staff id E654321")[0].count, 2);
}

#[test]
fn hmacs_only_with_a_key_and_correlate_formats() {
    let rules = Ruleset::builtin();
    let mut s = Scanner::new(Arc::clone(&rules)).with_hmac_key([7; 32]);
    s.feed(b"4111 1111 1111 1111 and 4111-1111-1111-1111 and 5555555555554444");
    let f = s.finish();
    assert_eq!(f[0].count, 3);
    assert_eq!(f[0].value_hmacs.len(), 2, "same card in two formats has one HMAC");
    assert!(f[0].value_hmacs.iter().all(|h| h.len() == 64));
    assert_eq!(f[0].offsets, [0, 24, 48]);
    let mut s = Scanner::new(rules);
    s.feed(b"4111 1111 1111 1111");
    assert!(s.finish()[0].value_hmacs.is_empty());
}

#[test]
fn classification_markings_are_uppercase_whole_words() {
    let rules = Ruleset::builtin();
    let count = |t: &str| scan(&rules, t).iter().find(|f| f.detector == "classification-marking").map_or(0, |f| f.count);
    assert_eq!(count("TOP SECRET//SI"), 1);
    assert_eq!(count("CONFIDENTIAL. RESTRICTED. SECRET. OFFICIAL-SENSITIVE."), 4);
    assert_eq!(count("The Secretary met the secretariat; a secret, confidential, restricted talk."), 0);
    assert_eq!(count("SECRETARY GENERAL, UNRESTRICTED, NONCONFIDENTIAL"), 0);
}

#[test]
fn private_keys_not_certificates() {
    let rules = Ruleset::builtin();
    let key =
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n";
    let f = scan(&rules, key);
    assert_eq!(f[0].detector, "private-key");
    assert!(!f[0].samples[0].contains("MHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04f"));
    let cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0iXt5Xw4kV9pP3aXwYQ0H5m2b8wCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8xOUetsCa8EfOlDEBAfREhJqspDo\n-----END PUBLIC KEY-----\n";
    assert!(scan(&rules, cert).is_empty());
}

#[test]
fn readme_example_rule_loads_and_its_examples_pass() {
    let readme = include_str!("../../../rules/detectors/README.md");
    let start = readme.find("```toml\n").unwrap() + 8;
    let len = readme[start..].find("```").unwrap();
    let r = Arc::new(rules(&readme[start..start + len]).unwrap());
    let failures: Vec<String> = r.test_examples().iter().map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(scan(&r, "NIGHTJAR and BLUEBIRD")[0].count, 2);
}

#[test]
fn shipped_directory_loads_like_the_embedded_rules() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/detectors");
    let r = Ruleset::load_dir(&dir).unwrap();
    assert_eq!(r.detectors().len(), Ruleset::builtin().detectors().len());
}

#[test]
fn builtin_detectors_all_have_a_prefilter() {
    for d in Ruleset::builtin().detectors() {
        assert_ne!(d.prefilter(), "full-scan", "{}", d.id);
    }
}

/// Employee numbers (E + 6 digits), reported only with one of `keywords` (a TOML array)
/// within `within` bytes.
fn employee_numbers(keywords: &str, within: usize) -> Arc<Ruleset> {
    let toml = format!(
        r#"
[[detector]]
id = "emp"
description = "Employee numbers"
severity = "medium"
regex = '''\bE\d{{6}}\b'''
min_digit_run = 6

[detector.context]
keywords = {keywords}
within = {within}
required = true
"#
    );
    Arc::new(rules(&toml).expect("employee-number rules load"))
}

#[test]
fn context_keyword_that_is_a_prefix_of_a_longer_one_counts() {
    // The longer keyword starts at the same place but does not fit in `within`; the shorter one
    // (a case-insensitive prefix of it) does, so the value has context.
    let r = employee_numbers(r#"["employee record", "EMP"]"#, 6);
    assert_eq!(scan(&r, "E123456 employee record")[0].count, 1);
    assert_eq!(scan(&r, "emp E123456")[0].count, 1);
    assert!(scan(&r, "employee record E123456 and more text").is_empty());
    assert!(scan(&r, "E123456 xyzwv employee record").is_empty());
    assert!(scan(&r, "employee recor E123456").is_empty());
}

#[test]
fn context_keyword_overlapping_an_earlier_one_counts() {
    // "bank" starts before the 10-byte window and overlaps "konto", which lies inside it: the
    // value has context. Keywords match in any ASCII case; other text is left as it is.
    let r = employee_numbers(r#"["bank", "konto", "身份证"]"#, 10);
    for text in ["xbankontoxxxx E123456", "xBANKONTOxxxx E123456", "xbanKontoxxxx E123456", "身份证 E123456", "E123456 kOnTo"] {
        assert_eq!(scan(&r, text).len(), 1, "{text}");
    }
    for text in ["xbankontxxxxx E123456", "身份 E123456", "E123456 xxxxxxkonto", "bank         E123456"] {
        assert!(scan(&r, text).is_empty(), "{text}");
    }
    // The same after an earlier value (without context of its own) decided in the same round,
    // whose search for keywords already covered "bank" and "konto".
    let two = format!("E111111{}bankontoxxxx E123456{}.", " ".repeat(12), " ".repeat(40));
    assert_eq!(scan(&r, &two)[0].count, 1);
}
