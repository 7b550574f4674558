//! The config loader on any text, with environment overrides from the
//! input.
//!
//! Properties: no panic; a config that loads writes back to TOML that loads
//! to the same config.

use cutover::config::Config;

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // A line `ENV NAME=VALUE` becomes an override, as CUTOVER_* would.
    let (vars, toml_text): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.starts_with("ENV "));
    let vars: Vec<(String, String)> = vars
        .iter()
        .filter_map(|l| l[4..].split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(c) = Config::from_toml(&toml_text.join("\n"), vars) else {
        return;
    };
    let written = toml::to_string(&c).expect("a loaded config serializes");
    let again = Config::from_toml(&written, Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("a written config does not load: {e}\n{written}"));
    assert_eq!(again, c);
}
