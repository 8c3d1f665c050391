//! The local source in memory: its files, the objects their documents define,
//! and edits document by document. Pure: the caller reads the directory in and
//! writes the [`Change`]s out.
//!
//! Edits are textual. A replaced or removed document's bytes change; every
//! other byte of the file (other documents, their comments, separators) stays
//! as it was. Documents are told apart as YAML does, at `---` lines and after
//! `...` lines; a JSON file is a stream of values. Each document is read with
//! the agent's own parser ([`parse_bundle`]), so "the document that defines
//! Pod default/web" means exactly what the agent would see.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::manifest::{parse_bundle, BundleFile, Located, Object};
use crate::state::ObjectKey;

/// Where one document sits in its file's text. `[start, body)` is kept when
/// the document is replaced (its bare `---` line, or a JSON value's leading
/// whitespace), `[body, tail)` is the document itself, `[tail, end)` is kept
/// too (a closing `...` line, trailing whitespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub body: usize,
    pub tail: usize,
    pub end: usize,
    /// `[start, body)` may stay as it is: not a `--- |` style line that
    /// carries content of the document.
    pub keep_prefix: bool,
}

/// Whether a file is read as JSON (as the agent decides: by its extension).
pub(crate) fn is_json(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// The documents of a file's text, in order, covering it entirely.
pub(crate) fn split(name: &str, text: &str) -> Vec<Span> {
    if is_json(name) {
        split_json(text)
    } else {
        split_yaml(text)
    }
}

/// `---` or `...` at the start of a line, followed by white space or nothing.
fn marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])).then_some(rest)
}

fn split_yaml(text: &str) -> Vec<Span> {
    struct Open {
        start: usize,
        body: usize,
        keep_prefix: bool,
    }
    fn close(spans: &mut Vec<Span>, open: &Open, tail: usize, end: usize) {
        if end > open.start {
            spans.push(Span {
                start: open.start,
                body: open.body,
                tail,
                end,
                keep_prefix: open.keep_prefix,
            });
        }
    }
    let mut spans = Vec::new();
    let mut open = Open {
        start: 0,
        body: 0,
        keep_prefix: true,
    };
    // Start of a `...` line that ended the open document.
    let mut ended: Option<usize> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let at = pos;
        pos += line.len();
        if let Some(rest) = marker(line, "---") {
            close(&mut spans, &open, ended.unwrap_or(at), at);
            let rest = rest.trim_start();
            open = Open {
                start: at,
                body: pos,
                keep_prefix: rest.is_empty() || rest.starts_with('#'),
            };
            ended = None;
        } else if let Some(tail) = ended {
            // Content after `...` without `---` is the next document.
            close(&mut spans, &open, tail, at);
            open = Open {
                start: at,
                body: at,
                keep_prefix: true,
            };
            ended = None;
        }
        if marker(line, "...").is_some() {
            ended = Some(at);
        }
    }
    close(&mut spans, &open, ended.unwrap_or(pos), pos);
    spans
}

fn split_json(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    while let Some(Ok(_)) = stream.next() {
        let end = stream.byte_offset();
        let value = &text[start..end];
        let body = start + (value.len() - value.trim_start().len());
        spans.push(Span {
            start,
            body,
            tail: end,
            end,
            keep_prefix: true,
        });
        start = end;
    }
    let rest = &text[start..];
    match spans.last_mut() {
        Some(last) if rest.trim().is_empty() => last.end = text.len(),
        _ if rest.is_empty() => {}
        // Not JSON (the agent's parser says why): one document, found by nobody.
        _ => spans.push(Span {
            start,
            body: start,
            tail: text.len(),
            end: text.len(),
            keep_prefix: true,
        }),
    }
    spans
}

/// What one document of a file defines.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub span: Span,
    /// The objects it defines (a `List` several), valid or not.
    pub keys: Vec<ObjectKey>,
    /// The valid ones, as the agent reads them.
    pub objects: Vec<Object>,
    /// Some of it cannot be told apart: unreadable, or without kind or name.
    pub anonymous: bool,
    /// A `kind: List`.
    pub list: bool,
}

impl Document {
    /// The valid object it defines under `key`.
    pub fn object(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.iter().find(|o| o.key() == *key)
    }

    /// Whether the document is `key` and nothing else.
    fn only(&self, key: &ObjectKey) -> bool {
        !self.list && !self.anonymous && self.keys.len() == 1 && self.keys[0] == *key
    }
}

