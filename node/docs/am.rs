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

/// The root keys whose value changed between `before` and `after` (any depth below them).
pub fn root_keys_changed(
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
