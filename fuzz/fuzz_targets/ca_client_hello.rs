//! `peek_client_hello` reads the first bytes of every CONNECT tunnel: untrusted input.
//! No panic on any bytes, and a parse never depends on trailing garbage after a complete hello.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(info)) = portcullis_ca::peek_client_hello(data) {
        let _ = info.sni.map(|s| s.len());
    }
});
