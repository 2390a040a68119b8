//! The pipeline JSON Schema: generated from the config types, printed by `arun schema`, committed
//! as `schemas/pipeline.schema.json`, and used by `arun validate` to find every structural problem.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use super::duration::{DURATION_PATTERN, HumanDuration};
use super::file::PipelineFile;
use super::{KeyPath, Problem};
use crate::text::one_line;

/// The schema as JSON. TOML has no null, so `null` is removed from every type.
pub fn pipeline_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let generator = SchemaSettings::draft2020_12().into_generator();
        let schema = generator.into_root_schema_for::<PipelineFile>();
        let mut value = schema.to_value();
        strip_null(&mut value);
        value
    })
}

/// The schema as the committed file holds it: pretty JSON and a final newline.
pub fn pipeline_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(pipeline_schema()).expect("a schema serialises");
    text.push('\n');
    text
}

fn strip_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let single = types.remove(0);
                    map.insert("type".to_string(), single);
                }
            }
            if let Some(Value::Array(options)) = map.get("anyOf") {
                let kept: Vec<Value> = options
                    .iter()
                    .filter(|o| o.get("type") != Some(&Value::from("null")))
                    .cloned()
                    .collect();
                if kept.len() == 1 {
                    map.remove("anyOf");
                    if let Value::Object(only) = &kept[0] {
                        for (k, v) in only {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                } else {
                    map.insert("anyOf".to_string(), Value::Array(kept));
                }
            }
            if let Some(default) = map.get_mut("default") {
                remove_null_entries(default);
                if default.is_null() {
                    map.remove("default");
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The pipeline reference in Markdown, one table per TOML table, generated from the schema so the
/// reference in docs/reference.md cannot drift from the types (a test compares them).
pub fn reference_markdown() -> String {
    let root = pipeline_schema();
    let mut out = String::new();
    let mut sections = vec![(String::new(), root, false)];
    while let Some((table, node, array)) = sections.pop() {
        let node = follow_ref(root, node);
        let Some(properties) = node.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let heading = match (table.is_empty(), array) {
            (true, _) => "top level".to_string(),
            (false, true) => format!("`[[{table}]]`"),
            (false, false) => format!("`[{table}]`"),
        };
        out.push_str(&format!("### {heading}\n\n"));
        if !table.is_empty()
            && let Some(description) = node.get("description").and_then(Value::as_str)
        {
            out.push_str(&format!("{}\n\n", one_line(description)));
        }
        out.push_str("| key | type | meaning |\n|---|---|---|\n");
        let required: Vec<&str> = node
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut nested = Vec::new();
        for (key, property) in properties {
            let resolved = follow_ref(root, property);
            let path = if table.is_empty() {
                key.clone()
            } else {
                format!("{table}.{key}")
            };
            let (kind, child) = type_name(root, property);
            if let Some((child, is_array)) = child {
                nested.push((path.clone(), child, is_array));
            }
            let description = property
                .get("description")
                .or_else(|| resolved.get("description"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = if required.contains(&key.as_str()) {
                format!("{kind}, **required**")
            } else {
                kind
            };
            out.push_str(&format!(
                "| `{key}` | {kind} | {} |\n",
                one_line(description).replace('|', "\\|")
            ));
        }
        out.push('\n');
        // Pushed in reverse so that sub-tables come out in declaration order.
        sections.extend(nested.into_iter().rev());
    }
    out
}

/// A short type name for the reference, and the schema of a nested table to document.
fn type_name<'a>(root: &'a Value, property: &'a Value) -> (String, Option<(&'a Value, bool)>) {
    let reference = property
        .get("$ref")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let node = follow_ref(root, property);
    if reference.ends_with("/Duration") {
        return ("duration".to_string(), None);
    }
    if reference.ends_with("/Gpus") {
        return (
            "`\"auto\"`, array of integers or array of arrays".to_string(),
            None,
        );
    }
    if let Some(options) = node
        .get("oneOf")
        .or_else(|| node.get("enum"))
        .and_then(Value::as_array)
    {
        let names: Vec<String> = options
            .iter()
            .filter_map(|o| o.get("const").or(Some(o)).and_then(Value::as_str))
            .map(|name| format!("`{name}`"))
            .collect();
        return (format!("one of {}", names.join(", ")), None);
    }
    match node.get("type").and_then(Value::as_str) {
        Some("object") if node.get("properties").is_some() => {
            ("table".to_string(), Some((node, false)))
        }
        Some("object") => ("table of strings".to_string(), None),
        Some("array") => {
            let items = node.get("items").map(|i| follow_ref(root, i));
            match items {
                Some(items) if items.get("properties").is_some() => {
                    ("array of tables".to_string(), Some((items, true)))
                }
                Some(items) => {
                    let (inner, _) = type_name(root, items);
                    (format!("array of {inner}s"), None)
                }
                None => ("array".to_string(), None),
            }
        }
        Some(other) => (other.to_string(), None),
        None => ("value".to_string(), None),
    }
}

/// Defaults are serialised from the config types, where an unset option is `null`.
fn remove_null_entries(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(remove_null_entries);
    }
}

/// Checks a document (the TOML as JSON) against the schema; one problem per violation.
pub fn check(document: &Value) -> Vec<Problem> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(pipeline_schema()).expect("the generated schema is valid")
    });
    let mut problems: Vec<Problem> = validator
        .iter_errors(document)
        .flat_map(|error| {
            let path = key_path(error.instance_path());
            explain(&path, error.kind(), error.instance())
        })
        .collect();
    problems.dedup();
    problems
}

