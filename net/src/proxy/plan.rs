//! What to send the kernel, as plain data: the whole table at start, only
//! what changed afterwards. Every [`Batch`] is committed as one nftables
//! transaction, so the kernel applies all of it or none of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::model::{BaseHook, Key, Rule, Ruleset, SetSpec};

/// The operations of one transaction, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The table every operation acts on (family `ip`).
    pub table: String,
    /// The operations; each is one netlink message.
    pub ops: Vec<Op>,
}

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create the table if it is missing (`nft add table`), so that the
    /// delete after it cannot fail on a table that is not there.
    EnsureTable,
    /// Delete the table and everything in it.
    DeleteTable,
    /// Create the table.
    AddTable,
    /// Create a chain, empty.
    AddChain {
        /// Its name.
        name: String,
        /// Its hook, for a base chain.
        base: Option<BaseHook>,
    },
    /// Delete every rule of a chain.
    FlushChain(String),
    /// Delete an empty, unreferenced chain.
    DeleteChain(String),
    /// Append a rule to a chain.
    AddRule {
        /// The chain.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// Create a set or map, empty.
    AddSet {
        /// Its name.
        name: String,
        /// Its type and flags.
        spec: SetSpec,
    },
    /// Delete a set or map no rule uses any more.
    DeleteSet(String),
    /// Add elements to a set or map.
    AddElements {
        /// The set.
        set: String,
        /// The set's type and flags.
        spec: SetSpec,
        /// Keys, each with the chain it goes to in a verdict map.
        elements: Vec<(Key, Option<String>)>,
    },
    /// Delete elements of a set or map.
    DeleteElements {
        /// The set.
        set: String,
        /// The set's type and flags.
        spec: SetSpec,
        /// Keys, each with the chain it went to in a verdict map.
        elements: Vec<(Key, Option<String>)>,
    },
}

