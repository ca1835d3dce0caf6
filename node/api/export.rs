//! CSV exports for bookkeeping (managers and owners).
//!
//! RFC 4180 CSV (comma-separated, CRLF line ends, fields with commas, quotes or line breaks
//! quoted) with a header row. Amounts are integer minor units, and a `*_formatted` column
//! writes them with the currency's decimals (`12.34`). Times are RFC 3339 UTC; `day` is the
//! shop-local day. Text that a spreadsheet would run as a formula (starting with `=`, `+`,
//! `-`, `@`, tab or carriage return) is prefixed with `'`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::range::{format_minor, rfc3339, time_range};
use super::sales::{DayRangeQuery, TimeRangeQuery};
use crate::error::Error;
use crate::handle::{Exports, NodeHandle};

/// One CSV cell.
pub(super) enum Cell {
    /// A number or a value the API produced itself (ids, times): written as is.
    Plain(String),
    /// Text people typed: escaped and defused.
    Text(String),
}

pub(super) fn plain(v: impl ToString) -> Cell {
    Cell::Plain(v.to_string())
}

pub(super) fn text(v: impl Into<String>) -> Cell {
    Cell::Text(v.into())
}

pub(super) fn opt_plain<T: ToString>(v: Option<T>) -> Cell {
    Cell::Plain(v.map(|v| v.to_string()).unwrap_or_default())
}

/// The serde name of an enum value (`stock_in`, `damaged` …).
fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Builds a CSV document.
pub(super) struct Csv(pub(super) String);

impl Csv {
    pub(super) fn new(header: &[&str]) -> Csv {
        let mut csv = Csv(String::new());
        csv.row(header.iter().map(plain));
        csv
    }

    pub(super) fn row(&mut self, cells: impl IntoIterator<Item = Cell>) {
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            match cell {
                Cell::Plain(s) => escape_into(&mut self.0, &s),
                Cell::Text(s) => {
                    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                        escape_into(&mut self.0, &format!("'{s}"));
                    } else {
                        escape_into(&mut self.0, &s);
                    }
                }
            }
        }
        self.0.push_str("\r\n");
    }

    pub(super) fn into_response(self, file_name: &str) -> Response {
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file_name}\""),
                ),
            ],
            self.0,
        )
            .into_response()
    }
}

/// Appends a field, quoted when it must be.
fn escape_into(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// What every CSV export does: managers and owners only; the file is built off the async
/// workers (`build` reads the node's projections) and sent as an attachment named `file`.
pub(super) async fn csv_export(
    state: &AppState,
    auth: &Auth,
    file: &'static str,
    build: impl FnOnce(&Exports) -> Result<Csv, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    // The handle refuses before anything is read unless the person may export.
    let exports = state.handle.exports(&auth.principal)?;
    let csv = blocking(move || build(&exports)).await?;
    Ok(csv.into_response(file))
}

/// Runs a (possibly long) export off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Node(Error::Internal(format!("export task failed: {e}"))))?
}

/// The currency exponent of the shop.
pub(super) fn exponent(handle: &NodeHandle) -> Result<u8, ApiError> {
    Ok(handle.settings()?.currency_exponent)
}

