//! Cash-drawer shifts per till: open with a float, cash sales, pay-ins and pay-outs with a
//! reason, close with the counted cash.
//!
//! Every entry of a shift (open, cash move, close, and the sales, voids, returns and refunds
//! the till recorded while it was open, which carry `shift_id`) is written by the till itself,
//! and the `SHIFTS` row is a set of sums each entry adds to, so every replica computes the same
//! report whatever order the entries arrive in. The till remembers its open shift in `meta`.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::commands::{check_money, stock_entry};
use crate::docs::shop::non_empty;
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

/// `meta` key: the shift open on this till (16 bytes), absent when none.
pub const OPEN_SHIFT: &str = "open_shift";

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// The shift open on this till, if any.
pub fn open_shift_id(ctx: &Ctx<'_>) -> Result<Option<Uuid>> {
    Ok(ctx
        .meta(OPEN_SHIFT)?
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .map(Uuid::from_bytes))
}

/// Opens a shift on this till (anyone logged in).
pub fn open(ctx: &mut Ctx<'_>, by: &Principal, o: OpenShift) -> Result<Shift> {
    if let Some(id) = open_shift_id(ctx)? {
        let s = read(ctx.tx, id)?;
        return Err(Error::Conflict(format!(
            "a shift is already open on this till (float {}); close it first",
            s.float
        )));
    }
    let float = check_money("float", o.float)?;
    let id = Uuid::new_v4();
    let key = ctx.device_key().clone();
    stock_entry(
        ctx,
        by,
        &key,
        EntryBody::ShiftOpen {
            shift_id: id,
            float,
        },
    )?;
    ctx.set_meta(OPEN_SHIFT, id.as_bytes())?;
    read(ctx.tx, id)
}

fn require_open(ctx: &Ctx<'_>) -> Result<Uuid> {
    open_shift_id(ctx)?
        .ok_or_else(|| Error::Conflict("no shift is open on this till: open one first".into()))
}

/// Records a pay-in or pay-out in the open shift (anyone logged in).
pub fn cash_move(ctx: &mut Ctx<'_>, by: &Principal, m: NewCashMove) -> Result<Shift> {
    let id = require_open(ctx)?;
    if m.amount <= 0 {
        return Err(Error::invalid("amount", "must be more than 0"));
    }
    let amount = check_money("amount", m.amount)?;
    let reason = non_empty("reason", &m.reason, 200)?;
    if m.kind == CashMoveKind::PayOut {
        let s = read(ctx.tx, id)?;
        if amount > s.expected {
            return Err(Error::invalid(
                "amount",
                format!("the drawer should hold only {} in cash", s.expected),
            ));
        }
    }
    let signed = match m.kind {
        CashMoveKind::PayIn => amount,
        CashMoveKind::PayOut => -amount,
    };
    let key = ctx.device_key().clone();
    stock_entry(
        ctx,
        by,
        &key,
        EntryBody::CashMove {
            shift_id: id,
            amount: signed,
            reason,
        },
    )?;
    read(ctx.tx, id)
}

/// Closes the open shift with the counted cash (anyone logged in).
pub fn close(ctx: &mut Ctx<'_>, by: &Principal, c: CloseShift) -> Result<Shift> {
    let id = require_open(ctx)?;
    let counted = check_money("counted", c.counted)?;
    let note = match c.note.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(non_empty("note", n, 500)?),
    };
    let expected = read(ctx.tx, id)?.expected;
    let key = ctx.device_key().clone();
    stock_entry(
        ctx,
        by,
        &key,
        EntryBody::ShiftClose {
            shift_id: id,
            counted,
            expected,
            note,
        },
    )?;
    ctx.tx.open_table(META)?.remove(OPEN_SHIFT)?;
    read(ctx.tx, id)
}

// --- projection ----------------------------------------------------------------------------

fn update(tx: &WriteTransaction, id: Uuid, device: &str, f: impl FnOnce(&mut Shift)) -> Result<()> {
    let mut t = tx.open_table(SHIFTS)?;
    let mut s: Shift = match t.get(id.as_u128())? {
        Some(v) => serde_json::from_str(v.value()).map_err(internal)?,
        None => Shift {
            id,
            device: device.to_string(),
            ..Shift::default()
        },
    };
    f(&mut s);
    s.expected = s.float + s.cash_sales - s.cash_refunds + s.pay_ins - s.pay_outs;
    s.difference = s.counted.map(|c| c - s.expected);
    let json = serde_json::to_string(&s).map_err(internal)?;
    t.insert(id.as_u128(), json.as_str())?;
    Ok(())
}

