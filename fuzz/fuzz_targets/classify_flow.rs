//! Classification of what clients send (Host, CONNECT authority, SNI, method, path): never a
//! panic, host normalisation is idempotent, and the shipped policy decides every stage.
#![no_main]
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use portcullis_classify::{FlowHead, NormalHost, normalize_host};
use portcullis_policy::{BodyFacts, Engine, Stage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\n');
    let host = parts.next().unwrap_or("");
    let method = parts.next();
    let path = parts.next();
    if let Ok(NormalHost::Name(n)) = normalize_host(host) {
        assert_eq!(normalize_host(&n), Ok(NormalHost::Name(n.clone())), "normalisation must be idempotent");
    }
    thread_local! { static ENGINE: Engine = Engine::builtin(); }
    ENGINE.with(|engine| {
        let flow = engine.classify(&FlowHead { host, port: Some(443), ip: None, method, path });
        for stage in [Stage::Connect, Stage::Request, Stage::Body] {
            let _ = engine.decide(None, &flow, stage, BodyFacts::default(), SystemTime::now());
        }
        let _ = engine.tenant_headers(&flow);
    });
});
