//! The audit export (JSON lines) and its offline verification.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, Write};

use automerge::{Change, ScalarValue};
use data_encoding::BASE64;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::docs::{DocId, Envelope, am};
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::store::tables::*;

use super::{AuditRow, internal};

/// The export's format name.
pub const EXPORT_FORMAT: &str = "tillmesh-audit/1";

// --- export and offline verification -------------------------------------------------------

/// One line of an audit export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// The first line.
    Header {
        /// [`EXPORT_FORMAT`].
        format: String,
        /// Shop id.
        shop_id: Option<Uuid>,
        /// Shop name.
        shop_name: Option<String>,
        /// When it was exported (ms).
        exported_at: i64,
        /// The device that exported it.
        exported_by: String,
    },
    /// A signed change.
    Change {
        /// Document id.
        doc: String,
        /// Change hash (hex).
        hash: String,
        /// Signer public key (hex).
        signer: String,
        /// Signature (hex).
        signature: String,
        /// Audit time (ms).
        time: i64,
        /// Audit kind.
        kind: String,
        /// Device, if known.
        device: Option<String>,
        /// Person, if known.
        person: Option<Uuid>,
        /// The envelope as stored and sent (postcard), base64.
        envelope: String,
    },
    /// A checkpoint entry (also inside its change; repeated here to be read easily).
    Checkpoint {
        /// Entry id.
        entry_id: Uuid,
        /// The device that signed it.
        device: String,
        /// Shop-local day.
        day: String,
        /// Entry time (ms).
        time: i64,
        /// The change holding it (hex).
        change: String,
        /// Document → heads (hex).
        heads: BTreeMap<String, Vec<String>>,
    },
    /// The last line.
    End {
        /// Change lines.
        changes: u64,
        /// Checkpoint lines.
        checkpoints: u64,
    },
}

/// The checkpoints held in a ledger change.
fn checkpoints_in(change: &Change) -> Vec<LedgerEntry> {
    am::root_puts(change)
        .into_iter()
        .filter_map(|(k, v)| match (k.starts_with("entry:"), v) {
            (true, ScalarValue::Str(json)) => serde_json::from_str::<LedgerEntry>(&json).ok(),
            _ => None,
        })
        .filter(|e| matches!(e.body, EntryBody::Checkpoint { .. }))
        .collect()
}

/// Writes the audit export of every stored change but `vault`'s, as JSON lines.
pub fn write_export(
    tx: &redb::ReadTransaction,
    header: ExportLine,
    out: &mut impl Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Internal(format!("writing the export: {e}"));
    let line = |out: &mut dyn Write, l: &ExportLine| -> Result<()> {
        serde_json::to_writer(&mut *out, l).map_err(internal)?;
        out.write_all(b"\n").map_err(io)
    };
    line(out, &header)?;
    let changes_t = tx.open_table(DOC_CHANGES)?;
    let envs = tx.open_table(ENVELOPES)?;
    let audit_times: HashMap<[u8; 32], (i64, AuditRow)> = {
        let mut m = HashMap::new();
        for row in tx.open_table(AUDIT)?.iter()? {
            let (k, v) = row?;
            let (t, h) = k.value();
            if let Ok(r) = postcard::from_bytes::<AuditRow>(v.value()) {
                m.insert(*h, (t, r));
            }
        }
        m
    };
    let (mut changes, mut checkpoints) = (0u64, 0u64);
    for row in changes_t.iter()? {
        let (k, h) = row?;
        let doc = k.value().0.to_string();
        if doc == "vault" {
            continue;
        }
        let h = *h.value();
        let Some(v) = envs.get(&h)? else { continue };
        let env = Envelope::from_bytes(v.value())?;
        let (time, kind, device, person) = match audit_times.get(&h) {
            Some((t, r)) => (*t, r.kind.clone(), r.device.clone(), r.person),
            None => (0, String::new(), None, None),
        };
        line(
            out,
            &ExportLine::Change {
                doc: doc.clone(),
                hash: hex::encode(h),
                signer: hex::encode(env.signer),
                signature: hex::encode(&env.signature),
                time,
                kind,
                device,
                person,
                envelope: BASE64.encode(v.value()),
            },
        )?;
        changes += 1;
        if doc.starts_with("ledger/") {
            let change = env.decode_change()?;
            for e in checkpoints_in(&change) {
                if let EntryBody::Checkpoint { day, heads } = e.body {
                    line(
                        out,
                        &ExportLine::Checkpoint {
                            entry_id: e.id,
                            device: e.device,
                            day,
                            time: e.time,
                            change: hex::encode(h),
                            heads,
                        },
                    )?;
                    checkpoints += 1;
                }
            }
        }
    }
    line(
        out,
        &ExportLine::End {
            changes,
            checkpoints,
        },
    )?;
    out.flush().map_err(io)
}

