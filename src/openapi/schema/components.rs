//! What moves into `components.schemas`, and under which name.
//!
//! Exists because naming is the one part of the conversion that other tools' conversions see:
//! several tools share one `components.schemas` map, so names must be safe, readable, stable
//! (derived from where the schema was) and never collide with what is already there. Each
//! distinct target gets one component however many references (and spellings of them) lead
//! to it, and is queued once, which is also what makes reference cycles terminate.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use super::resolve::{Located, Step, address};

/// Longest part of a component name derived from a pointer or definition name; the prefix
/// comes on top. Keeps names readable; uniqueness is ensured by suffixes anyway.
const MAX_SUFFIX_LEN: usize = 96;

/// Makes a component name safe: every char outside [A-Za-z0-9._-] becomes `_`. An empty name
/// becomes `_`, because OpenAPI requires component names to be non-empty.
pub fn component_name(raw: &str) -> String {
    if raw.is_empty() {
        return "_".to_owned();
    }
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A hoisted sub-schema waiting to be converted.
pub(super) struct Job<'d> {
    /// Where it is in the original document (empty for the root).
    pub(super) path: Vec<Step<'d>>,
    pub(super) target: &'d Value,
    pub(super) name: String,
}

/// The components one conversion gives out.
pub(super) struct Components<'d, 'c> {
    prefix: String,
    /// Components already in the document (other tools'); read only, never overwritten.
    existing: &'c Map<String, Value>,
    /// Names this conversion has given out.
    reserved: HashSet<String>,
    /// Address of each hoisted sub-schema of the original document -> its component name.
    /// Addresses identify a target however it was spelled (pointer escapes, percent-encoding,
    /// `$id`, `$anchor`), since the resolver hands back the value itself.
    memo: HashMap<*const Value, String>,
    queue: VecDeque<Job<'d>>,
    /// Converted components, in the order their names were given out.
    produced: Vec<(String, Value)>,
}

impl<'d, 'c> Components<'d, 'c> {
    pub(super) fn new(prefix: String, existing: &'c Map<String, Value>) -> Self {
        Components {
            prefix,
            existing,
            reserved: HashSet::new(),
            memo: HashMap::new(),
            queue: VecDeque::new(),
            produced: Vec::new(),
        }
    }

    /// Root definitions become components even when nothing refers to them (they document the
    /// tool), in document order so the first of two clashing names keeps the plain one.
    pub(super) fn register_root_definitions(&mut self, doc: &'d Value) {
        let Value::Object(root) = doc else {
            return;
        };
        for (keyword, defs) in root {
            if keyword != "$defs" && keyword != "definitions" {
                continue;
            }
            if let Value::Object(defs) = defs {
                for (name, target) in defs {
                    self.add(Located {
                        path: vec![Step::Key(keyword), Step::Key(name)],
                        target,
                    });
                }
            }
        }
    }

    /// The component already holding the sub-schema at `target`, if any.
    pub(super) fn known(&self, target: *const Value) -> Option<&str> {
        self.memo.get(&target).map(String::as_str)
    }

    /// The component holding `located`, queued for conversion when new.
    pub(super) fn add(&mut self, located: Located<'d>) -> String {
        let key = address(located.target);
        if let Some(name) = self.memo.get(&key) {
            return name.clone();
        }
        let name = self.allocate(self.name_hint(&located.path));
        self.memo.insert(key, name.clone());
        self.queue.push_back(Job {
            path: located.path,
            target: located.target,
            name: name.clone(),
        });
        name
    }

    /// `prefix` for the root, `prefix__Def` for a root definition, and `prefix__` followed by
    /// the path's tokens joined with `.` for anything deeper.
    fn name_hint(&self, path: &[Step<'_>]) -> String {
        let tokens = match path {
            [] => return self.prefix.clone(),
            [Step::Key(first), tail @ ..]
                if !tail.is_empty() && (*first == "$defs" || *first == "definitions") =>
            {
                tail
            }
            all => all,
        };
        let joined = tokens
            .iter()
            .map(Step::to_string)
            .collect::<Vec<_>>()
            .join(".");
        let mut suffix = component_name(&joined);
        // Sanitized names are ASCII, so any byte index is a char boundary.
        suffix.truncate(MAX_SUFFIX_LEN);
        format!("{}__{suffix}", self.prefix)
    }

    fn allocate(&mut self, hint: String) -> String {
        let taken = |name: &str| self.existing.contains_key(name) || self.reserved.contains(name);
        let mut name = hint.clone();
        let mut n = 2u64;
        while taken(&name) {
            name = format!("{hint}_{n}");
            n += 1;
        }
        self.reserved.insert(name.clone());
        name
    }

    pub(super) fn next_job(&mut self) -> Option<Job<'d>> {
        self.queue.pop_front()
    }

    pub(super) fn finish(&mut self, name: String, body: Value) {
        self.produced.push((name, body));
    }

    pub(super) fn into_produced(self) -> Vec<(String, Value)> {
        self.produced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_are_sanitized() {
        assert_eq!(component_name("get_sum input"), "get_sum_input");
        assert_eq!(component_name("a.b-c_D9"), "a.b-c_D9");
        assert_eq!(component_name("ünï/~$"), "_n____");
        assert_eq!(component_name(""), "_");
    }
}
