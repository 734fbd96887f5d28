//! Policy, app-catalog and users files: arbitrary text must load or give problems naming lines
//! inside the file, never panic; a policy that loads must check and decide without panicking.
#![no_main]
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use portcullis_classify::{Catalog, FlowHead};
use portcullis_policy::{BodyFacts, Engine, Policy, Stage, Users};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count().max(1);
    let in_file = |e: portcullis_classify::LoadError| {
        for p in e.problems() {
            assert!(p.line <= lines + 1, "problem line {} beyond the file ({lines} lines): {p}", p.line);
        }
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match Policy::parse("fuzz.toml", text) {
        Ok(policy) => {
            let catalog = Catalog::builtin();
            let _ = policy.check(&catalog, None, now);
            let engine = Engine { catalog, policy: policy.into() };
            for (host, method, path) in [("mail.google.com", "POST", "/x"), ("web.whatsapp.com", "CONNECT", ""), ("a.example", "GET", "/")]
            {
                let flow = engine.classify(&FlowHead { host, method: Some(method), path: Some(path), ..Default::default() });
                for stage in [Stage::Connect, Stage::Request, Stage::Body] {
                    let findings = ["payment-card".to_string()];
                    let _ = engine.decide(None, &flow, stage, BodyFacts { findings: &findings, unscannable: true }, now);
                }
            }
        }
        Err(e) => in_file(e),
    }
    if let Err(e) = Catalog::from_sources(&[("fuzz.toml".to_string(), text.to_string())]) {
        in_file(e);
    }
    if let Err(e) = Users::parse("fuzz.toml", text) {
        in_file(e);
    }
});
