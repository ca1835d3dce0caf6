//! Products CSV (export and import) and the sale lines CSV export, in the conventions of
//! `export`: UTF-8, one header row, ISO dates, amounts in major units with a `currency` column.
//! The products export has exactly the import's columns, so export → import gives the same
//! products (see `domain::products_csv`).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::export::{Csv, csv_export, exponent, opt_plain, plain, text};
use super::extract::ApiQuery;
use super::range::{rfc3339, time_range};
use super::sales::TimeRangeQuery;
use crate::domain::products_csv::{COLUMNS, ImportReport, format_major, format_percent};

/// Largest products CSV accepted (about 100,000 rows).
pub const IMPORT_LIMIT: usize = 16 * 1024 * 1024;

/// Every product, archived ones included, one row each, in the import's columns (managers and
/// owners). Variants are not in the file (an import keeps them).
#[utoipa::path(
    get,
    path = "/export/products.csv",
    tag = "export",
    responses(
        (status = 200, description = "sku, name, price, barcode, category, unit, cost, tax_rate, reorder_level, archived, currency", content_type = "text/csv", body = String),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn products_csv(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Response, ApiError> {
    csv_export(&state, &auth, "products.csv", move |handle| {
        let settings = handle.settings()?;
        let exp = settings.currency_exponent;
        let mut products = handle.products()?;
        products.sort_by(|a, b| a.sku.cmp(&b.sku).then(a.id.cmp(&b.id)));
        let mut csv = Csv::new(&COLUMNS);
        for p in products {
            csv.row([
                text(p.sku),
                text(p.name),
                plain(format_major(p.price, exp)),
                text(p.barcode.unwrap_or_default()),
                text(p.category.unwrap_or_default()),
                text(p.unit),
                plain(format_major(p.cost, exp)),
                plain(format_percent(p.tax_rate)),
                opt_plain(p.reorder_level),
                plain(p.archived),
                plain(&settings.currency),
            ]);
        }
        Ok(csv)
    })
    .await
}

/// Sale lines in a time range, one row per line, amounts in major units (managers and owners).
#[utoipa::path(
    get,
    path = "/export/sale-lines.csv",
    tag = "export",
    params(TimeRangeQuery),
    responses(
        (status = 200, description = "sale_id, receipt, time, day, device, person, line, product_id, variant_id, sku, name, qty, unit_price, discount, tax_rate, tax, total, currency, returned_qty, voided", content_type = "text/csv", body = String),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn sale_lines_csv(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(range): ApiQuery<TimeRangeQuery>,
) -> Result<Response, ApiError> {
    csv_export(&state, &auth, "sale-lines.csv", move |handle| {
        let (from, to) = time_range(handle, range.from.as_deref(), range.to.as_deref())?;
        let exp = exponent(handle)?;
        let currency = handle.settings()?.currency;
        let mut csv = Csv::new(&[
            "sale_id",
            "receipt",
            "time",
            "day",
            "device",
            "person",
            "line",
            "product_id",
            "variant_id",
            "sku",
            "name",
            "qty",
            "unit_price",
            "discount",
            "tax_rate",
            "tax",
            "total",
            "currency",
            "returned_qty",
            "voided",
        ]);
        for sale in handle.sales(from, to)? {
            for (i, l) in sale.lines.iter().enumerate() {
                csv.row([
                    plain(sale.id),
                    text(sale.receipt.as_str()),
                    plain(rfc3339(sale.time)),
                    plain(&sale.day),
                    text(sale.device.as_str()),
                    opt_plain(sale.person),
                    plain(i),
                    plain(l.product_id),
                    opt_plain(l.variant_id),
                    text(l.sku.as_str()),
                    text(l.name.as_str()),
                    plain(l.qty),
                    plain(format_major(l.unit_price, exp)),
                    plain(format_major(l.discount, exp)),
                    plain(format_percent(l.tax_rate)),
                    plain(format_major(l.tax, exp)),
                    plain(format_major(l.total, exp)),
                    plain(&currency),
                    plain(sale.returned.get(i).copied().unwrap_or(0)),
                    plain(sale.voided_by.is_some()),
                ]);
            }
        }
        Ok(csv)
    })
    .await
}

/// `POST /products/import` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportQuery {
    /// Validate and report only (default false).
    dry_run: Option<bool>,
}

/// A refused import: the usual error, plus the row-level report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportRefused {
    /// What went wrong.
    error: ErrorDetail,
    /// Every row's errors and what would have happened.
    report: ImportReport,
}

/// Import products from CSV (managers and owners). The body is the CSV (`text/csv`, UTF-8,
/// header row `sku,name,price,barcode,category,unit,cost,tax_rate,reorder_level`; prices in
/// major units like `2.50`; tax rate in percent). An existing SKU updates its product, a new
/// one creates a product. `dry_run=true` validates and reports only. A real import with any
/// row error imports nothing and answers 400 with the report.
#[utoipa::path(
    post,
    path = "/products/import",
    tag = "products",
    params(ImportQuery),
    request_body(
        content = String,
        content_type = "text/csv",
        example = json!("sku,name,price,barcode,category,unit,cost,tax_rate,reorder_level\nTEA-GRN,Green tea 20 bags,3.49,,Grocery,pcs,1.50,5.5,5\n")
    ),
    responses(
        (status = 200, description = "What was (or would be) created and updated", body = ImportReport,
            example = json!({"dry_run": true, "imported": false, "rows": 1, "created": 1, "updated": 0, "unchanged": 0, "errors": [], "plan": [{"row": 2, "sku": "NEW-1", "action": "create", "fields": [], "product_id": null}]})),
        (status = 400, description = "Rows with errors: nothing imported", body = ImportRefused,
            example = json!({"error": {"code": "invalid", "message": "2 error(s) in the file — nothing was imported. Row 2: must not be empty", "field": "row 2.name"}, "report": {"dry_run": false, "imported": false, "rows": 1, "created": 0, "updated": 0, "unchanged": 0, "errors": [{"row": 2, "column": "name", "message": "must not be empty"}, {"row": 2, "column": "price", "message": "\"abc\" is not an amount with at most 2 decimals, like 2.50"}], "plan": []}})),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 413, description = "Larger than 16 MiB", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn import_products(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, IMPORT_LIMIT)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let csv = String::from_utf8(bytes.to_vec()).map_err(|e| {
        ApiError::invalid_field(
            "body",
            format!(
                "the file is not UTF-8 text (byte {}); save it as CSV UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let dry_run = q.dry_run.unwrap_or(false);
    let report = state
        .handle
        .import_products(&auth.principal, csv, dry_run)
        .await?;
    if !dry_run && !report.errors.is_empty() {
        let first = &report.errors[0];
        let body = ImportRefused {
            error: ErrorDetail {
                code: "invalid".into(),
                message: format!(
                    "{} error(s) in the file — nothing was imported. Row {}: {}",
                    report.errors.len(),
                    first.row,
                    first.message
                ),
                field: first
                    .column
                    .as_ref()
                    .map(|c| format!("row {}.{c}", first.row)),
            },
            report,
        };
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    Ok(Json(report).into_response())
}
