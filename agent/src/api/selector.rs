//! `?labelSelector=` and `?fieldSelector=` as the API server parses them
//! (apimachinery `labels.Parse`, `fields.ParseSelector`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::resources::Resource;

/// A parsed label selector: every requirement must hold. Empty matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::NotEquals);
                } else {
                    tokens.push(Token::Bang);
                }
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::DoubleEquals);
                } else {
                    tokens.push(Token::Equals);
                }
            }
            '>' | '<' | '(' | ')' | ',' => {
                chars.next();
                tokens.push(match c {
                    '>' => Token::Greater,
                    '<' => Token::Less,
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            _ => {
                let mut ident = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "!=<>(),".contains(c) {
                        break;
                    }
                    ident.push(c);
                    chars.next();
                }
                tokens.push(Token::Ident(ident));
            }
        }
    }
    tokens
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters, alphanumeric at both ends, `-_.` inside.
fn valid_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "invalid label key {key:?}: prefix part must be a lowercase RFC 1123 subdomain"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!(
            "invalid label key {key:?}: name part must be non-empty"
        ));
    }
    valid_value(name).map_err(|_| {
        format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character (at most 63 characters)"
        )
    })
}

/// A label value: empty, or at most 63 characters, alphanumeric at both ends,
/// `-_.` inside.
fn valid_value(value: &str) -> Result<(), String> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: a valid label must be an empty string or consist of alphanumeric \
             characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)"
        ))
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Ident(s)) => Ok(s),
            other => Err(format!(
                "expected {what}, found {}",
                describe(other.as_ref())
            )),
        }
    }

    /// A value after `=`: may be empty (`a=` and `a=,b`).
    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Token::Ident(_)) => self.ident("a value"),
            None | Some(Token::Comma) => Ok(String::new()),
            other => Err(format!("expected a value, found {}", describe(other))),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, String> {
        match self.next() {
            Some(Token::Open) => {}
            other => return Err(format!("expected '(', found {}", describe(other.as_ref()))),
        }
        let mut values = BTreeSet::new();
        loop {
            let value = match self.peek() {
                Some(Token::Ident(_)) => self.ident("a value")?,
                _ => String::new(),
            };
            valid_value(&value)?;
            values.insert(value);
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::Close) => break,
                other => {
                    return Err(format!(
                        "expected ',' or ')', found {}",
                        describe(other.as_ref())
                    ))
                }
            }
        }
        if values.len() == 1 && values.contains("") {
            return Err("for 'in', 'notin' operators, values set can't be empty".into());
        }
        Ok(values)
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Token::Bang) {
            self.next();
            let key = self.ident("a label key after '!'")?;
            valid_key(&key)?;
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
            });
        }
        let key = self.ident("a label key")?;
        valid_key(&key)?;
        let op = match self.peek() {
            None | Some(Token::Comma) => Op::Exists,
            Some(Token::Equals | Token::DoubleEquals) => {
                self.next();
                let v = self.value()?;
                valid_value(&v)?;
                Op::Equals(v)
            }
            Some(Token::NotEquals) => {
                self.next();
                let v = self.value()?;
                valid_value(&v)?;
                Op::NotEquals(v)
            }
            Some(Token::Greater | Token::Less) => {
                let greater = self.next() == Some(Token::Greater);
                let v = self.ident("an integer")?;
                let n = v.parse::<i64>().map_err(|_| {
                    format!("for 'Gt', 'Lt' operators, the value must be an integer, not {v:?}")
                })?;
                if greater {
                    Op::GreaterThan(n)
                } else {
                    Op::LessThan(n)
                }
            }
            Some(Token::Ident(word)) if word == "in" || word == "notin" => {
                let is_in = word == "in";
                self.next();
                let set = self.set()?;
                if is_in {
                    Op::In(set)
                } else {
                    Op::NotIn(set)
                }
            }
            other => {
                return Err(format!(
                    "expected an operator after {key:?}, found {}",
                    describe(other)
                ))
            }
        };
        Ok(Requirement { key, op })
    }
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "end of string".into(),
        Some(Token::Ident(s)) => format!("{s:?}"),
        Some(Token::Bang) => "'!'".into(),
        Some(Token::Equals) => "'='".into(),
        Some(Token::DoubleEquals) => "'=='".into(),
        Some(Token::NotEquals) => "'!='".into(),
        Some(Token::Greater) => "'>'".into(),
        Some(Token::Less) => "'<'".into(),
        Some(Token::Open) => "'('".into(),
        Some(Token::Close) => "')'".into(),
        Some(Token::Comma) => "','".into(),
    }
}

