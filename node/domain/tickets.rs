//! Open tickets: a cart parked on one till and picked up on another.
//!
//! A ticket lives in ledger entries, so no two tills ever write one shared object: each park
//! (or update) is a `ticket_park` entry of the till that made it, the latest (time, entry id)
//! of them is the ticket's content; a `ticket_discard` throws it away; a sale carrying the
//! `ticket_id` closes it. Two tills cut off from each other may both close it: the earliest
//! close (time, sale id) wins on every device, and the later sales are listed in
//! `double_closed_by` (each needs a void or refund) and raise an event.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{check_money, check_qty, line_product, stock_entry};
use crate::docs::shop::non_empty;
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

/// The latest park of a ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Park {
    /// Entry time.
    pub time: i64,
    /// Entry id.
    pub entry: u128,
    /// Label.
    pub name: String,
    /// Content.
    pub lines: Vec<TicketLine>,
    /// Till that parked it.
    pub device: String,
    /// Who parked it.
    pub person: Option<Uuid>,
}

/// A ticket as projected (commutative: every field is a max, a min or a set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TicketState {
    /// Ticket id.
    pub id: Uuid,
    /// Latest park by (time, entry id).
    pub park: Option<Park>,
    /// Sales that closed it, as (time, sale id), sorted.
    pub closes: Vec<(i64, u128)>,
    /// Earliest discard.
    pub discarded: Option<(i64, u128)>,
}

