//! Upcasting: old event schemas are lifted to the current one on read, so the
//! rest of the system only ever sees current payloads.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

type Upcast = fn(Value) -> Value;

/// A registry of one-step upcasters keyed by `(event_type, from_version)`.
/// Reading applies them repeatedly until no step is registered.
#[derive(Default, Clone)]
pub struct Upcasters {
    /// event type → from version → step.
    steps: HashMap<String, BTreeMap<i32, Upcast>>,
}

impl Upcasters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that turns `event_type` at `from_version` into `from_version + 1`.
    pub fn register(mut self, event_type: &str, from_version: i32, step: Upcast) -> Self {
        self.steps
            .entry(event_type.to_owned())
            .or_default()
            .insert(from_version, step);
        self
    }

    /// Lifts a payload to the newest version this registry knows.
    pub fn upcast(&self, event_type: &str, mut version: i32, mut payload: Value) -> (i32, Value) {
        let Some(steps) = self.steps.get(event_type) else {
            return (version, payload);
        };
        while let Some(step) = steps.get(&version) {
            payload = step(payload);
            version += 1;
        }
        (version, payload)
    }

    /// The business's upcasters. Every schema change of a stored event registers
    /// its step here.
    pub fn business() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1_to_v2(mut p: Value) -> Value {
        if let Some(obj) = p.as_object_mut() {
            let name = obj.remove("name").unwrap_or(Value::Null);
            obj.insert("title".into(), name);
        }
        p
    }

    fn v2_to_v3(mut p: Value) -> Value {
        if let Some(obj) = p.as_object_mut() {
            obj.insert("tags".into(), json!([]));
        }
        p
    }

    #[test]
    fn chains_steps_until_current() {
        let u = Upcasters::new()
            .register("NoteAdded", 1, v1_to_v2)
            .register("NoteAdded", 2, v2_to_v3);
        let (v, p) = u.upcast("NoteAdded", 1, json!({"name": "x"}));
        assert_eq!(v, 3);
        assert_eq!(p, json!({"title": "x", "tags": []}));
        let (v, p) = u.upcast("Other", 1, json!({"name": "x"}));
        assert_eq!((v, p), (1, json!({"name": "x"})));
    }
}
