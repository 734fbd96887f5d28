//! The request-smuggling guard's framing tracker: no panic, and the same heads and conflicts
//! whether the bytes arrive whole or split at any point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_proxy::framing::{Conflicts, Tracker};

fn run(chunks: &[&[u8]]) -> (u64, Conflicts) {
    let c = Conflicts::default();
    let mut t = Tracker::new(65536, c.clone());
    for ch in chunks {
        t.feed(ch);
    }
    (t.requests_seen(), c)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let split = if body.is_empty() { 0 } else { first as usize % (body.len() + 1) };
    let (n_whole, c_whole) = run(&[body]);
    let (n_split, c_split) = run(&[&body[..split], &body[split..]]);
    assert_eq!(n_whole, n_split);
    for i in 0..n_whole {
        assert_eq!(c_whole.contains(i), c_split.contains(i));
    }
});