impl Batch {
    fn new(table: &str) -> Batch {
        Batch {
            table: table.to_string(),
            ops: Vec::new(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether this batch replaces the whole table.
    pub fn replaces_table(&self) -> bool {
        self.ops.contains(&Op::DeleteTable)
    }
}

/// The whole table, replacing whatever is there under that name: one
/// transaction deletes the old table and creates the new one, so there is
/// never a moment without rules and nothing stale survives.
pub fn full(new: &Ruleset) -> Batch {
    let mut b = Batch::new(&new.table);
    b.ops
        .extend([Op::EnsureTable, Op::DeleteTable, Op::AddTable]);
    for (name, chain) in &new.chains {
        b.ops.push(Op::AddChain {
            name: name.clone(),
            base: chain.base,
        });
    }
    for (name, set) in &new.sets {
        b.ops.push(Op::AddSet {
            name: name.clone(),
            spec: set.spec,
        });
        if !set.elements.is_empty() {
            b.ops.push(Op::AddElements {
                set: name.clone(),
                spec: set.spec,
                elements: set.elements.iter().map(|(k, v)| (*k, v.clone())).collect(),
            });
        }
    }
    for (name, chain) in &new.chains {
        for rule in &chain.rules {
            b.ops.push(Op::AddRule {
                chain: name.clone(),
                rule: rule.clone(),
            });
        }
    }
    b
}

/// Deletes the table if it is there.
pub fn remove(table: &str) -> Batch {
    let mut b = Batch::new(table);
    b.ops.extend([Op::EnsureTable, Op::DeleteTable]);
    b
}

/// Only what differs between `old` (committed) and `new`: chains added,
/// rewritten (flushed and refilled) or deleted, sets added or deleted, map
/// elements added or deleted. Ordered so that nothing is referenced before
/// it exists or deleted while still referenced. A change the diff does not
/// handle in place (another table, a base chain's hook) gives [`full`].
///
/// Rules and chains change atomically for packets: one already in a chain
/// finishes with the rules it started with, and a deleted chain is freed
/// only after. Set elements do not: a lookup reads the generation when it
/// runs, so a packet racing the commit may miss an element deleted by it.
/// That is why endpoints are chosen by rules, not by a map: an endpoint
/// change deletes no element. (What it can affect: a new connection to a
/// service being removed, which is then refused, never routed.)
pub fn update(old: &Ruleset, new: &Ruleset) -> Batch {
    if old.table != new.table {
        return full(new);
    }
    // One ordered walk over both tables: the diff runs on every sync, over
    // thousands of chains, and lookups by name would dominate it.
    let mut added_sets = BTreeSet::new();
    let mut removed_sets = BTreeSet::new();
    // A set whose type or timeout changed is deleted and made again, and
    // every rule using it must be sent again with it.
    let mut remade_sets = BTreeSet::new();
    for side in merge(&old.sets, &new.sets) {
        match side {
            Side::Old(name, _) => {
                removed_sets.insert(name.as_str());
            }
            Side::New(name, _) => {
                added_sets.insert(name.as_str());
            }
            Side::Both(name, was, now) if was.spec != now.spec => {
                remade_sets.insert(name.as_str());
            }
            Side::Both(..) => {}
        }
    }
    let uses_remade = |rules: &[Rule]| {
        !remade_sets.is_empty()
            && rules.iter().any(|r| {
                r.0.iter()
                    .any(|s| s.set_ref().is_some_and(|s| remade_sets.contains(s)))
            })
    };
    let mut added_chains = Vec::new();
    let mut removed_chains = Vec::new();
    let mut rewritten_chains = Vec::new();
    for side in merge(&old.chains, &new.chains) {
        match side {
            Side::Old(name, _) => removed_chains.push(name.as_str()),
            Side::New(name, _) => added_chains.push(name.as_str()),
            Side::Both(_, was, now) if was.base != now.base => return full(new),
            Side::Both(name, was, now) => {
                if was.rules != now.rules || uses_remade(&now.rules) {
                    rewritten_chains.push(name.as_str());
                }
            }
        }
    }
    let mut b = Batch::new(&new.table);

    // 1. New chains, empty: rules and map elements may go to them.
    for name in &added_chains {
        b.ops.push(Op::AddChain {
            name: name.to_string(),
            base: new.chains[*name].base,
        });
    }
    // 2. Drop the rules that change or go: this releases their chains and sets.
    for name in rewritten_chains.iter().chain(&removed_chains) {
        b.ops.push(Op::FlushChain(name.to_string()));
    }
    // 3. Elements that go or change (a changed verdict is delete + add) in
    //    sets that stay. A set that goes or is made again is deleted whole
    //    (the kernel drops a map's references to chains with it).
    let mut fresh_elements = Vec::new();
    for side in merge(&old.sets, &new.sets) {
        let Side::Both(name, was, now) = side else {
            continue;
        };
        if was.spec != now.spec || was.elements == now.elements {
            continue;
        }
        let (mut gone, mut fresh) = (Vec::new(), Vec::new());
        for element in merge(&was.elements, &now.elements) {
            match element {
                Side::Old(k, v) => gone.push((*k, v.clone())),
                Side::New(k, v) => fresh.push((*k, v.clone())),
                Side::Both(k, v, w) if v != w => {
                    gone.push((*k, v.clone()));
                    fresh.push((*k, w.clone()));
                }
                Side::Both(..) => {}
            }
        }
        if !gone.is_empty() {
            b.ops.push(Op::DeleteElements {
                set: name.clone(),
                spec: was.spec,
                elements: gone,
            });
        }
        if !fresh.is_empty() {
            fresh_elements.push(Op::AddElements {
                set: name.clone(),
                spec: now.spec,
                elements: fresh,
            });
        }
    }
    // 4.–5. Sets made again, then new sets.
    for name in &remade_sets {
        b.ops.push(Op::DeleteSet(name.to_string()));
    }
    for name in remade_sets.iter().chain(&added_sets) {
        b.ops.push(Op::AddSet {
            name: name.to_string(),
            spec: new.sets[*name].spec,
        });
    }
    // 6. Elements that are new or changed.
    for name in remade_sets.iter().chain(&added_sets) {
        let set = &new.sets[*name];
        if !set.elements.is_empty() {
            b.ops.push(Op::AddElements {
                set: name.to_string(),
                spec: set.spec,
                elements: set.elements.iter().map(|(k, v)| (*k, v.clone())).collect(),
            });
        }
    }
    b.ops.extend(fresh_elements);
    // 7. Rules of new and rewritten chains.
    for name in added_chains.iter().chain(&rewritten_chains) {
        for rule in &new.chains[*name].rules {
            b.ops.push(Op::AddRule {
                chain: name.to_string(),
                rule: rule.clone(),
            });
        }
    }
    // 8.–9. What nothing uses any more: sets, then chains (a map's elements
    //    may have gone to them).
    for name in &removed_sets {
        b.ops.push(Op::DeleteSet(name.to_string()));
    }
    for name in &removed_chains {
        b.ops.push(Op::DeleteChain(name.to_string()));
    }
    b
}

/// One key of two ordered maps: only in the old, only in the new, or in both.
enum Side<'a, K, V> {
    Old(&'a K, &'a V),
    New(&'a K, &'a V),
    Both(&'a K, &'a V, &'a V),
}

/// Walks two ordered maps side by side, in key order.
fn merge<'a, K: Ord, V>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = Side<'a, K, V>> {
    let mut old = old.iter().peekable();
    let mut new = new.iter().peekable();
    std::iter::from_fn(move || match (old.peek(), new.peek()) {
        (None, None) => None,
        (Some(_), None) => old.next().map(|(k, v)| Side::Old(k, v)),
        (None, Some(_)) => new.next().map(|(k, v)| Side::New(k, v)),
        (Some((a, _)), Some((b, _))) => match a.cmp(b) {
            std::cmp::Ordering::Less => old.next().map(|(k, v)| Side::Old(k, v)),
            std::cmp::Ordering::Greater => new.next().map(|(k, v)| Side::New(k, v)),
            std::cmp::Ordering::Equal => match (old.next(), new.next()) {
                (Some((k, v)), Some((_, w))) => Some(Side::Both(k, v, w)),
                _ => None,
            },
        },
    })
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let elements = |elements: &[(Key, Option<String>)]| {
            elements
                .iter()
                .map(|(k, v)| match v {
                    Some(chain) => format!("{k} : goto {chain}"),
                    None => k.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Op::EnsureTable => write!(f, "add table"),
            Op::DeleteTable => write!(f, "delete table"),
            Op::AddTable => write!(f, "create table"),
            Op::AddChain { name, base: None } => write!(f, "add chain {name}"),
            Op::AddChain {
                name,
                base: Some(base),
            } => write!(f, "add chain {name} {{ {base} }}"),
            Op::FlushChain(name) => write!(f, "flush chain {name}"),
            Op::DeleteChain(name) => write!(f, "delete chain {name}"),
            Op::AddRule { chain, rule } => write!(f, "add rule {chain} {rule}"),
            Op::AddSet { name, spec } => {
                let kind = if spec.verdict_map { "map" } else { "set" };
                write!(f, "add {kind} {name}")
            }
            Op::DeleteSet(name) => write!(f, "delete set {name}"),
            Op::AddElements {
                set, elements: e, ..
            } => write!(f, "add element {set} {{ {} }}", elements(e)),
            Op::DeleteElements {
                set, elements: e, ..
            } => write!(f, "delete element {set} {{ {} }}", elements(e)),
        }
    }
}
