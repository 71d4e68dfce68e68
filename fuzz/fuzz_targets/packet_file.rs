#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| etcd_trace::fuzzing::packet_file(data));