impl LabelSelector {
    /// Parses `app=web,tier in (a,b),!canary`; errors read like the API server's.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut parser = Parser {
            tokens: tokenize(s),
            pos: 0,
        };
        let mut reqs = Vec::new();
        while parser.peek().is_some() {
            reqs.push(
                parser
                    .requirement()
                    .map_err(|e| format!("unable to parse requirement: {e}"))?,
            );
            match parser.next() {
                None => break,
                Some(Token::Comma) if parser.peek().is_some() => {}
                other => {
                    return Err(format!(
                        "unable to parse requirement: expected ',' between requirements, found {}",
                        describe(other.as_ref())
                    ))
                }
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `labels` (an object of strings, or absent) satisfies the selector.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| {
            let value = get(&r.key);
            match &r.op {
                Op::Equals(v) => value == Some(v.as_str()),
                Op::NotEquals(v) => value != Some(v.as_str()),
                Op::In(set) => value.is_some_and(|v| set.contains(v)),
                Op::NotIn(set) => !value.is_some_and(|v| set.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::GreaterThan(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::LessThan(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }

    /// Whether the selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`,
/// comma-separated, all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Splits on unescaped `sep`; `\` escapes the next character.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if let Some(last) = parts.last_mut() {
                last.push('\\');
                last.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

impl FieldSelector {
    /// Parses the selector and checks each field is one `resource` supports.
    pub fn parse(s: &str, resource: &Resource) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in split_unescaped(s, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if !resource.supports_field(field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_owned(), equal, unescape(value.trim())));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether `object` satisfies every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.0
            .iter()
            .all(|(field, equal, value)| (field_value(object, field) == *value) == *equal)
    }

    /// The value an equality term fixes for `field` (`metadata.name=web` → `web`).
    pub fn fixed(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, equal, _)| f == field && *equal)
            .map(|(_, _, v)| v.as_str())
    }
}

/// A field's value as field selectors compare it: strings as they are,
/// numbers and booleans as text, absent as `""`.
pub fn field_value(object: &Value, field: &str) -> String {
    // Events' `source` is the component of the source.
    let path = match field {
        "source" => "source.component",
        f => f,
    };
    let pointer = format!("/{}", path.replace('.', "/"));
    match object.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ if field == "spec.hostNetwork" => "false".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::lookup;
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_match() {
        let labels = json!({"app": "web", "tier": "front", "version": "3"});
        fn check(selector: &str, labels: &Value, expect: bool) {
            let parsed =
                LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(parsed.matches(Some(labels)), expect, "{selector}");
        }
        check("", &labels, true);
        check("app=web", &labels, true);
        check("app==web", &labels, true);
        check("app = web", &labels, true);
        check("app=db", &labels, false);
        check("app!=db", &labels, true);
        check("missing!=x", &labels, true);
        check("app", &labels, true);
        check("missing", &labels, false);
        check("!missing", &labels, true);
        check("!app", &labels, false);
        check("tier in (front,back)", &labels, true);
        check("tier in (back)", &labels, false);
        check("missing in (a)", &labels, false);
        check("tier notin (back)", &labels, true);
        check("tier notin (front, back)", &labels, false);
        check("missing notin (x)", &labels, true);
        check("version>2", &labels, true);
        check("version<3", &labels, false);
        check("app=web,tier in (front),!canary", &labels, true);
        check("app=web,tier=back", &labels, false);
        check(
            "example.com/role=x",
            &json!({"example.com/role": "x"}),
            true,
        );
        check("app=", &json!({"app": ""}), true);
        check("app=", &labels, false);
        assert!(LabelSelector::parse("app")
            .expect("parses")
            .matches(Some(&json!({"app": ""}))));
        assert!(!LabelSelector::parse("app").expect("parses").matches(None));
        assert!(LabelSelector::parse("!app").expect("parses").matches(None));
    }

    #[test]
    fn bad_label_selectors_are_refused() {
        fn check(selector: &str) {
            let err = LabelSelector::parse(selector).expect_err(selector);
            assert!(
                err.starts_with("unable to parse requirement: "),
                "{selector}: {err}"
            );
        }
        check("app=web=x");
        check("app in x");
        check("app in (a");
        check("app in ()");
        check("=web");
        check("app=web,");
        check("app web");
        check("app=we b");
        check("app=-web");
        check("bad key=x");
        check("Example.com/x=y");
        check("version>x");
        check(&format!("app={}", "a".repeat(64)));
    }

    #[test]
    fn field_selectors() {
        let pods = lookup("pods").expect("pods");
        let events = lookup("events").expect("events");
        let pod = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        fn check(s: &str, resource: &Resource, object: &Value, expect: bool) {
            let parsed = FieldSelector::parse(s, resource).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(parsed.matches(object), expect, "{s}");
        }
        check("", pods, &pod, true);
        check("metadata.name=web", pods, &pod, true);
        check("metadata.name==web", pods, &pod, true);
        check("metadata.name!=web", pods, &pod, false);
        check(
            "metadata.name=web,metadata.namespace=default",
            pods,
            &pod,
            true,
        );
        check("metadata.namespace=other", pods, &pod, false);
        check("status.phase=Running,spec.nodeName=n1", pods, &pod, true);
        check("spec.hostNetwork=false", pods, &pod, true);
        check("status.podIP=", pods, &pod, true);
        let event = json!({"metadata": {"name": "e"}, "involvedObject": {"name": "web", "kind": "Pod"}, "source": {"component": "outpost"}, "type": "Normal"});
        check(
            "involvedObject.name=web,involvedObject.kind=Pod",
            events,
            &event,
            true,
        );
        check("involvedObject.name=db", events, &event, false);
        check("source=outpost,type=Normal", events, &event, true);
        check(
            r"metadata.name=a\,b",
            events,
            &json!({"metadata": {"name": "a,b"}}),
            true,
        );

        let err = FieldSelector::parse("spec.foo=x", pods).expect_err("unsupported");
        assert_eq!(err, "field label not supported: spec.foo");
        assert!(FieldSelector::parse("involvedObject.name=x", pods).is_err());
        assert!(FieldSelector::parse("metadata.name", pods).is_err());
        let ns = lookup("ns").expect("namespaces");
        assert!(FieldSelector::parse("metadata.namespace=x", ns).is_err());
        let parsed = FieldSelector::parse("metadata.name=web", pods).expect("parses");
        assert_eq!(parsed.fixed("metadata.name"), Some("web"));
        assert_eq!(parsed.fixed("metadata.namespace"), None);
    }
}
