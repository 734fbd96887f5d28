//! Scanner: no panic on any input, and feeding it in chunks gives exactly the findings of the
//! whole input. The first two bytes choose the chunk sizes.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use portcullis_scan::{Ruleset, Scanner};

fn rules() -> Arc<Ruleset> {
    static RULES: OnceLock<Arc<Ruleset>> = OnceLock::new();
    RULES
        .get_or_init(|| {
            let mut sources: Vec<(String, String)> =
                Ruleset::builtin_sources().iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
            sources.push((
                "extra.toml".into(),
                "[[detector]]\nid = \"codes\"\ndescription = \"d\"\nseverity = \"low\"\n\
                 keywords = [\"ALPHA\", \"ALPHA BETA\", \"BETA\"]\n\
                 [detector.context]\nkeywords = [\"project\"]\nwithin = 8\n"
                    .into(),
            ));
            Arc::new(Ruleset::from_sources(&sources).expect("fuzz rules compile"))
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (sizes, input) = data.split_at(2);
    let rules = rules();
    let mut whole = Scanner::new(Arc::clone(&rules)).with_hmac_key([9; 32]);
    whole.feed(input);
    let whole = format!("{:?}", whole.finish());

    let mut chunked = Scanner::new(rules).with_hmac_key([9; 32]);
    let (a, b) = (usize::from(sizes[0]) + 1, usize::from(sizes[1]) + 1);
    let mut rest = input;
    let mut toggle = false;
    while !rest.is_empty() {
        let n = if toggle { a } else { b }.min(rest.len());
        chunked.feed(&rest[..n]);
        rest = &rest[n..];
        toggle = !toggle;
    }
    assert_eq!(format!("{:?}", chunked.finish()), whole);
});
