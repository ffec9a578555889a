//! Fuzzes the alertmanager payload parser (see `common`).
#![no_main]

mod common;

use ferry::fuzzing::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| common::parse_as(Source::Alertmanager, input.0, input.1));