/// Sales in a time range, one row per sale line (managers and owners).
#[utoipa::path(
    get,
    path = "/export/sales.csv",
    tag = "export",
    params(TimeRangeQuery),
    responses(
        (status = 200, description = "sale_id, receipt, time, day, device, person, line, sku, name, qty, unit_price, discount, tax, line_total, line_total_formatted, returned_qty, voided", content_type = "text/csv", body = String),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn sales_csv(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(range): ApiQuery<TimeRangeQuery>,
) -> Result<Response, ApiError> {
    csv_export(&state, &auth, "sales.csv", move |handle| {
        let (from, to) = time_range(handle, range.from.as_deref(), range.to.as_deref())?;
        let exp = exponent(handle)?;
        let mut csv = Csv::new(&[
            "sale_id",
            "receipt",
            "time",
            "day",
            "device",
            "person",
            "line",
            "sku",
            "name",
            "qty",
            "unit_price",
            "discount",
            "tax",
            "line_total",
            "line_total_formatted",
            "returned_qty",
            "voided",
        ]);
        for sale in handle.sales(from, to)? {
            for (i, line) in sale.lines.iter().enumerate() {
                csv.row([
                    plain(sale.id),
                    text(sale.receipt.as_str()),
                    plain(rfc3339(sale.time)),
                    plain(&sale.day),
                    text(sale.device.as_str()),
                    opt_plain(sale.person),
                    plain(i),
                    text(line.sku.as_str()),
                    text(line.name.as_str()),
                    plain(line.qty),
                    plain(line.unit_price),
                    plain(line.discount),
                    plain(line.tax),
                    plain(line.total),
                    plain(format_minor(line.total, exp)),
                    plain(sale.returned.get(i).copied().unwrap_or(0)),
                    plain(sale.voided_by.is_some()),
                ]);
            }
        }
        Ok(csv)
    })
    .await
}

/// Stock movements in a time range, one row per movement (managers and owners).
#[utoipa::path(
    get,
    path = "/export/movements.csv",
    tag = "export",
    params(TimeRangeQuery),
    responses(
        (status = 200, description = "entry_id, time, product_id, variant_id, sku, name, kind, qty, unit_cost, unit_cost_formatted, reason, note, device, person", content_type = "text/csv", body = String),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn movements_csv(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(range): ApiQuery<TimeRangeQuery>,
) -> Result<Response, ApiError> {
    csv_export(&state, &auth, "movements.csv", move |handle| {
        let (from, to) = time_range(handle, range.from.as_deref(), range.to.as_deref())?;
        let exp = exponent(handle)?;
        // SKU and name of every product and variant.
        let mut names: HashMap<(Uuid, Option<Uuid>), (String, String)> = HashMap::new();
        for p in handle.products()? {
            for v in &p.variants {
                names.insert(
                    (p.id, Some(v.id)),
                    (v.sku.clone(), format!("{} ({})", p.name, v.name)),
                );
            }
            names.insert((p.id, None), (p.sku, p.name));
        }
        let mut csv = Csv::new(&[
            "entry_id",
            "time",
            "product_id",
            "variant_id",
            "sku",
            "name",
            "kind",
            "qty",
            "unit_cost",
            "unit_cost_formatted",
            "reason",
            "note",
            "device",
            "person",
        ]);
        for m in handle.movements_between(from, to)? {
            let (sku, name) = names
                .get(&(m.product_id, m.variant_id))
                .or_else(|| names.get(&(m.product_id, None)))
                .cloned()
                .unwrap_or_default();
            csv.row([
                plain(m.entry_id),
                plain(rfc3339(m.time)),
                plain(m.product_id),
                opt_plain(m.variant_id),
                text(sku),
                text(name),
                plain(serde_name(&m.kind)),
                plain(m.qty),
                opt_plain(m.unit_cost),
                opt_plain(m.unit_cost.map(|c| format_minor(c, exp))),
                plain(m.reason.as_ref().map(serde_name).unwrap_or_default()),
                text(m.note.unwrap_or_default()),
                text(m.device),
                opt_plain(m.person),
            ]);
        }
        Ok(csv)
    })
    .await
}

/// Stock on hand now, one row per product or variant (managers and owners).
#[utoipa::path(
    get,
    path = "/export/stock.csv",
    tag = "export",
    responses(
        (status = 200, description = "product_id, variant_id, sku, name, on_hand, reorder_level, low, value_at_cost, value_at_cost_formatted", content_type = "text/csv", body = String),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn stock_csv(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Response, ApiError> {
    csv_export(&state, &auth, "stock.csv", move |handle| {
        let exp = exponent(handle)?;
        let mut csv = Csv::new(&[
            "product_id",
            "variant_id",
            "sku",
            "name",
            "on_hand",
            "reorder_level",
            "low",
            "value_at_cost",
            "value_at_cost_formatted",
        ]);
        for s in handle.stock()? {
            csv.row([
                plain(s.product_id),
                opt_plain(s.variant_id),
                text(s.sku),
                text(s.name),
                plain(s.on_hand),
                plain(s.reorder_level),
                plain(s.low),
                plain(s.value_at_cost),
                plain(format_minor(s.value_at_cost, exp)),
            ]);
        }
        Ok(csv)
    })
    .await
}

/// Profit per shop-local day (managers and owners): revenue without tax, FIFO cost, profit,
/// shrinkage; closed days as frozen, with the adjustment of later changes on the first open
/// day.
#[utoipa::path(
    get,
    path = "/export/profit.csv",
    tag = "export",
    params(DayRangeQuery),
    responses(
        (status = 200, description = "day, currency, revenue, cost, profit, shrinkage, closed, adjustment_revenue, adjustment_cost, revenue_formatted, cost_formatted, profit_formatted", content_type = "text/csv", body = String),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn profit_csv(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(days): ApiQuery<DayRangeQuery>,
) -> Result<Response, ApiError> {
    csv_export(&state, &auth, "profit.csv", move |handle| {
        let (from, to) = days.days(handle)?;
        let settings = handle.settings()?;
        let exp = settings.currency_exponent;
        let mut csv = Csv::new(&[
            "day",
            "currency",
            "revenue",
            "cost",
            "profit",
            "shrinkage",
            "closed",
            "adjustment_revenue",
            "adjustment_cost",
            "revenue_formatted",
            "cost_formatted",
            "profit_formatted",
        ]);
        for d in handle.profit_days(&from, &to)? {
            csv.row([
                plain(&d.day),
                plain(&settings.currency),
                plain(d.revenue),
                plain(d.cost),
                plain(d.profit),
                plain(d.shrinkage),
                plain(d.closed),
                plain(d.adjustment_revenue),
                plain(d.adjustment_cost),
                plain(format_minor(d.revenue, exp)),
                plain(format_minor(d.cost, exp)),
                plain(format_minor(d.profit, exp)),
            ]);
        }
        Ok(csv)
    })
    .await
}

/// Cash-drawer shifts opened in a time range, one row per shift (managers and owners).
#[utoipa::path(
    get,
    path = "/export/shifts.csv",
    tag = "export",
    params(TimeRangeQuery),
    responses(
        (status = 200, description = "shift_id, device, opened_at, closed_at, currency, float, sales, cash_sales, card_sales, other_sales, cash_refunds, pay_ins, pay_outs, expected, counted, difference, expected_formatted, counted_formatted, difference_formatted, note", content_type = "text/csv", body = String),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn shifts_csv(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(range): ApiQuery<TimeRangeQuery>,
) -> Result<Response, ApiError> {
    csv_export(&state, &auth, "shifts.csv", move |handle| {
        let (from, to) = time_range(handle, range.from.as_deref(), range.to.as_deref())?;
        let settings = handle.settings()?;
        let exp = settings.currency_exponent;
        let mut csv = Csv::new(&[
            "shift_id",
            "device",
            "opened_at",
            "closed_at",
            "currency",
            "float",
            "sales",
            "cash_sales",
            "card_sales",
            "other_sales",
            "cash_refunds",
            "pay_ins",
            "pay_outs",
            "expected",
            "counted",
            "difference",
            "expected_formatted",
            "counted_formatted",
            "difference_formatted",
            "note",
        ]);
        let opt_minor =
            |v: Option<i64>| Cell::Plain(v.map(|v| format_minor(v, exp)).unwrap_or_default());
        for s in handle.shifts(from, to)? {
            csv.row([
                plain(s.id),
                text(s.device.as_str()),
                Cell::Plain(s.opened_at.map(rfc3339).unwrap_or_default()),
                Cell::Plain(s.closed_at.map(rfc3339).unwrap_or_default()),
                plain(&settings.currency),
                plain(s.float),
                plain(s.sales),
                plain(s.cash_sales),
                plain(s.card_sales),
                plain(s.other_sales),
                plain(s.cash_refunds),
                plain(s.pay_ins),
                plain(s.pay_outs),
                plain(s.expected),
                opt_plain(s.counted),
                opt_plain(s.difference),
                plain(format_minor(s.expected, exp)),
                opt_minor(s.counted),
                opt_minor(s.difference),
                text(s.note.unwrap_or_default()),
            ]);
        }
        Ok(csv)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_escaping() {
        let mut csv = Csv::new(&["a", "b", "c", "d"]);
        csv.row([
            text("plain"),
            text("with, comma"),
            text("say \"hi\"\nthere"),
            text("=HYPERLINK(\"x\")"),
        ]);
        csv.row([plain(-5), text("-5 broken"), plain(""), text("@x")]);
        assert_eq!(
            csv.0,
            "a,b,c,d\r\nplain,\"with, comma\",\"say \"\"hi\"\"\nthere\",\"'=HYPERLINK(\"\"x\"\")\"\r\n\
             -5,'-5 broken,,'@x\r\n"
        );
    }
}
