//! Rule parser: arbitrary bytes as a rule file must give a Ruleset or a RuleError naming a
//! line inside the file, never a panic; a loaded ruleset must scan its own source text.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use portcullis_scan::{RuleError, Ruleset, Scanner};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count().max(1);
    match Ruleset::from_sources(&[("fuzz.toml".to_string(), text.to_string())]) {
        Ok(rules) => {
            let rules = Arc::new(rules);
            let mut s = Scanner::new(Arc::clone(&rules));
            s.feed(data);
            let _ = s.finish();
            let _ = rules.test_examples();
        }
        Err(RuleError::Syntax { line, .. }) | Err(RuleError::Invalid { line, .. }) => {
            assert!(line <= lines + 1, "error line {line} beyond the file ({lines} lines)");
        }
        Err(_) => {}
    }
});
