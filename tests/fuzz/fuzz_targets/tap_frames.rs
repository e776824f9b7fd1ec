#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| softether_fuzz::targets::tap_frames(data));