/// Projects a shift entry (open, cash move, close).
pub fn project(tx: &WriteTransaction, e: &LedgerEntry) -> Result<()> {
    match &e.body {
        EntryBody::ShiftOpen { shift_id, float } => {
            tx.open_table(SHIFTS_BY_TIME)?
                .insert((e.time, shift_id.as_u128()), ())?;
            update(tx, *shift_id, &e.device, |s| {
                s.float = *float;
                s.opened_at = Some(e.time);
                s.opened_by = e.person;
            })
        }
        EntryBody::CashMove {
            shift_id,
            amount,
            reason,
        } => update(tx, *shift_id, &e.device, |s| {
            if *amount >= 0 {
                s.pay_ins += amount;
            } else {
                s.pay_outs -= amount;
            }
            s.moves.push(CashMove {
                id: e.id,
                time: e.time,
                amount: *amount,
                reason: reason.clone(),
                person: e.person,
            });
            s.moves.sort_by_key(|m| (m.time, m.id));
        }),
        EntryBody::ShiftClose {
            shift_id,
            counted,
            expected,
            note,
        } => update(tx, *shift_id, &e.device, |s| {
            s.counted = Some(*counted);
            s.expected_at_close = Some(*expected);
            s.closed_at = Some(e.time);
            s.closed_by = e.person;
            s.note = note.clone();
        }),
        _ => Ok(()),
    }
}

/// A sale recorded in a shift: its takings by method (cash net of change).
pub fn on_sale(
    tx: &WriteTransaction,
    shift: Uuid,
    device: &str,
    payments: &[Payment],
    change_due: i64,
) -> Result<()> {
    let by = |m: PaymentMethod| -> i64 {
        payments
            .iter()
            .filter(|p| p.method == m)
            .map(|p| p.amount)
            .sum()
    };
    update(tx, shift, device, |s| {
        s.sales += 1;
        s.cash_sales += by(PaymentMethod::Cash) - change_due;
        s.card_sales += by(PaymentMethod::Card);
        s.other_sales += by(PaymentMethod::Other);
    })
}

/// Cash paid back from the drawer (void, return, refund) during a shift.
pub fn on_cash_back(tx: &WriteTransaction, shift: Uuid, device: &str, amount: i64) -> Result<()> {
    if amount == 0 {
        return Ok(());
    }
    update(tx, shift, device, |s| s.cash_refunds += amount)
}

// --- queries -------------------------------------------------------------------------------

/// One shift.
pub fn read(tx: &impl ShiftTables, id: Uuid) -> Result<Shift> {
    tx.shift(id)?
        .ok_or_else(|| Error::NotFound(format!("no shift {id}")))
}

/// Shifts opened in `from <= time < to`, oldest first.
pub fn between(tx: &ReadTransaction, from: i64, to: i64) -> Result<Vec<Shift>> {
    let mut out = Vec::new();
    for row in tx.open_table(SHIFTS_BY_TIME)?.range((from, 0)..(to, 0))? {
        let (_, id) = row?.0.value();
        if let Some(s) = tx.shift(Uuid::from_u128(id))? {
            out.push(s);
        }
    }
    Ok(out)
}

/// Reading shifts from a read or a write transaction.
pub trait ShiftTables {
    /// One shift, if known.
    fn shift(&self, id: Uuid) -> Result<Option<Shift>>;
}

macro_rules! impl_shift_tables {
    ($t:ty) => {
        impl ShiftTables for $t {
            fn shift(&self, id: Uuid) -> Result<Option<Shift>> {
                self.open_table(SHIFTS)?
                    .get(id.as_u128())?
                    .map(|v| serde_json::from_str(v.value()).map_err(internal))
                    .transpose()
            }
        }
    };
}
impl_shift_tables!(WriteTransaction);
impl_shift_tables!(ReadTransaction);