/// What `content`, read as a file named `name`, defines.
#[derive(Debug, Default)]
struct Parsed {
    keys: Vec<ObjectKey>,
    objects: Vec<Object>,
    anonymous: bool,
}

impl Parsed {
    fn of(name: &str, content: &str) -> Parsed {
        let file = BundleFile {
            name: name.to_owned(),
            content: content.as_bytes().to_vec(),
        };
        let mut parsed = Parsed::default();
        match parse_bundle(&[file]) {
            Ok(located) => {
                for Located { object, .. } in located {
                    parsed.keys.push(object.key());
                    parsed.objects.push(object);
                }
            }
            Err(e) => {
                for problem in e.problems {
                    match problem.object {
                        Some(key) if !parsed.keys.contains(&key) => parsed.keys.push(key),
                        Some(_) => {}
                        None => parsed.anonymous = true,
                    }
                }
            }
        }
        parsed
    }

    fn extend(&mut self, other: Parsed) {
        for key in other.keys {
            if !self.keys.contains(&key) {
                self.keys.push(key);
            }
        }
        self.objects.extend(other.objects);
        self.anonymous |= other.anonymous;
    }
}

/// The document's value as written (no defaults), when it reads as one.
fn raw_value(name: &str, text: &str, span: &Span) -> Option<Value> {
    if is_json(name) {
        serde_json::from_str(&text[span.body..span.tail]).ok()
    } else {
        serde_yaml_ng::from_str(&text[span.start..span.end]).ok()
    }
}

fn is_list(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some("List")
}

/// The items of a `List` value, if it is one.
fn list_items(value: &Value) -> Option<&Vec<Value>> {
    if is_list(value) {
        value.get("items").and_then(Value::as_array)
    } else {
        None
    }
}

/// What one item of a `List` in file `name` defines.
fn item(name: &str, item: &Value) -> Parsed {
    let text = serde_json::to_string(item).unwrap_or_default();
    let mut parsed = Parsed::of(name, &text);
    // The agent refuses a List in a List rather than reading its items.
    parsed.anonymous |= is_list(item);
    parsed
}

/// Every document of a file and what it defines.
pub(crate) fn documents(name: &str, text: &str) -> Vec<Document> {
    split(name, text)
        .into_iter()
        .map(|span| {
            let raw = raw_value(name, text, &span);
            // A List's items one by one: the valid ones are found even when
            // another item is invalid.
            let parsed = match raw.as_ref().and_then(list_items) {
                Some(items) => {
                    let mut parsed = Parsed::default();
                    for i in items {
                        parsed.extend(item(name, i));
                    }
                    parsed
                }
                None => Parsed::of(name, &text[span.start..span.end]),
            };
            Document {
                span,
                keys: parsed.keys,
                objects: parsed.objects,
                anonymous: parsed.anonymous,
                list: raw.as_ref().is_some_and(is_list),
            }
        })
        .collect()
}

/// An object to put into the local source, with what the user wrote.
#[derive(Debug, Clone)]
pub(crate) struct NewObject {
    pub key: ObjectKey,
    /// Validated and defaulted, as the agent will read it.
    pub object: Object,
    /// Its YAML document as written (comments included), when that document
    /// is this one object.
    pub text: Option<String>,
    /// Its value as written, without defaults.
    pub raw: Option<Value>,
}

impl NewObject {
    /// An edited object (its value as written), validated as the agent will
    /// read it: every problem when it is not valid.
    pub fn from_raw(key: &ObjectKey, raw: Value) -> Result<NewObject, Vec<String>> {
        let file = BundleFile {
            name: format!("{key}.json"),
            content: serde_json::to_vec(&raw).unwrap_or_default(),
        };
        let mut parsed = parse_bundle(&[file]).map_err(|e| {
            e.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })?;
        match parsed.pop() {
            Some(located) if parsed.is_empty() && located.object.key() == *key => Ok(NewObject {
                key: key.clone(),
                object: located.object,
                text: None,
                raw: Some(raw),
            }),
            _ => Err(vec![format!(
                "the edit of {key} does not read as that object"
            )]),
        }
    }
}

