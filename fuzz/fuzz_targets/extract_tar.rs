//! portcullis-extract: the tar decoder on arbitrary bytes (first byte = chunk size). No panic,
//! no allocation beyond the small fuzzing limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_extract::fuzzing::{Decoder, run};

fuzz_target!(|data: &[u8]| run(Decoder::Tar, data));
