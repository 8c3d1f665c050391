//! Bytes of one bundle file to JSON documents: YAML multi-document streams or
//! JSON (one value or several back to back), as `kubectl apply -f` reads them.
//! YAML is turned into JSON the way Kubernetes does (sigs.k8s.io/yaml): scalar
//! map keys become strings, duplicate keys are an error, tags are refused.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One document of a file, 1-based, with what it decoded to (never `null`:
/// empty and comment-only documents are skipped).
#[derive(Debug)]
pub(super) struct Document {
    pub index: usize,
    pub value: Value,
}

/// Why (part of) a file could not be read; `document` is 0 for the whole file.
#[derive(Debug, PartialEq)]
pub(super) struct DecodeError {
    pub document: usize,
    pub message: String,
}

/// Decodes `content` (named `name`) into its documents, and the problems met
/// on the way. A syntax error ends the file; a bad document (duplicate key)
/// does not stop the ones after it.
pub(super) fn documents(name: &str, content: &[u8]) -> (Vec<Document>, Vec<DecodeError>) {
    let text = match std::str::from_utf8(content) {
        Ok(text) => text,
        Err(e) => {
            let (line, column) = line_column(content, e.valid_up_to());
            let message = format!(
                "not valid UTF-8 at line {line}, column {column}: manifests must be UTF-8 text"
            );
            return (
                Vec::new(),
                vec![DecodeError {
                    document: 0,
                    message,
                }],
            );
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if is_json(name) {
        json_documents(text)
    } else {
        yaml_documents(text)
    }
}

/// Whether a file is read as JSON (by its `.json` extension) rather than YAML.
pub(super) fn is_json(name: &str) -> bool {
    name.rsplit('.')
        .next()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(content: &[u8], offset: usize) -> (usize, usize) {
    let before = &content[..offset.min(content.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

fn yaml_documents(text: &str) -> (Vec<Document>, Vec<DecodeError>) {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let semantic = Cell::new(false);
        match ValueSeed::root(&semantic).deserialize(document) {
            Ok(Value::Null) => {}
            Ok(value) => documents.push(Document { index, value }),
            Err(e) => {
                errors.push(DecodeError {
                    document: index,
                    message: format!("invalid YAML: {}", with_line(&e.to_string(), text)),
                });
                // After a syntax error the parser cannot find the next document.
                if !semantic.get() {
                    break;
                }
            }
        }
    }
    (documents, errors)
}

/// libyaml names the place of some errors by byte offset (`at position 16`):
/// name it by line and column, as it does for the others.
fn with_line(message: &str, text: &str) -> String {
    let Some((head, offset)) = message.rsplit_once(" at position ") else {
        return message.to_owned();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return message.to_owned();
    };
    let (line, column) = line_column(text.as_bytes(), offset);
    format!("{head} at line {line} column {column}")
}

fn json_documents(text: &str) -> (Vec<Document>, Vec<DecodeError>) {
    let mut documents = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Checked>();
    for (i, value) in stream.enumerate() {
        let index = i + 1;
        match value {
            Ok(Checked(Value::Null)) => {}
            Ok(Checked(value)) => documents.push(Document { index, value }),
            Err(e) => {
                // serde_json's message ends with "at line L column C".
                let message = format!("invalid JSON: {e}");
                return (
                    documents,
                    vec![DecodeError {
                        document: index,
                        message,
                    }],
                );
            }
        }
    }
    (documents, Vec::new())
}

/// A JSON value read through [`ValueSeed`] (duplicate keys refused).
struct Checked(Value);

impl<'de> de::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let semantic = Cell::new(false);
        ValueSeed::root(&semantic)
            .deserialize(deserializer)
            .map(Checked)
    }
}

/// Builds a `serde_json::Value` from any self-describing format, noting in
/// `semantic` when it refuses the content itself (rather than its syntax).
/// The formats add where: serde_yaml_ng the path and line, serde_json the line.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    semantic: &'a Cell<bool>,
}

impl<'a> ValueSeed<'a> {
    fn root(semantic: &'a Cell<bool>) -> Self {
        ValueSeed { semantic }
    }

    fn refuse<E: de::Error>(&self, message: impl fmt::Display) -> E {
        self.semantic.set(true);
        E::custom(message)
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    // Beyond 64 bits, as Go's JSON reads them: a float.
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        self.visit_f64(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| self.refuse(format!("{v} is not a number JSON can hold")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed { value: self })? {
            if object.contains_key(&key) {
                return Err(self.refuse(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(self.refuse("YAML tags are not supported in manifests"))
    }

    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Value, E> {
        Err(self.refuse("binary values are not supported in manifests"))
    }
}

/// A map key: strings as they are, other scalars as their text (`1: x` is
/// `"1": x`, as sigs.k8s.io/yaml reads it).
struct KeySeed<'a> {
    value: ValueSeed<'a>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        match self.value.deserialize(deserializer)? {
            Value::String(s) => Ok(s),
            Value::Null => Ok("null".to_owned()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Array(_) | Value::Object(_) => Err(self
                .value
                .refuse("a map key must be a string, not a list or a map")),
        }
    }
}

/// Kubernetes reads YAML 1.1, where `0644` is an octal number; YAML 1.2 (this
/// parser) reads it as the string "0644". File modes are where users write
/// octal: in a pod spec's configMap and secret volumes, they are read as
/// Kubernetes does.
pub(super) fn octal_file_modes(pod_spec: &mut Value) {
    let volumes = pod_spec.get_mut("volumes").and_then(Value::as_array_mut);
    for volume in volumes.into_iter().flatten() {
        for source in ["configMap", "secret"] {
            let Some(source) = volume.get_mut(source) else {
                continue;
            };
            octal(source.get_mut("defaultMode"));
            let items = source.get_mut("items").and_then(Value::as_array_mut);
            for item in items.into_iter().flatten() {
                octal(item.get_mut("mode"));
            }
        }
    }
}

fn octal(value: Option<&mut Value>) {
    let Some(value) = value else { return };
    let Some(text) = value.as_str() else { return };
    let is_octal =
        text.len() > 1 && text.starts_with('0') && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if let Some(mode) = is_octal
        .then(|| i64::from_str_radix(text, 8).ok())
        .flatten()
    {
        *value = Value::from(mode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Documents (index, value) and errors (document, message).
    type Expect<'a> = (Vec<(usize, Value)>, Vec<(usize, &'a str)>);

    fn check(name: &str, content: &[u8], expect: Expect<'_>) {
        let (docs, errs) = documents(name, content);
        let docs: Vec<(usize, Value)> = docs.into_iter().map(|d| (d.index, d.value)).collect();
        let errs: Vec<(usize, &str)> = errs
            .iter()
            .map(|e| (e.document, e.message.as_str()))
            .collect();
        assert_eq!((docs, errs), expect, "{name}");
    }

    #[test]
    fn streams() {
        check("a.yaml", b"", (vec![], vec![]));
        check("a.yaml", b"# only a comment\n", (vec![], vec![]));
        check(
            "a.yaml",
            b"---\na: 1\n---\n# nothing\n---\nb: [x, 2]\n...\n",
            (
                vec![(1, json!({"a": 1})), (3, json!({"b": ["x", 2]}))],
                vec![],
            ),
        );
        check(
            "a.yml",
            b"\xef\xbb\xbfdata:\n  1: one\n  true: yes\n  null: z\n  f: 1.5\n",
            (
                vec![(
                    1,
                    json!({"data": {"1": "one", "true": "yes", "null": "z", "f": 1.5}}),
                )],
                vec![],
            ),
        );
        check(
            "a.yaml",
            b"a: 1\na: 2\n---\nb: 1\n",
            (
                vec![(2, json!({"b": 1}))],
                vec![(1, "invalid YAML: duplicate key \"a\"")],
            ),
        );
        check(
            "a.yaml",
            b"spec:\n  containers:\n  - name: a\n    name: b\n",
            (
                vec![],
                vec![(
                    1,
                    "invalid YAML: spec.containers[0]: duplicate key \"name\" at line 3 column 5",
                )],
            ),
        );
        check(
            "a.yaml",
            b"ok: 1\n---\na: b: c\n---\nc: 1\n",
            (vec![(1, json!({"ok": 1}))], vec![(2, "invalid YAML: mapping values are not allowed in this context at line 3 column 5")]),
        );
        check(
            "a.yaml",
            b"a: !custom x\n",
            (
                vec![],
                vec![(
                    1,
                    "invalid YAML: a: YAML tags are not supported in manifests at line 1 column 4",
                )],
            ),
        );
        check(
            "a.yaml",
            b"a: .inf\n",
            (
                vec![],
                vec![(
                    1,
                    "invalid YAML: a: inf is not a number JSON can hold at line 1 column 4",
                )],
            ),
        );
        check(
            "a.yaml",
            b"a: 1\nb: \xff\n",
            (
                vec![],
                vec![(
                    0,
                    "not valid UTF-8 at line 2, column 4: manifests must be UTF-8 text",
                )],
            ),
        );
        check(
            "a.yaml",
            b"{\"a\": {\"b\": [1]}}",
            (vec![(1, json!({"a": {"b": [1]}}))], vec![]),
        );
    }

    #[test]
    fn json() {
        check(
            "a.json",
            b"{\"a\": 1}\n{\"b\": 2}\n",
            (vec![(1, json!({"a": 1})), (2, json!({"b": 2}))], vec![]),
        );
        check(
            "A.JSON",
            b"\t{\"a\":\t1}",
            (vec![(1, json!({"a": 1}))], vec![]),
        );
        check(
            "a.json",
            b"{\"a\": 1, \"a\": 2}",
            (
                vec![],
                vec![(1, "invalid JSON: duplicate key \"a\" at line 1 column 12")],
            ),
        );
        check(
            "a.json",
            b"{\"a\": 1,}",
            (
                vec![],
                vec![(1, "invalid JSON: trailing comma at line 1 column 9")],
            ),
        );
    }
}