fn key_path(location: &jsonschema::paths::Location) -> KeyPath {
    let mut path = KeyPath::root();
    for segment in location.segments() {
        path = match segment {
            LocationSegment::Property(key) => path.key(&key),
            LocationSegment::Index(index) => path.index(index),
        };
    }
    path
}

/// Turns one schema violation into messages in arun's voice.
fn explain(path: &KeyPath, kind: &ValidationErrorKind, instance: &Value) -> Vec<Problem> {
    let problem = |message: String| vec![Problem::new(path.clone(), message)];
    match kind {
        ValidationErrorKind::AdditionalProperties { unexpected } => unknown_keys(path, unexpected),
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            let table = if path.is_root() {
                "the pipeline".to_string()
            } else {
                format!("`[{path}]`")
            };
            problem(format!("missing key `{key}`: {table} needs it"))
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => article(&t.to_string()),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| article(&t.to_string()))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            problem(format!("expected {expected}, found {}", describe(instance)))
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|o| format!("`{}`", o.as_str().unwrap_or("?")))
                        .collect()
                })
                .unwrap_or_default();
            problem(format!(
                "{} is not one of {}",
                describe(instance),
                options.join(", ")
            ))
        }
        ValidationErrorKind::OneOfNotValid { context } => match constants(context) {
            Some(options) => problem(format!(
                "{} is not one of {}",
                describe(instance),
                options.join(", ")
            )),
            None => problem(kind_fallback(kind, instance)),
        },
        ValidationErrorKind::Pattern { pattern } if pattern == DURATION_PATTERN => {
            let text = instance.as_str().unwrap_or_default();
            match text.parse::<HumanDuration>() {
                Err(err) => problem(err.to_string()),
                Ok(_) => problem(format!("invalid duration `{text}`")),
            }
        }
        ValidationErrorKind::Minimum { limit } => problem(format!(
            "must be at least {limit}, found {}",
            describe(instance)
        )),
        ValidationErrorKind::Maximum { limit } => problem(format!(
            "must be at most {limit}, found {}",
            describe(instance)
        )),
        _ => problem(kind_fallback(kind, instance)),
    }
}

/// One problem per unknown key of the table at `path`, at the key, with the known key it is
/// closest to, else the keys the table has.
fn unknown_keys(path: &KeyPath, unexpected: &[String]) -> Vec<Problem> {
    let known = known_keys(path);
    unexpected
        .iter()
        .map(|key| {
            let mut message = format!("unknown key `{key}`");
            match closest(key, &known) {
                Some(near) => message.push_str(&format!("; did you mean `{near}`?")),
                None if !known.is_empty() => {
                    message.push_str(&format!("; expected one of: {}", known.join(", ")))
                }
                None => {}
            }
            Problem {
                key: path.key(key),
                at_key: true,
                message,
            }
        })
        .collect()
}

/// The allowed values when every branch of a `oneOf` is a `const` (documented enums).
fn constants(branches: &[Vec<jsonschema::ValidationError<'static>>]) -> Option<Vec<String>> {
    let mut options = Vec::new();
    for branch in branches {
        for error in branch {
            match error.kind() {
                ValidationErrorKind::Constant { expected_value } => {
                    options.push(format!("`{}`", expected_value.as_str()?));
                }
                ValidationErrorKind::Type { .. } => {}
                _ => return None,
            }
        }
    }
    options.dedup();
    (!options.is_empty()).then_some(options)
}

fn kind_fallback(kind: &ValidationErrorKind, instance: &Value) -> String {
    format!(
        "{} fails the schema's `{}` rule",
        describe(instance),
        kind.keyword()
    )
}

/// "a string", "an integer", for messages.
fn article(json_type: &str) -> String {
    let noun = match json_type {
        "object" => "table",
        "number" => "number",
        other => other,
    };
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
}

/// A value as a TOML user would name it, with the value when short.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string `{s}`"),
        Value::Number(n) if n.is_f64() => format!("the float `{n}`"),
        Value::Number(n) => format!("the integer `{n}`"),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "a table".to_string(),
        Value::Null => "nothing".to_string(),
    }
}

/// The keys the schema allows in the table at `path`, sorted.
fn known_keys(path: &KeyPath) -> Vec<String> {
    use crate::config::diagnostic::Segment;
    let root = pipeline_schema();
    let mut node = root;
    for segment in &path.0 {
        node = follow_ref(root, node);
        node = match segment {
            Segment::Key(key) => match node.get("properties").and_then(|p| p.get(key)) {
                Some(next) => next,
                None => match node.get("additionalProperties") {
                    Some(next) if next.is_object() => next,
                    _ => return Vec::new(),
                },
            },
            Segment::Index(_) => match node.get("items") {
                Some(next) => next,
                None => return Vec::new(),
            },
        };
    }
    let node = follow_ref(root, node);
    let mut keys: Vec<String> = node
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

fn follow_ref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#")
            .and_then(|pointer| root.pointer(pointer))
            .unwrap_or(node),
        None => node,
    }
}

/// The known key nearest to a misspelt one, if it is near enough to be a typo.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_no_null_types() {
        let text = pipeline_schema_text();
        assert!(!text.contains("\"null\""), "{text}");
    }

    #[test]
    fn known_keys_follow_refs() {
        let keys = known_keys(&KeyPath::parse("metric"));
        assert!(keys.contains(&"regex".to_string()), "{keys:?}");
        let keys = known_keys(&KeyPath::parse("knob.0"));
        assert!(keys.contains(&"scale".to_string()), "{keys:?}");
    }

    #[test]
    fn typos_find_their_key() {
        let known = ["budget".to_string(), "build".to_string(), "run".to_string()];
        assert_eq!(closest("budjet", &known), Some("budget"));
        assert_eq!(closest("completely-else", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
