//! portcullis-extract: the whole Inspection (type sniffing, nesting, scanning) on arbitrary
//! bytes, with declared hints and chunk size picked by the first byte. No panic; decoded and
//! buffered bytes stay within the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_extract::fuzzing::inspection(data));
