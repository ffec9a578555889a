//! Fuzzes the config loader: any text, with every `${VAR}` resolving.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let env = |name: &str| (name.len() % 2 == 0).then(|| format!("value-of-{name}-0123456789"));
    let _ = ferry::fuzzing::parse_config(text, std::path::Path::new("/fuzz/ferry.toml"), &env);
});