/// The objects of an input that parsed (`parsed` is `parse_bundle(files)`),
/// each with its text as written.
pub(crate) fn new_objects(files: &[BundleFile], parsed: Vec<Located>) -> Vec<NewObject> {
    let mut written: BTreeMap<ObjectKey, (Option<String>, Option<Value>)> = BTreeMap::new();
    for file in files {
        let Ok(text) = std::str::from_utf8(&file.content) else {
            continue;
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for document in documents(&file.name, text) {
            let span = document.span;
            let raw = raw_value(&file.name, text, &span);
            if let Some(items) = raw.as_ref().and_then(list_items) {
                for i in items {
                    for key in item(&file.name, i).keys {
                        written.insert(key, (None, Some(i.clone())));
                    }
                }
            } else if let [key] = document.keys.as_slice() {
                let yaml = (!is_json(&file.name)).then(|| {
                    let mut body = text[span.body..span.tail].to_owned();
                    if !body.ends_with('\n') {
                        body.push('\n');
                    }
                    body
                });
                written.insert(key.clone(), (yaml, raw));
            }
        }
    }
    parsed
        .into_iter()
        .map(|located| {
            let key = located.object.key();
            let (text, raw) = written.remove(&key).unwrap_or_default();
            NewObject {
                key,
                object: located.object,
                text,
                raw,
            }
        })
        .collect()
}

/// A value as a document of a YAML or JSON file.
fn to_text(value: &Value, json: bool) -> String {
    if json {
        serde_json::to_string_pretty(value).unwrap_or_default()
    } else {
        serde_yaml_ng::to_string(value).unwrap_or_default()
    }
}

/// The document to write for `new` in file `name`: as the user wrote it when
/// that reads back as the same object, else their value re-rendered, else
/// the object with its defaults.
fn render(new: &NewObject, name: &str) -> Result<String, String> {
    let json = is_json(name);
    let mut candidates = Vec::new();
    if let (Some(text), false) = (&new.text, json) {
        candidates.push(text.clone());
    }
    if let Some(raw) = &new.raw {
        candidates.push(to_text(raw, json));
    }
    candidates.push(to_text(&new.object.to_json(), json));
    candidates
        .into_iter()
        .find(|text| {
            let parsed = Parsed::of(name, text);
            !parsed.anonymous && parsed.objects.len() == 1 && parsed.objects[0] == new.object
        })
        .ok_or_else(|| {
            format!(
                "cannot write {} into {name} so that it reads back the same; add it there by hand",
                new.key
            )
        })
}

/// What `apply` did with an object, in kubectl's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// A file to write or remove, by its name in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Write the whole file; `mode` is for a new file (an existing one keeps its own).
    Write {
        name: String,
        content: Vec<u8>,
        mode: u32,
    },
    Remove {
        name: String,
    },
}

/// One file of the local source.
#[derive(Debug)]
struct LocalFile {
    /// File name within the directory.
    name: String,
    /// On disk; `None` for a file this edit creates.
    original: Option<Vec<u8>>,
    /// After the edits; `None` once removed.
    content: Option<Vec<u8>>,
    /// The documents of `content` (empty when it is not UTF-8).
    documents: Vec<Document>,
}

/// The local source: a directory of manifests, edited in memory.
#[derive(Debug)]
pub(crate) struct LocalSource {
    dir: PathBuf,
    /// Sorted by name, as the agent reads them.
    files: Vec<LocalFile>,
    /// What each edited object must read as afterwards (`None`: gone).
    expected: BTreeMap<ObjectKey, Option<Object>>,
    /// Names of changed files, in the order they were first changed.
    order: Vec<String>,
}

