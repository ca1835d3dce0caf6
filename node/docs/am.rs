//! Small helpers for reading Automerge documents, optionally at given heads.

use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, Value};

/// A scalar at `obj[key]`, at `heads` if given. Conflicts resolve to Automerge's winner.
pub fn scalar(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
    heads: Option<&[ChangeHash]>,
) -> Option<ScalarValue> {
    let v = match heads {
        Some(h) => doc.get_at(obj, key, h),
        None => doc.get(obj, key),
    };
    match v.ok()?? {
        (Value::Scalar(s), _) => Some(s.into_owned()),
        _ => None,
    }
}

/// A string field.
pub fn string(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
    heads: Option<&[ChangeHash]>,
) -> Option<String> {
    match scalar(doc, obj, key, heads)? {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

/// An integer field (signed or unsigned).
pub fn int(doc: &AutoCommit, obj: &ObjId, key: &str, heads: Option<&[ChangeHash]>) -> Option<i64> {
    match scalar(doc, obj, key, heads)? {
        ScalarValue::Int(i) => Some(i),
        ScalarValue::Uint(u) => i64::try_from(u).ok(),
        _ => None,
    }
}

/// A boolean field (absent is `false`).
pub fn flag(doc: &AutoCommit, obj: &ObjId, key: &str, heads: Option<&[ChangeHash]>) -> bool {
    matches!(
        scalar(doc, obj, key, heads),
        Some(ScalarValue::Boolean(true))
    )
}

/// The map object at `obj[key]`.
pub fn map(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
    heads: Option<&[ChangeHash]>,
) -> Option<ObjId> {
    let v = match heads {
        Some(h) => doc.get_at(obj, key, h),
        None => doc.get(obj, key),
    };
    match v.ok()?? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

/// Keys of a map.
pub fn keys(doc: &AutoCommit, obj: &ObjId, heads: Option<&[ChangeHash]>) -> Vec<String> {
    match heads {
        Some(h) => doc.keys_at(obj, h).collect(),
        None => doc.keys(obj).collect(),
    }
}

/// Every concurrent value of a scalar field, as JSON (empty if absent). More than one value
/// means two devices set the field concurrently.
pub fn all_values(doc: &AutoCommit, obj: &ObjId, key: &str) -> Vec<serde_json::Value> {
    doc.get_all(obj, key)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(v, _)| match v {
            Value::Scalar(s) => Some(scalar_json(&s)),
            _ => None,
        })
        .collect()
}

/// A scalar as JSON.
pub fn scalar_json(s: &ScalarValue) -> serde_json::Value {
    match s {
        ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
        ScalarValue::Int(i) => (*i).into(),
        ScalarValue::Uint(u) => (*u).into(),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        ScalarValue::Boolean(b) => (*b).into(),
        ScalarValue::Null => serde_json::Value::Null,
        other => serde_json::Value::String(other.to_string()),
    }
}

/// The root keys a change writes directly (`doc[key] = scalar`) with their values: ledger
/// entries are JSON strings put at the root, so a change carries its entries in its ops.
pub fn root_puts(change: &automerge::Change) -> Vec<(String, ScalarValue)> {
    use automerge::legacy::{Key, ObjectId};
    change
        .decode()
        .operations
        .into_iter()
        .filter_map(|op| match (&op.obj, &op.key, op.primitive_value()) {
            (ObjectId::Root, Key::Map(k), Some(v)) if !op.insert => Some((k.to_string(), v)),
            _ => None,
        })
        .collect()
}

/// The root keys a change's operations write, at any depth below them (a product's `price` is
/// under `product:<id>`), read from the change itself. This, not a diff, says what a change
/// touched: Automerge emits no patch when an already-conflicted field gains one more value while
/// its winner stays (three tills each setting a price offline), so a projection or a trust rule
/// driven by the diff would miss that key. `doc` must hold the change.
pub fn root_keys_touched(
    doc: &AutoCommit,
    change: &automerge::Change,
) -> std::collections::BTreeSet<String> {
    use automerge::legacy::{Key, ObjectId};
    let mut keys = std::collections::BTreeSet::new();
    let mut seen = std::collections::HashSet::new();
    for op in change.decode().operations {
        match (&op.obj, &op.key) {
            (ObjectId::Root, Key::Map(k)) => {
                keys.insert(k.to_string());
            }
            (ObjectId::Root, _) => {}
            (obj, _) => {
                let obj = obj.to_string();
                if seen.insert(obj.clone())
                    && let Some(k) = root_key_of(doc, &obj)
                {
                    keys.insert(k);
                }
            }
        }
    }
    keys
}

/// The root key an object (`counter@actor`) hangs under, however deep.
fn root_key_of(doc: &AutoCommit, obj: &str) -> Option<String> {
    let obj = doc.import_obj(obj).ok()?;
    match doc.parents(&obj).ok()?.last()? {
        automerge::Parent {
            obj,
            prop: automerge::Prop::Map(k),
            ..
        } if obj == automerge::ROOT => Some(k),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    /// The root keys whose value changed between `before` and `after` by Automerge's diff, as the
    /// projections read them before `root_keys_touched`.
    fn root_keys_changed(
        doc: &mut AutoCommit,
        before: &[ChangeHash],
        after: &[ChangeHash],
    ) -> std::collections::BTreeSet<String> {
        use automerge::{PatchAction, Prop};
        let mut keys = std::collections::BTreeSet::new();
        for patch in doc.diff(before, after) {
            if let Some((_, Prop::Map(k))) = patch.path.first() {
                keys.insert(k.clone());
                continue;
            }
            match patch.action {
                PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => {
                    keys.insert(key);
                }
                PatchAction::Conflict {
                    prop: Prop::Map(key),
                } => {
                    keys.insert(key);
                }
                _ => {}
            }
        }
        keys
    }

    /// Three replicas each set `price` under one product offline; the third value reaches a
    /// replica whose field is already conflicted and whose winner stays: the diff says nothing
    /// changed, the change's operations name the product.
    #[test]
    fn a_value_joining_a_conflict_is_touched_though_the_diff_is_empty() {
        let mut base = AutoCommit::new();
        let product = base
            .put_object(ROOT, "product:1", automerge::ObjType::Map)
            .unwrap();
        base.put(&product, "price", 500).unwrap();
        base.commit();
        // Actors in a known order: the highest (the third fork's) wins the conflict.
        let mut forks: Vec<AutoCommit> = (1..=3u8)
            .map(|i| base.fork().with_actor(automerge::ActorId::from([i; 16])))
            .collect();
        let mut changes = vec![];
        for (i, f) in forks.iter_mut().enumerate() {
            f.put(&product, "price", 510 + i as i64).unwrap();
            f.commit();
            changes.push(f.get_last_local_change().unwrap());
        }
        let mut doc = base.fork();
        let mut quiet = 0;
        for change in [&changes[0], &changes[2], &changes[1]] {
            let before = doc.get_heads();
            doc.apply_changes([change.clone()]).unwrap();
            let after = doc.get_heads();
            let touched = root_keys_touched(&doc, change);
            assert_eq!(touched.into_iter().collect::<Vec<_>>(), ["product:1"]);
            if root_keys_changed(&mut doc, &before, &after).is_empty() {
                quiet += 1;
            }
        }
        assert_eq!(all_values(&doc, &product, "price").len(), 3);
        // Automerge's diff is silent about one of them: what made the projections differ.
        assert_eq!(
            quiet, 1,
            "automerge 0.12 emits no patch for the third value"
        );
    }
}
