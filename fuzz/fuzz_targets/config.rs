//! The config loader (TOML, `RESIDENCY__…` overrides, typed parse with the key path, then
//! every validation) over arbitrary text, for the gateway and the node config.
#![no_main]
use residency_config::load::{from_str, Validate};

fn check<T: serde::de::DeserializeOwned + Validate>(text: &str) {
    if let Ok(mut cfg) = from_str::<T>(text, &Vec::new()) {
        cfg.resolve_paths(std::path::Path::new("/etc/residency"));
        let _ = cfg.validate();
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check::<residency_config::gateway::GatewayConfig>(text);
        check::<residency_config::node::NodeConfig>(text);
    }
});
