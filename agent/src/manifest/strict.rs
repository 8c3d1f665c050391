//! Strict field validation, as `kubectl apply` does by default since 1.27:
//! a field the typed object does not have is an error, not silently dropped.
//!
//! k8s-openapi ignores unknown fields while decoding, so they are found by
//! comparing what was written with the typed object serialized again: every
//! field it knows survives the round trip (maps such as labels keep all their
//! keys), so whatever is missing was unknown. A field written as `null` is
//! indistinguishable from an absent optional one and is let through.

use serde_json::Value;

/// Paths (`spec.containers[0].imagee`) of the fields in `written` that
/// `typed` does not have, in document order.
pub(super) fn unknown_fields(written: &Value, typed: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(written, typed, &mut String::new(), &mut found);
    found
}

fn walk(written: &Value, typed: &Value, path: &mut String, found: &mut Vec<String>) {
    match (written, typed) {
        (Value::Object(written), Value::Object(typed)) => {
            for (key, value) in written {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match typed.get(key) {
                    Some(known) => walk(value, known, path, found),
                    None if value.is_null() => {}
                    None => found.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(written), Value::Array(typed)) if written.len() == typed.len() => {
            for (i, (value, known)) in written.iter().zip(typed).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(value, known, path, found);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let check = |written: Value, typed: Value, expect: &[&str]| {
            assert_eq!(unknown_fields(&written, &typed), expect);
        };
        check(json!({"a": 1}), json!({"a": 1}), &[]);
        check(json!({"a": 1, "b": null}), json!({"a": 1}), &[]);
        check(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "imagee": "x"}], "x": {}}}),
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            &["spec.containers[1].imagee", "spec.x"],
        );
    }
}