impl TicketState {
    fn view(&self) -> Ticket {
        let (updated_at, name, lines, updated_on, updated_by) = match &self.park {
            Some(p) => (
                p.time,
                p.name.clone(),
                p.lines.clone(),
                p.device.clone(),
                p.person,
            ),
            None => (0, String::new(), Vec::new(), String::new(), None),
        };
        let status = if !self.closes.is_empty() {
            TicketStatus::Closed
        } else if self.discarded.is_some() {
            TicketStatus::Discarded
        } else {
            TicketStatus::Open
        };
        Ticket {
            id: self.id,
            name,
            lines,
            status,
            updated_at,
            updated_on,
            updated_by,
            closed_by: self.closes.first().map(|c| Uuid::from_u128(c.1)),
            double_closed_by: self
                .closes
                .iter()
                .skip(1)
                .map(|c| Uuid::from_u128(c.1))
                .collect(),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn load(tx: &impl TicketTables, id: Uuid) -> Result<Option<TicketState>> {
    tx.ticket_state(id)
}

fn save(tx: &WriteTransaction, s: &TicketState) -> Result<()> {
    let json = serde_json::to_string(s).map_err(internal)?;
    tx.open_table(TICKETS)?
        .insert(s.id.as_u128(), json.as_str())?;
    Ok(())
}

// --- commands ------------------------------------------------------------------------------

/// Checks that a ticket may still be paid or changed.
pub fn require_open(tx: &impl TicketTables, id: Uuid, field: &str) -> Result<()> {
    let t = load(tx, id)?
        .ok_or_else(|| Error::invalid(field, format!("no open ticket {id}")))?
        .view();
    match t.status {
        TicketStatus::Open => Ok(()),
        TicketStatus::Closed => Err(Error::Conflict(format!(
            "ticket {:?} was already paid",
            t.name
        ))),
        TicketStatus::Discarded => Err(Error::Conflict(format!(
            "ticket {:?} was discarded",
            t.name
        ))),
    }
}

/// Parks a cart as a new ticket (`id` None) or updates a parked one (anyone logged in).
pub fn park(ctx: &mut Ctx<'_>, by: &Principal, id: Option<Uuid>, p: ParkTicket) -> Result<Ticket> {
    if let Some(id) = id {
        load(ctx.tx, id)?.ok_or_else(|| Error::NotFound(format!("no ticket {id}")))?;
        require_open(ctx.tx, id, "id")?;
    }
    let name = non_empty("name", &p.name, 100)?;
    if p.lines.is_empty() {
        return Err(Error::invalid("lines", "a ticket needs at least one line"));
    }
    if p.lines.len() > 500 {
        return Err(Error::invalid("lines", "at most 500 lines"));
    }
    let mut lines = Vec::new();
    for (i, l) in p.lines.iter().enumerate() {
        let f = |x: &str| format!("lines[{i}].{x}");
        line_product(ctx, i, l.product_id, l.variant_id)?;
        lines.push(TicketLine {
            product_id: l.product_id,
            variant_id: l.variant_id,
            qty: check_qty(&f("qty"), l.qty)?,
            discount: l
                .discount
                .map(|d| check_money(&f("discount"), d))
                .transpose()?,
        });
    }
    let id = id.unwrap_or_else(Uuid::new_v4);
    let key = ctx.device_key().clone();
    stock_entry(
        ctx,
        by,
        &key,
        EntryBody::TicketPark {
            ticket_id: id,
            name,
            lines,
        },
    )?;
    read(ctx.tx, id)
}

/// Throws a parked ticket away (anyone logged in).
pub fn discard(ctx: &mut Ctx<'_>, by: &Principal, id: Uuid) -> Result<Ticket> {
    load(ctx.tx, id)?.ok_or_else(|| Error::NotFound(format!("no ticket {id}")))?;
    require_open(ctx.tx, id, "id")?;
    let key = ctx.device_key().clone();
    stock_entry(ctx, by, &key, EntryBody::TicketDiscard { ticket_id: id })?;
    read(ctx.tx, id)
}

// --- projection ----------------------------------------------------------------------------

/// Projects a park or a discard.
pub fn project(tx: &WriteTransaction, e: &LedgerEntry) -> Result<Vec<Event>> {
    let (EntryBody::TicketPark { ticket_id, .. } | EntryBody::TicketDiscard { ticket_id }) =
        &e.body
    else {
        return Ok(Vec::new());
    };
    let mut s = load(tx, *ticket_id)?.unwrap_or(TicketState {
        id: *ticket_id,
        ..TicketState::default()
    });
    let at = (e.time, e.id.as_u128());
    match &e.body {
        EntryBody::TicketPark { name, lines, .. } => {
            if s.park.as_ref().is_none_or(|p| (p.time, p.entry) < at) {
                s.park = Some(Park {
                    time: at.0,
                    entry: at.1,
                    name: name.clone(),
                    lines: lines.clone(),
                    device: e.device.clone(),
                    person: e.person,
                });
            }
        }
        _ => {
            if s.discarded.is_none_or(|d| at < d) {
                s.discarded = Some(at);
            }
        }
    }
    save(tx, &s)?;
    Ok(vec![Event::TicketChanged {
        ticket_id: *ticket_id,
    }])
}

/// A sale closed the ticket. With a second close, the later sale needs a void or refund.
pub fn on_close(tx: &WriteTransaction, ticket: Uuid, sale: &LedgerEntry) -> Result<Vec<Event>> {
    let mut s = load(tx, ticket)?.unwrap_or(TicketState {
        id: ticket,
        ..TicketState::default()
    });
    let at = (sale.time, sale.id.as_u128());
    if !s.closes.contains(&at) {
        s.closes.push(at);
        s.closes.sort();
    }
    save(tx, &s)?;
    let mut events = vec![Event::TicketChanged { ticket_id: ticket }];
    if s.closes.len() > 1 {
        let name = s
            .park
            .as_ref()
            .map(|p| p.name.as_str())
            .unwrap_or("a ticket");
        let kept = Uuid::from_u128(s.closes[0].1);
        // One alert per later sale; the earliest close never gets one (closes only grow, so
        // a sale that was once later stays later): the same alerts on every replica.
        for &(time, later) in &s.closes[1..] {
            let later = Uuid::from_u128(later);
            super::alerts::raise(
                tx,
                &super::alerts::Alert {
                    id: format!(
                        "{}:{ticket}:{later}",
                        super::alerts::kinds::DOUBLE_CLOSED_TICKET
                    ),
                    kind: super::alerts::kinds::DOUBLE_CLOSED_TICKET.into(),
                    severity: super::alerts::Severity::Critical,
                    time,
                    title: format!("Ticket {name:?} was paid twice"),
                    detail: format!(
                        "Two tills cut off from each other both took payment for {name:?}. The \
                         earlier sale counts; void or refund sale {later}."
                    ),
                    refs: super::alerts::AlertRefs {
                        entries: vec![kept, later],
                        ..Default::default()
                    },
                    dismissed: false,
                },
            )?;
        }
        events.push(Event::TicketDoubleClosed {
            ticket_id: ticket,
            kept: Uuid::from_u128(s.closes[0].1),
            to_refund: s.closes[1..].iter().map(|c| Uuid::from_u128(c.1)).collect(),
        });
    }
    Ok(events)
}

// --- queries -------------------------------------------------------------------------------

/// One ticket.
pub fn read(tx: &impl TicketTables, id: Uuid) -> Result<Ticket> {
    load(tx, id)?
        .map(|s| s.view())
        .ok_or_else(|| Error::NotFound(format!("no ticket {id}")))
}

/// Tickets (only open ones with `open_only`), most recently parked first; also those closed
/// twice, which need attention.
pub fn list(tx: &ReadTransaction, open_only: bool) -> Result<Vec<Ticket>> {
    let mut out = Vec::new();
    for row in tx.open_table(TICKETS)?.iter()? {
        let s: TicketState = serde_json::from_str(row?.1.value()).map_err(internal)?;
        let t = s.view();
        if t.name.is_empty()
            && t.lines.is_empty()
            && t.status == TicketStatus::Closed
            && t.double_closed_by.is_empty()
        {
            // A close whose park has not arrived yet.
            continue;
        }
        if !open_only || t.status == TicketStatus::Open || !t.double_closed_by.is_empty() {
            out.push(t);
        }
    }
    out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Reading tickets from a read or a write transaction.
pub trait TicketTables {
    /// A ticket's projected state, if known.
    fn ticket_state(&self, id: Uuid) -> Result<Option<TicketState>>;
}

macro_rules! impl_ticket_tables {
    ($t:ty) => {
        impl TicketTables for $t {
            fn ticket_state(&self, id: Uuid) -> Result<Option<TicketState>> {
                self.open_table(TICKETS)?
                    .get(id.as_u128())?
                    .map(|v| serde_json::from_str(v.value()).map_err(internal))
                    .transpose()
            }
        }
    };
}
impl_ticket_tables!(WriteTransaction);
impl_ticket_tables!(ReadTransaction);
