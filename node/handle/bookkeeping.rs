//! [`NodeHandle`] methods for alerts, the audit trail, checkpoints and the products CSV
//! import (see `domain::alerts`, `domain::audit`, `domain::products_csv`), and the timer that
//! writes this device's daily checkpoint.

use std::time::Duration;

use uuid::Uuid;

use super::NodeHandle;
use crate::domain::access::{self, Access};
use crate::domain::alerts::{self, Alert};
use crate::domain::audit::{self, AuditFilter, AuditPage, ExportLine};
use crate::domain::products_csv::{self, ImportReport};
use crate::error::Result;
use crate::model::Principal;

/// How long after start the checkpoint timer first looks, and then how often.
/// (Ten minutes: a device writes its checkpoint soon after it starts or the day turns, and a
/// short-lived node — a test, `init` — writes none.)
pub const CHECKPOINT_TICK: Duration = Duration::from_secs(600);

impl NodeHandle {
    /// Every alert, newest first; dismissed ones only if asked. The same on every replica
    /// holding the same changes (see `domain::alerts` for the one exception, clock skew).
    pub fn alerts(&self, include_dismissed: bool) -> Result<Vec<Alert>> {
        let view = self.view();
        alerts::list(&self.read()?, view.settings.as_ref(), include_dismissed)
    }

    /// Dismisses an alert on every device (manager). A state-derived alert comes back, with a
    /// new id, when its condition changes.
    pub async fn dismiss_alert(&self, by: &Principal, id: &str) -> Result<Alert> {
        access::require(by, Access::DismissAlert)?;
        let current = self.alerts(true)?;
        let by = by.clone();
        let id = id.to_string();
        self.inner
            .writer
            .write(move |ctx| alerts::dismiss(ctx, &by, &id, &current))
            .await
    }

    /// A page of the audit trail (manager), newest first.
    pub fn audit(&self, by: &Principal, filter: &AuditFilter) -> Result<AuditPage> {
        access::require(by, Access::Audit)?;
        audit::query(&self.read()?, &self.view(), filter)
    }

    /// Writes the audit export (manager): every stored change but the vault's, with hashes,
    /// signatures, envelopes and checkpoints, as JSON lines.
    pub fn audit_export(&self, by: &Principal, out: &mut impl std::io::Write) -> Result<()> {
        access::require(by, Access::Audit)?;
        let view = self.view();
        let header = ExportLine::Header {
            format: audit::EXPORT_FORMAT.into(),
            shop_id: view.shop_id,
            shop_name: view.settings.as_ref().map(|s| s.shop_name.clone()),
            exported_at: chrono::Utc::now().timestamp_millis(),
            exported_by: self.device_id().to_string(),
        };
        audit::write_export(&self.read()?, header, out)
    }

    /// Writes this device's checkpoint now (even if today's exists); the entry ids.
    pub async fn write_checkpoint(&self) -> Result<Vec<Uuid>> {
        self.inner
            .writer
            .write(|ctx| audit::write_checkpoint(ctx, true))
            .await
    }

    /// Writes today's checkpoint if this device has not yet (the timer calls it).
    pub async fn checkpoint_if_due(&self) -> Result<Vec<Uuid>> {
        // A relay signs nothing on its own account, checkpoints included (DESIGN §6).
        let relay = crate::model::DeviceRole::Relay;
        if self
            .view()
            .this_device
            .as_ref()
            .is_none_or(|d| d.role == relay)
        {
            return Ok(Vec::new());
        }
        self.inner
            .writer
            .write(|ctx| audit::write_checkpoint(ctx, false))
            .await
    }

    /// Imports products from CSV (manager): validates every row, then (unless `dry_run` or
    /// any row is wrong) creates and updates them all in one commit.
    pub async fn import_products(
        &self,
        by: &Principal,
        csv: String,
        dry_run: bool,
    ) -> Result<ImportReport> {
        access::require(by, Access::ImportProducts)?;
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| products_csv::import_products(ctx, &by, &csv, dry_run))
            .await
    }
}

/// Writes this device's daily checkpoint: first [`CHECKPOINT_TICK`] after start, then every
/// tick until the day has one; ends when `stop` turns true.
pub(crate) fn spawn_checkpoints(
    handle: NodeHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + CHECKPOINT_TICK;
        let mut tick = tokio::time::interval_at(start, CHECKPOINT_TICK);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = handle.checkpoint_if_due().await {
                tracing::warn!("could not write the daily checkpoint: {e}");
            }
        }
    })
}
