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
use super::auth::{Auth, require_manager};
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::range::{format_minor, rfc3339, time_range};
use super::sales::TimeRangeQuery;
use crate::error::Error;
use crate::node::NodeHandle;

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
    require_manager(&auth.principal)?;
    let handle = state.handle.clone();
    let csv = blocking(move || {
        let (from, to) = time_range(&handle, range.from.as_deref(), range.to.as_deref())?;
        let exp = exponent(&handle)?;
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
    .await?;
    Ok(csv.into_response("sales.csv"))
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
    require_manager(&auth.principal)?;
    let handle = state.handle.clone();
    let csv = blocking(move || {
        let (from, to) = time_range(&handle, range.from.as_deref(), range.to.as_deref())?;
        let exp = exponent(&handle)?;
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
    .await?;
    Ok(csv.into_response("movements.csv"))
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
    require_manager(&auth.principal)?;
    let handle = state.handle.clone();
    let csv = blocking(move || {
        let exp = exponent(&handle)?;
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
    .await?;
    Ok(csv.into_response("stock.csv"))
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
