//! Environment overrides: `CUTOVER_` + the key path upper-cased, `__`
//! between levels (`CUTOVER_CLUSTERS__ORIGIN__PASSWORD`); lists are
//! comma-separated.

use toml::Value;

use super::Problem;

/// How a variable for a key the file does not set is typed; every other key
/// takes the raw string (so a password of digits stays a string).
const LIST_KEYS: &[&str] = &["contact_points", "instances"];
const INTEGER_KEYS: &[&str] = &[
    "max_client_connections",
    "max_in_flight_per_connection",
    "prepared_cache_entries",
    "index",
    "tokens_per_instance",
    "worker_threads",
];
const BOOL_KEYS: &[&str] = &["add_timestamps", "replace_server_functions"];

/// Applies every `CUTOVER_*` variable to `root`; returns the variables that
/// could not be applied.
pub fn apply_overrides(
    root: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<Problem> {
    let mut errors = Vec::new();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with("CUTOVER_"))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name["CUTOVER_".len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            errors.push(Problem::at(
                path.join("."),
                format!("environment variable {name}: empty key segment"),
            ));
            continue;
        }
        if let Err(e) = set(root, &path, &raw) {
            errors.push(Problem::at(
                path.join("."),
                format!("environment variable {name}: {e}"),
            ));
        }
    }
    errors
}

fn set(root: &mut Value, path: &[String], raw: &str) -> Result<(), String> {
    let mut node = root;
    for seg in &path[..path.len() - 1] {
        let table = node
            .as_table_mut()
            .ok_or_else(|| format!("`{seg}` is inside a value that is not a table"))?;
        node = table
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Default::default()));
    }
    let table = node.as_table_mut().ok_or("the parent key is not a table")?;
    let key = path.last().expect("non-empty path");
    let value = match table.get(key) {
        Some(Value::Array(_)) => list(raw),
        Some(Value::Integer(_)) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("\"{raw}\" is not an integer"))?,
        ),
        Some(Value::Boolean(_)) => {
            Value::Boolean(bool_of(raw).ok_or_else(|| format!("\"{raw}\" is not true or false"))?)
        }
        Some(Value::Float(_)) => Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("\"{raw}\" is not a number"))?,
        ),
        Some(Value::Table(_)) => return Err("names a table, not a value".into()),
        _ if LIST_KEYS.contains(&key.as_str()) => list(raw),
        _ if INTEGER_KEYS.contains(&key.as_str()) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("\"{raw}\" is not an integer"))?,
        ),
        _ if BOOL_KEYS.contains(&key.as_str()) => {
            Value::Boolean(bool_of(raw).ok_or_else(|| format!("\"{raw}\" is not true or false"))?)
        }
        _ => Value::String(raw.to_string()),
    };
    table.insert(key.clone(), value);
    Ok(())
}

fn list(raw: &str) -> Value {
    Value::Array(
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.into()))
            .collect(),
    )
}

fn bool_of(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}