impl LocalSource {
    /// The directory `dir` with these manifest files (name within `dir`, bytes).
    pub fn new(dir: PathBuf, files: Vec<(String, Vec<u8>)>) -> LocalSource {
        let mut source = LocalSource {
            dir,
            files: Vec::new(),
            expected: BTreeMap::new(),
            order: Vec::new(),
        };
        for (name, content) in files {
            let documents = source.documents_of(&name, Some(&content));
            source.files.push(LocalFile {
                name,
                original: Some(content.clone()),
                content: Some(content),
                documents,
            });
        }
        source.files.sort_by(|a, b| a.name.cmp(&b.name));
        source
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How a file is named to the parser (and in problems): its full path, as the agent names it.
    fn path_name(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn documents_of(&self, name: &str, content: Option<&[u8]>) -> Vec<Document> {
        match content.map(std::str::from_utf8) {
            Some(Ok(text)) => documents(&self.path_name(name), text),
            _ => Vec::new(),
        }
    }

    /// The file and document that define `key`.
    fn find(&self, key: &ObjectKey) -> Option<(usize, usize)> {
        self.files.iter().enumerate().find_map(|(f, file)| {
            file.documents
                .iter()
                .position(|d| d.keys.contains(key))
                .map(|d| (f, d))
        })
    }

    /// The file (name within the directory) that defines `key`.
    #[cfg(test)]
    pub fn file_of(&self, key: &ObjectKey) -> Option<&str> {
        self.find(key).map(|(f, _)| self.files[f].name.as_str())
    }

    fn text(&self, f: usize) -> &str {
        self.files[f]
            .content
            .as_deref()
            .and_then(|c| std::str::from_utf8(c).ok())
            .unwrap_or("")
    }

    fn set(&mut self, f: usize, content: Option<Vec<u8>>) {
        let name = self.files[f].name.clone();
        self.files[f].documents = self.documents_of(&name, content.as_deref());
        self.files[f].content = content;
        if !self.order.contains(&name) {
            self.order.push(name);
        }
    }

    /// The object `key` as its document writes it (no defaults), when a
    /// document defines it.
    pub fn raw(&self, key: &ObjectKey) -> Option<Value> {
        let (f, d) = self.find(key)?;
        let name = self.path_name(&self.files[f].name);
        let value = raw_value(&name, self.text(f), &self.files[f].documents[d].span)?;
        match list_items(&value) {
            Some(items) => items
                .iter()
                .find(|i| item(&name, i).keys.contains(key))
                .cloned(),
            None => Some(value),
        }
    }

    /// Puts `new` into the source: replaces the document that defines it,
    /// else adds a file `<kind>-<namespace>-<name>.yaml`.
    pub fn put(&mut self, new: &NewObject) -> Result<Outcome, String> {
        let key = &new.key;
        let Some((f, d)) = self.find(key) else {
            let name = self.new_file_name(key);
            let text = render(new, &self.path_name(&name))?;
            let documents = self.documents_of(&name, Some(text.as_bytes()));
            let at = self.files.partition_point(|file| file.name < name);
            self.files.insert(
                at,
                LocalFile {
                    name: name.clone(),
                    original: None,
                    content: Some(text.into_bytes()),
                    documents,
                },
            );
            self.order.push(name);
            self.expected.insert(key.clone(), Some(new.object.clone()));
            return Ok(Outcome::Created);
        };
        let document = &self.files[f].documents[d];
        if document.object(key) == Some(&new.object) {
            return Ok(Outcome::Unchanged);
        }
        let path = self.path_name(&self.files[f].name);
        let text = self.text(f);
        let span = document.span;
        let body = if document.only(key) {
            render(new, &path)?
        } else {
            let value = new.raw.clone().unwrap_or_else(|| new.object.to_json());
            edit_list(&path, text, &span, key, Some(value))?
        };
        let edited = replace(text, &span, &body);
        self.set(f, Some(edited.into_bytes()));
        self.expected.insert(key.clone(), Some(new.object.clone()));
        Ok(Outcome::Configured)
    }

    /// Removes the object `key` from the source: its document (its file when
    /// nothing else is left in it), or its item of a `List`. `false` when no
    /// document defines it.
    pub fn remove(&mut self, key: &ObjectKey) -> Result<bool, String> {
        let Some((f, d)) = self.find(key) else {
            return Ok(false);
        };
        let path = self.path_name(&self.files[f].name);
        let text = self.text(f);
        let docs = &self.files[f].documents;
        let document = &docs[d];
        let last_item = document.list && document.keys.len() == 1 && !document.anonymous;
        let edited = if document.only(key) || last_item {
            let spans: Vec<Span> = docs.iter().map(|d| d.span).collect();
            remove_span(text, &spans, d, is_json(&path))
        } else {
            let body = edit_list(&path, text, &document.span, key, None)?;
            replace(text, &document.span, &body)
        };
        let left = documents(&path, &edited);
        let empty = left
            .iter()
            .all(|d| d.keys.is_empty() && !d.anonymous && !d.list);
        self.set(f, (!empty).then(|| edited.into_bytes()));
        self.expected.insert(key.clone(), None);
        Ok(true)
    }

    /// A name for a new file holding `key` that no file has yet.
    fn new_file_name(&self, key: &ObjectKey) -> String {
        let mut base = key.kind.to_ascii_lowercase();
        if let Some(ns) = &key.namespace {
            base.push('-');
            base.push_str(ns);
        }
        base.push('-');
        base.push_str(&key.name);
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let taken = |name: &str| self.files.iter().any(|f| f.name.eq_ignore_ascii_case(name));
        let mut name = format!("{base}.yaml");
        let mut n = 2;
        while taken(&name) {
            name = format!("{base}-{n}.yaml");
            n += 1;
        }
        name
    }

    /// The files as they are now, as the agent would read them.
    pub fn bundle(&self) -> Vec<BundleFile> {
        self.files
            .iter()
            .filter_map(|f| {
                f.content.as_ref().map(|content| BundleFile {
                    name: self.path_name(&f.name),
                    content: content.clone(),
                })
            })
            .collect()
    }

    fn original_bundle(&self) -> Vec<BundleFile> {
        self.files
            .iter()
            .filter_map(|f| {
                f.original.as_ref().map(|content| BundleFile {
                    name: self.path_name(&f.name),
                    content: content.clone(),
                })
            })
            .collect()
    }

    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.files.iter().any(|f| f.content != f.original)
    }

    /// Checks the source after the edits as the agent will: every problem
    /// (one line each) if it would be rejected, or if an edit would change
    /// more than the objects edited.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let after = parse_bundle(&self.bundle()).map_err(|e| {
            e.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })?;
        let after: BTreeMap<ObjectKey, (&str, &Object)> = after
            .iter()
            .map(|l| (l.object.key(), (l.file.as_str(), &l.object)))
            .collect();
        let mut problems = Vec::new();
        for (key, expected) in &self.expected {
            let now = after.get(key).map(|(_, o)| *o);
            if now != expected.as_ref() {
                problems.push(format!(
                    "{key}: the edited files would not read as intended; edit them by hand"
                ));
            }
        }
        // The other objects must read as they did (an edited List is re-rendered).
        if let Ok(before) = parse_bundle(&self.original_bundle()) {
            for located in before {
                let key = located.object.key();
                if self.expected.contains_key(&key) {
                    continue;
                }
                if after.get(&key).map(|(_, o)| *o) != Some(&located.object) {
                    problems.push(format!(
                        "{}: {key} would change too; edit that file by hand",
                        located.file
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The files to write or remove, in the order they were first edited,
    /// files that add a Namespace first (so the agent never sees objects in
    /// a namespace before it).
    pub fn changes(&self) -> Vec<Change> {
        let mut changes: Vec<(bool, Change)> = Vec::new();
        for name in &self.order {
            let Some(file) = self.files.iter().find(|f| f.name == *name) else {
                continue;
            };
            if file.content == file.original {
                continue;
            }
            let change = match &file.content {
                Some(content) => {
                    let secret = file
                        .documents
                        .iter()
                        .flat_map(|d| &d.keys)
                        .any(|k| k.kind == "Secret");
                    Change::Write {
                        name: file.name.clone(),
                        content: content.clone(),
                        mode: if secret { 0o600 } else { 0o644 },
                    }
                }
                None if file.original.is_some() => Change::Remove {
                    name: file.name.clone(),
                },
                None => continue,
            };
            let namespace = matches!(change, Change::Write { .. })
                && file
                    .documents
                    .iter()
                    .flat_map(|d| &d.keys)
                    .any(|k| k.kind == "Namespace");
            changes.push((!namespace, change));
        }
        changes.sort_by_key(|(later, _)| *later);
        changes.into_iter().map(|(_, c)| c).collect()
    }
}

/// `text` with the document at `span` replaced by `body`.
fn replace(text: &str, span: &Span, body: &str) -> String {
    let prefix = if span.keep_prefix {
        &text[span.start..span.body]
    } else {
        "---\n"
    };
    let mut out = String::with_capacity(text.len() + body.len());
    out.push_str(&text[..span.start]);
    out.push_str(prefix);
    out.push_str(body);
    out.push_str(&text[span.tail..]);
    out
}

/// `text` without document `i` of `spans`.
fn remove_span(text: &str, spans: &[Span], i: usize, json: bool) -> String {
    let span = spans[i];
    let mut out = text[..span.start].to_owned();
    // The next document began after this one's `...`: keep it apart from the one before.
    if let (Some(before), Some(next)) = (i.checked_sub(1).map(|b| spans[b]), spans.get(i + 1)) {
        if !json && next.start == next.body && before.tail == before.end {
            out.push_str("---\n");
        }
    }
    out.push_str(&text[span.end..]);
    out
}

/// The `List` document at `span` with its item `key` replaced by `value`
/// (removed for `None`), re-rendered.
fn edit_list(
    name: &str,
    text: &str,
    span: &Span,
    key: &ObjectKey,
    value: Option<Value>,
) -> Result<String, String> {
    let cannot = |why: &str| format!("cannot edit {key} in {name}: {why}; edit the file by hand");
    let mut raw = raw_value(name, text, span).ok_or_else(|| cannot("the List does not read"))?;
    let items = raw
        .get_mut("items")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| cannot("the document is not a List"))?;
    let at = items
        .iter()
        .position(|i| item(name, i).keys.contains(key))
        .ok_or_else(|| cannot("no item of the List defines it"))?;
    match value {
        Some(value) => items[at] = value,
        None => {
            items.remove(at);
        }
    }
    Ok(to_text(&raw, is_json(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_bundle;

    fn pod(name: &str, image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
        )
    }

    fn cm(name: &str, value: &str) -> String {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: '{value}'\n"
        )
    }

    fn new(text: &str) -> NewObject {
        let files = vec![BundleFile {
            name: "in.yaml".into(),
            content: text.as_bytes().to_vec(),
        }];
        let parsed = parse_bundle(&files).expect("test input parses");
        let mut objects = new_objects(&files, parsed);
        assert_eq!(objects.len(), 1);
        objects.remove(0)
    }

    fn source(files: &[(&str, &str)]) -> LocalSource {
        LocalSource::new(
            PathBuf::from("/m"),
            files
                .iter()
                .map(|(n, c)| ((*n).to_owned(), c.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// The files after the edits: (name, text) of each written one, and the removed ones.
    fn written(source: &LocalSource) -> (Vec<(String, String)>, Vec<String>) {
        let mut writes = Vec::new();
        let mut removes = Vec::new();
        for change in source.changes() {
            match change {
                Change::Write { name, content, .. } => writes.push((
                    name,
                    String::from_utf8(content).expect("written text is UTF-8"),
                )),
                Change::Remove { name } => removes.push(name),
            }
        }
        (writes, removes)
    }

    fn key(kind: &str, ns: Option<&str>, name: &str) -> ObjectKey {
        match ns {
            Some(ns) => ObjectKey::namespaced(kind, ns, name),
            None => ObjectKey::cluster(kind, name),
        }
    }

    #[test]
    fn yaml_documents_split_at_markers() {
        fn check(text: &str, expect: &[&str]) {
            let spans = split("a.yaml", text);
            let got: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
            assert_eq!(got, expect, "{text:?}");
            assert_eq!(got.concat(), text, "spans cover the text");
        }
        check("", &[]);
        check("a: 1\n", &["a: 1\n"]);
        check("---\na: 1\n", &["---\na: 1\n"]);
        check("a: 1\n---\nb: 2", &["a: 1\n", "---\nb: 2"]);
        check(
            "# head\na: 1\n--- # two\nb: 2\n---\n",
            &["# head\na: 1\n", "--- # two\nb: 2\n", "---\n"],
        );
        // `----` and indented `---` are content, not markers.
        check("a: |\n  ---\n----: 1\n", &["a: |\n  ---\n----: 1\n"]);
        check("a: 1\n...\nb: 2\n", &["a: 1\n...\n", "b: 2\n"]);
        check("a: 1\r\n---\r\nb: 2\r\n", &["a: 1\r\n", "---\r\nb: 2\r\n"]);
        let spans = split("a.yaml", "a: 1\n...\n");
        assert_eq!(spans[0].tail, 5, "the `...` line is kept on replace");
        let spans = split("a.yaml", "--- |\n  x\n");
        assert!(!spans[0].keep_prefix);
    }

    #[test]
    fn json_documents_split_between_values() {
        let text = "{\"a\": 1}\n  {\"b\": 2}\n";
        let spans = split("a.json", text);
        let got: Vec<(&str, &str)> = spans
            .iter()
            .map(|s| (&text[s.start..s.body], &text[s.body..s.tail]))
            .collect();
        assert_eq!(got, [("", "{\"a\": 1}"), ("\n  ", "{\"b\": 2}")]);
        assert_eq!(spans[1].end, text.len());
    }

    #[test]
    fn replacing_a_document_keeps_the_others_and_their_comments() {
        let before = format!(
            "# the web tier\n{}---\n# settings, keep me\n{}--- # last\n{}",
            pod("web", "nginx:1"),
            cm("settings", "a"),
            pod("db", "postgres")
        );
        let mut source = source(&[("app.yaml", &before)]);
        let update = format!("# new image\n{}", cm("settings", "b"));
        assert_eq!(source.put(&new(&update)), Ok(Outcome::Configured));
        source.check().expect("still valid");
        let expect = format!(
            "# the web tier\n{}---\n{update}--- # last\n{}",
            pod("web", "nginx:1"),
            pod("db", "postgres")
        );
        assert_eq!(
            written(&source),
            (vec![("app.yaml".into(), expect)], vec![])
        );
    }

    #[test]
    fn an_equal_object_is_unchanged_and_writes_nothing() {
        let mut source = source(&[("web.yaml", &format!("# mine\n{}", pod("web", "nginx")))]);
        // Same object, other text (a default written out, no comment).
        let same = pod("web", "nginx") + "  restartPolicy: Always\n";
        assert_eq!(source.put(&new(&same)), Ok(Outcome::Unchanged));
        assert!(!source.changed());
        assert!(source.changes().is_empty());
    }

    #[test]
    fn new_objects_get_their_own_file() {
        fn check(text: &str, expect: &str) {
            let mut source = source(&[("other.yaml", &cm("x", "1"))]);
            assert_eq!(source.put(&new(text)), Ok(Outcome::Created));
            let (writes, removes) = written(&source);
            assert_eq!(writes.len(), 1);
            assert_eq!(writes[0].0, expect);
            assert_eq!(writes[0].1, text, "written as given");
            assert!(removes.is_empty());
        }
        check(&pod("web", "nginx"), "pod-default-web.yaml");
        check(
            &pod("web", "nginx").replace("name: web\n", "name: web\n  namespace: prod\n"),
            "pod-prod-web.yaml",
        );
        check(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n",
            "namespace-prod.yaml",
        );
        check(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec: {}\n",
            "statefulset-default-web.yaml",
        );
    }

    #[test]
    fn a_taken_file_name_gets_a_number() {
        let mut source = source(&[("pod-default-web.yaml", &cm("x", "1"))]);
        assert_eq!(source.put(&new(&pod("web", "nginx"))), Ok(Outcome::Created));
        let (writes, _) = written(&source);
        assert_eq!(writes[0].0, "pod-default-web-2.yaml");
    }

    #[test]
    fn a_change_that_would_not_parse_is_refused() {
        // The directory already holds a broken document: the agent would
        // reject the whole source after the edit, so apply must not write.
        let mut source = source(&[
            ("a.yaml", &pod("web", "nginx")),
            (
                "b.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: [1]\n",
            ),
        ]);
        assert_eq!(source.put(&new(&cm("new", "1"))), Ok(Outcome::Created));
        let problems = source.check().expect_err("refused");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("/m/b.yaml (document 1): ConfigMap default/c: data")),
            "{problems:?}"
        );
        // A duplicate across files is refused too.
        let mut source = source_dup();
        assert_eq!(source.put(&new(&cm("c", "2"))), Ok(Outcome::Configured));
        assert!(source.check().is_err());
    }

    fn source_dup() -> LocalSource {
        source(&[("a.yaml", &cm("c", "1")), ("b.yaml", &cm("c", "1"))])
    }

    #[test]
    fn removing_a_document_keeps_the_rest_of_its_file() {
        let before = format!("{}---\n# db\n{}", pod("web", "nginx"), pod("db", "pg"));
        let mut source = source(&[("app.yaml", &before)]);
        assert_eq!(source.remove(&key("Pod", Some("default"), "web")), Ok(true));
        source.check().expect("valid");
        assert_eq!(
            written(&source),
            (
                vec![("app.yaml".into(), format!("---\n# db\n{}", pod("db", "pg")))],
                vec![]
            )
        );
        let mut source = self::source(&[("app.yaml", &before)]);
        assert_eq!(source.remove(&key("Pod", Some("default"), "db")), Ok(true));
        assert_eq!(
            written(&source).0,
            vec![("app.yaml".into(), pod("web", "nginx"))]
        );
    }

    #[test]
    fn removing_the_only_document_removes_the_file() {
        let mut source = source(&[
            (
                "web.yaml",
                &format!("# the web pod\n---\n{}", pod("web", "nginx")),
            ),
            ("x.yaml", &cm("x", "1")),
        ]);
        assert_eq!(source.remove(&key("Pod", Some("default"), "web")), Ok(true));
        assert_eq!(
            source.remove(&key("Pod", Some("default"), "nope")),
            Ok(false)
        );
        source.check().expect("valid");
        assert_eq!(written(&source), (vec![], vec!["web.yaml".into()]));
    }

    #[test]
    fn removing_after_an_end_marker_keeps_documents_apart() {
        let before = format!("{}---\n{}...\n{}", cm("a", "1"), cm("b", "1"), cm("c", "1"));
        let mut source = source(&[("x.yaml", &before)]);
        assert_eq!(
            source.remove(&key("ConfigMap", Some("default"), "b")),
            Ok(true)
        );
        source.check().expect("a and c stay two documents");
        assert_eq!(
            written(&source).0[0].1,
            format!("{}---\n{}", cm("a", "1"), cm("c", "1"))
        );
    }

    #[test]
    fn list_items_are_edited_in_place() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n  data: {k: '1'}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n";
        let mut source = source(&[("l.yaml", list), ("p.yaml", &pod("web", "nginx"))]);
        assert_eq!(source.put(&new(&cm("a", "2"))), Ok(Outcome::Configured));
        source.check().expect("b unchanged, a edited");
        assert_eq!(
            source.remove(&key("ConfigMap", Some("default"), "b")),
            Ok(true)
        );
        source.check().expect("valid");
        let (writes, _) = written(&source);
        let objects = parse_bundle(&[BundleFile {
            name: "l.yaml".into(),
            content: writes[0].1.clone().into_bytes(),
        }])
        .expect("parses");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].object, new(&cm("a", "2")).object);
        // Its last item gone, the List document goes, and with it the file.
        assert_eq!(
            source.remove(&key("ConfigMap", Some("default"), "a")),
            Ok(true)
        );
        assert_eq!(written(&source).1, vec!["l.yaml".to_owned()]);
    }

    #[test]
    fn json_files_are_edited_as_json() {
        let before = "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"a\"}}\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\"}}\n";
        let mut source = source(&[("x.json", before)]);
        assert_eq!(source.put(&new(&cm("b", "2"))), Ok(Outcome::Configured));
        source.check().expect("valid JSON");
        let (writes, _) = written(&source);
        assert!(writes[0].1.starts_with(
            "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"a\"}}\n{"
        ));
        assert!(writes[0].1.ends_with("}\n"));
        assert_eq!(
            source.remove(&key("ConfigMap", Some("default"), "a")),
            Ok(true)
        );
        source.check().expect("valid JSON");
    }

    #[test]
    fn json_input_is_written_as_yaml() {
        let files = vec![BundleFile {
            name: "in.json".into(),
            content: br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"},"data":{"k":"0644"}}"#.to_vec(),
        }];
        let objects = new_objects(&files, parse_bundle(&files).expect("parses"));
        let mut source = source(&[]);
        assert_eq!(source.put(&objects[0]), Ok(Outcome::Created));
        source.check().expect("reads back the same");
        let (writes, _) = written(&source);
        assert_eq!(writes[0].0, "configmap-default-j.yaml");
        assert!(writes[0].1.contains("kind: ConfigMap"), "{}", writes[0].1);
    }

    #[test]
    fn secrets_get_private_files_and_namespaces_come_first() {
        let mut source = source(&[]);
        let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: prod\nstringData:\n  p: x\n";
        assert_eq!(source.put(&new(secret)), Ok(Outcome::Created));
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n";
        assert_eq!(source.put(&new(ns)), Ok(Outcome::Created));
        let changes = source.changes();
        let names: Vec<(&str, u32)> = changes
            .iter()
            .map(|c| match c {
                Change::Write { name, mode, .. } => (name.as_str(), *mode),
                Change::Remove { name } => (name.as_str(), 0),
            })
            .collect();
        assert_eq!(
            names,
            [
                ("namespace-prod.yaml", 0o644),
                ("secret-prod-s.yaml", 0o600)
            ]
        );
    }

    #[test]
    fn an_input_list_puts_each_item() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n";
        let files = vec![BundleFile {
            name: "in.yaml".into(),
            content: text.as_bytes().to_vec(),
        }];
        let objects = new_objects(&files, parse_bundle(&files).expect("parses"));
        assert_eq!(objects.len(), 2);
        assert!(objects.iter().all(|o| o.text.is_none() && o.raw.is_some()));
        let mut source = source(&[]);
        for o in &objects {
            assert_eq!(source.put(o), Ok(Outcome::Created));
        }
        source.check().expect("valid");
        assert_eq!(source.changes().len(), 2);
    }

    #[test]
    fn octal_modes_survive_rewriting() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec:\n    containers: [{name: c, image: busybox}]\n    volumes: [{name: v, configMap: {name: x, defaultMode: 0644}}]\n";
        let files = vec![BundleFile {
            name: "in.yaml".into(),
            content: text.as_bytes().to_vec(),
        }];
        let objects = new_objects(&files, parse_bundle(&files).expect("parses"));
        let mut source = source(&[]);
        assert_eq!(source.put(&objects[0]), Ok(Outcome::Created));
        source.check().expect("the mode reads back as 0644");
    }
}