/// What [`verify_export`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Shop named in the header.
    pub shop_name: Option<String>,
    /// Changes whose hash and signature verified.
    pub changes: u64,
    /// Documents.
    pub documents: usize,
    /// Distinct signer keys.
    pub signers: usize,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Devices that signed checkpoints.
    pub checkpointing_devices: BTreeSet<String>,
    /// Earliest and latest audit time of the changes (ms), 0 if none.
    pub first_time: i64,
    /// Latest.
    pub last_time: i64,
    /// Everything wrong (empty: the export verified).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the export verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks an audit export offline (see the module docs). I/O errors and a file that is not an
/// export at all are errors; everything wrong inside one is listed in `problems`.
pub fn verify_export(input: impl BufRead) -> Result<VerifyReport> {
    const MAX_PROBLEMS: usize = 50;
    let mut r = VerifyReport::default();
    fn problem(r: &mut VerifyReport, p: String) {
        if r.problems.len() < MAX_PROBLEMS {
            r.problems.push(p);
        }
    }
    let mut by_doc: HashMap<String, HashSet<[u8; 32]>> = HashMap::new();
    // (line, document, change, its dependencies)
    type Deps = (usize, String, [u8; 32], Vec<[u8; 32]>);
    // (line, entry id, device, heads)
    type Listed = (usize, Uuid, String, BTreeMap<String, Vec<String>>);
    let mut deps: Vec<Deps> = Vec::new();
    let mut signers = HashSet::new();
    let mut found_checkpoints: HashMap<Uuid, (String, BTreeMap<String, Vec<String>>)> =
        HashMap::new();
    let mut listed_checkpoints: Vec<Listed> = Vec::new();
    let mut end: Option<(u64, u64)> = None;
    let mut header = false;
    let mut lines_seen = 0u64;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Error::Internal(format!("reading the export: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        lines_seen += 1;
        let parsed: ExportLine = match serde_json::from_str(&line) {
            Ok(l) => l,
            Err(e) if i == 0 => {
                return Err(Error::invalid(
                    "file",
                    format!("not a tillmesh audit export (line 1: {e})"),
                ));
            }
            Err(e) => {
                problem(&mut r, format!("line {n}: unreadable ({e})"));
                continue;
            }
        };
        if end.is_some() {
            problem(&mut r, format!("line {n}: data after the end line"));
        }
        match parsed {
            ExportLine::Header {
                format, shop_name, ..
            } => {
                if i != 0 || format != EXPORT_FORMAT {
                    return Err(Error::invalid(
                        "file",
                        format!("line {n}: expected a {EXPORT_FORMAT} header"),
                    ));
                }
                header = true;
                r.shop_name = shop_name;
            }
            ExportLine::Change {
                doc,
                hash,
                signer,
                signature,
                time,
                envelope,
                ..
            } => {
                if !header {
                    return Err(Error::invalid("file", "the export has no header line"));
                }
                let env = match BASE64
                    .decode(envelope.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|b| Envelope::from_bytes(&b).map_err(|e| e.to_string()))
                {
                    Ok(e) => e,
                    Err(e) => {
                        problem(&mut r, format!("line {n}: envelope does not decode: {e}"));
                        continue;
                    }
                };
                let change = match env.decode_change() {
                    Ok(c) => c,
                    Err(e) => {
                        problem(&mut r, format!("line {n}: change does not decode: {e}"));
                        continue;
                    }
                };
                let h = change.hash();
                if hex::encode(h.0) != hash {
                    problem(
                        &mut r,
                        format!(
                            "line {n}: the change bytes hash to {}, not the listed {hash} \
                             (altered)",
                            hex::encode(h.0)
                        ),
                    );
                    continue;
                }
                if env.doc != doc {
                    problem(
                        &mut r,
                        format!("line {n}: the envelope is for {}, not {doc}", env.doc),
                    );
                }
                if hex::encode(env.signer) != signer || hex::encode(&env.signature) != signature {
                    problem(
                        &mut r,
                        format!("line {n}: signer or signature differ from the envelope's"),
                    );
                }
                if let Err(e) = env.verify_signature(&h) {
                    problem(&mut r, format!("line {n}: change {hash}: {e}"));
                    continue;
                }
                if DocId::parse(&doc).is_err() || doc == "vault" {
                    problem(&mut r, format!("line {n}: unexpected document {doc:?}"));
                }
                if !by_doc.entry(doc.clone()).or_default().insert(h.0) {
                    problem(&mut r, format!("line {n}: change {hash} appears twice"));
                }
                signers.insert(env.signer);
                deps.push((
                    n,
                    doc.clone(),
                    h.0,
                    change.deps().iter().map(|d| d.0).collect(),
                ));
                if doc.starts_with("ledger/") {
                    for e in checkpoints_in(&change) {
                        let signer_device = crate::identity::device_id(
                            &ed25519_dalek::VerifyingKey::from_bytes(&env.signer)
                                .map_err(|_| Error::invalid("file", "bad key"))?,
                        );
                        let doc_device = doc.split('/').nth(2).unwrap_or("");
                        if e.device != signer_device || doc_device != signer_device {
                            problem(
                                &mut r,
                                format!(
                                    "line {n}: checkpoint {} names device {} but was signed by \
                                     device {signer_device}",
                                    e.id, e.device
                                ),
                            );
                        }
                        if let EntryBody::Checkpoint { heads, .. } = e.body {
                            r.checkpointing_devices.insert(e.device.clone());
                            found_checkpoints.insert(e.id, (e.device, heads));
                        }
                    }
                }
                r.changes += 1;
                if time != 0 {
                    r.first_time = if r.first_time == 0 {
                        time
                    } else {
                        r.first_time.min(time)
                    };
                    r.last_time = r.last_time.max(time);
                }
            }
            ExportLine::Checkpoint {
                entry_id,
                device,
                heads,
                ..
            } => listed_checkpoints.push((n, entry_id, device, heads)),
            ExportLine::End {
                changes,
                checkpoints,
            } => end = Some((changes, checkpoints)),
        }
    }
    if lines_seen == 0 {
        return Err(Error::invalid("file", "the file is empty"));
    }
    for (n, doc, hash, ds) in &deps {
        let have = &by_doc[doc];
        for d in ds {
            if !have.contains(d) {
                problem(
                    &mut r,
                    format!(
                        "line {n}: change {} of {doc} depends on {}, which is not in the file \
                         (removed)",
                        hex::encode(hash),
                        hex::encode(d)
                    ),
                );
            }
        }
    }
    for (id, (device, heads)) in &found_checkpoints {
        for (doc, hs) in heads {
            for h in hs {
                let known = hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .is_some_and(|b| by_doc.get(doc).is_some_and(|s| s.contains(&b)));
                if !known {
                    problem(
                        &mut r,
                        format!(
                            "checkpoint {id} by device {device} names change {h} of {doc}, \
                             which is not in the file (removed or altered)"
                        ),
                    );
                }
            }
        }
    }
    for (n, id, device, heads) in &listed_checkpoints {
        match found_checkpoints.get(id) {
            Some((d, h)) if d == device && h == heads => {}
            _ => problem(
                &mut r,
                format!("line {n}: checkpoint {id} does not match any signed checkpoint"),
            ),
        }
    }
    r.checkpoints = found_checkpoints.len() as u64;
    match end {
        None => problem(&mut r, "the end line is missing (truncated)".into()),
        Some((c, k)) => {
            let verified = r.changes;
            if c != verified || k != listed_checkpoints.len() as u64 {
                problem(
                    &mut r,
                    format!(
                        "the end line counts {c} changes and {k} checkpoints; the file holds \
                         {} verified changes and {} checkpoints",
                        verified,
                        listed_checkpoints.len()
                    ),
                );
            }
        }
    }
    r.documents = by_doc.len();
    r.signers = signers.len();
    Ok(r)
}
