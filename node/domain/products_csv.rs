//! Products as CSV: the import (`POST /api/v1/products/import`) and the shared column layout of
//! the export (`GET /api/v1/export/products.csv`), so that export → import gives the same
//! products back.
//!
//! Columns (header row required, any order, names case-insensitive):
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `sku` | yes | the product's SKU: an existing SKU updates that product, a new one creates a product |
//! | `name` | yes | name |
//! | `price` | yes | price in major units with the currency's decimals (`2.50` EUR, `250` JPY) |
//! | `barcode`, `category` | no | empty clears |
//! | `unit` | no | empty means `pcs` |
//! | `cost` | no | expected unit cost, major units; empty means 0 |
//! | `tax_rate` | no | percent (`20`, `5.5`); empty means 0 |
//! | `reorder_level` | no | whole number; empty means "the shop's default" |
//! | `archived` | no | `true`/`false` (empty: false) |
//! | `currency` | no | if present must be the shop's currency (the export writes it) |
//!
//! A column left out keeps the product's value on update and takes the default on create.
//! A text cell the export defused against spreadsheet formulas (`'=…`, `'+…`, `'-…`, `'@…`)
//! is read back without the leading `'`.
//!
//! Rows are numbered as a spreadsheet shows them: the header is row 1, the first product row 2.
//! Every row is validated before anything is written; with any error nothing is imported. The
//! import is one writer job: its products are written in changes of [`PRODUCTS_PER_CHANGE`]
//! (an envelope carries at most 1 MiB), committed together in one transaction.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableMultimapTable, ReadableTable};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::{self, Access};
use super::catalog;
use super::commands::{MAX_QTY, check_code, check_money, check_tax_rate};
use crate::docs::DocId;
use crate::docs::shop::non_empty;
use crate::error::{Error, Result};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

/// Products written per catalog change.
pub const PRODUCTS_PER_CHANGE: usize = 500;
/// Most product rows one import takes.
pub const MAX_ROWS: usize = 50_000;
/// The export's columns, in order (the import takes the same).
pub const COLUMNS: [&str; 11] = [
    "sku",
    "name",
    "price",
    "barcode",
    "category",
    "unit",
    "cost",
    "tax_rate",
    "reorder_level",
    "archived",
    "currency",
];

/// A row-level problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// Row number as a spreadsheet shows it (the header is row 1).
    pub row: usize,
    /// The column, if the problem is in one cell.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// What happens to one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RowPlan {
    /// Row number.
    pub row: usize,
    /// SKU.
    pub sku: String,
    /// `create`, `update` or `unchanged`.
    pub action: String,
    /// The fields an update changes.
    pub fields: Vec<String>,
    /// The product (existing for updates, new for creates once imported).
    pub product_id: Option<Uuid>,
}

/// The answer of an import or a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Whether the products were written.
    pub imported: bool,
    /// Product rows read.
    pub rows: usize,
    /// Products created (or that would be).
    pub created: usize,
    /// Products updated (or that would be).
    pub updated: usize,
    /// Rows equal to the product already there.
    pub unchanged: usize,
    /// Row-level errors (any error: nothing imported).
    pub errors: Vec<RowError>,
    /// What each row does (the first 1,000 rows).
    pub plan: Vec<RowPlan>,
}

/// Formats minor units in major units: `1234`, 2 → `12.34`.
pub fn format_major(amount: i64, exponent: u8) -> String {
    let exponent = u32::from(exponent.min(18));
    if exponent == 0 {
        return amount.to_string();
    }
    let scale = 10u64.pow(exponent);
    let abs = amount.unsigned_abs();
    let sign = if amount < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exponent as usize
    )
}

/// Parses an amount in major units with at most `exponent` decimals into minor units.
pub fn parse_major(s: &str, exponent: u8) -> std::result::Result<i64, String> {
    let s = s.trim();
    let bad = || {
        if exponent == 0 {
            format!("{s:?} is not a whole amount")
        } else {
            format!("{s:?} is not an amount with at most {exponent} decimals, like 2.50")
        }
    };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > exponent as usize
        || (s.contains('.') && frac.is_empty())
        || int.len() > 15
    {
        return Err(bad());
    }
    let int: i64 = int.parse().map_err(|_| bad())?;
    let mut frac_v: i64 = 0;
    for i in 0..exponent as usize {
        let d = frac
            .as_bytes()
            .get(i)
            .map(|b| (b - b'0') as i64)
            .unwrap_or(0);
        frac_v = frac_v * 10 + d;
    }
    int.checked_mul(10i64.pow(exponent as u32))
        .and_then(|v| v.checked_add(frac_v))
        .ok_or_else(bad)
}

/// Formats a tax rate in basis points as percent: `2000` → `20`, `550` → `5.5`.
pub fn format_percent(bp: u32) -> String {
    let s = format_major(bp as i64, 2);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Parses RFC 4180 CSV (commas, `"` quoting, CRLF or LF line ends, a leading BOM ignored).
/// Returns the records with the line number each starts on.
pub fn parse_csv(text: &str) -> std::result::Result<Vec<(usize, Vec<String>)>, RowError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut was_quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
                any = true;
            }
            '"' => {
                return Err(RowError {
                    row: start,
                    column: None,
                    message: "a quote inside an unquoted field (quote the whole field and \
                              double the quotes inside)"
                        .into(),
                });
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                was_quoted = false;
                any = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                if any || !field.is_empty() {
                    record.push(std::mem::take(&mut field));
                    records.push((start, std::mem::take(&mut record)));
                }
                was_quoted = false;
                any = false;
                line += 1;
                start = line;
            }
            _ => {
                if was_quoted {
                    return Err(RowError {
                        row: start,
                        column: None,
                        message: "text after a closing quote".into(),
                    });
                }
                field.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err(RowError {
            row: start,
            column: None,
            message: "a quoted field is never closed".into(),
        });
    }
    if any || !field.is_empty() {
        record.push(field);
        records.push((start, record));
    }
    Ok(records)
}

/// Undoes the export's formula defusing (`'=x` → `=x`).
fn undefuse(s: &str) -> String {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_string(),
        _ => s.to_string(),
    }
}

/// One validated row.
struct Planned {
    row: usize,
    product: Product,
    old: Option<Product>,
}

/// Validates `csv` against the catalog and, unless `dry_run` or anything is wrong, writes it.
pub fn import_products(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    csv: &str,
    dry_run: bool,
) -> Result<ImportReport> {
    access::require(by, Access::ImportProducts)?;
    let key = super::commands::person_key(by)?.clone();
    let settings = ctx.shop().settings()?.clone();
    let exp = settings.currency_exponent;
    let mut report = ImportReport {
        dry_run,
        imported: false,
        rows: 0,
        created: 0,
        updated: 0,
        unchanged: 0,
        errors: Vec::new(),
        plan: Vec::new(),
    };
    let records = match parse_csv(csv) {
        Ok(r) => r,
        Err(e) => {
            report.errors.push(e);
            return Ok(report);
        }
    };
    let Some(((_, header), rows)) = records.split_first() else {
        report.errors.push(RowError {
            row: 1,
            column: None,
            message: "the file is empty: it needs a header row (sku,name,price,…)".into(),
        });
        return Ok(report);
    };
    let mut cols: HashMap<&'static str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        let name = h.trim().to_ascii_lowercase();
        match COLUMNS.iter().find(|c| **c == name) {
            Some(c) => {
                if cols.insert(c, i).is_some() {
                    report.errors.push(RowError {
                        row: 1,
                        column: Some(name.clone()),
                        message: format!("column {name:?} appears twice"),
                    });
                }
            }
            None => report.errors.push(RowError {
                row: 1,
                column: Some(h.clone()),
                message: format!(
                    "unknown column {h:?}; the columns are {}",
                    COLUMNS.join(", ")
                ),
            }),
        }
    }
    for required in ["sku", "name", "price"] {
        if !cols.contains_key(required) {
            report.errors.push(RowError {
                row: 1,
                column: Some(required.into()),
                message: format!("the header has no {required:?} column"),
            });
        }
    }
    if !report.errors.is_empty() {
        return Ok(report);
    }
    if rows.len() > MAX_ROWS {
        report.errors.push(RowError {
            row: 1,
            column: None,
            message: format!("at most {MAX_ROWS} rows per import; split the file"),
        });
        return Ok(report);
    }
    report.rows = rows.len();

    // Existing products by SKU (several claimants make the SKU ambiguous).
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut planned: Vec<Planned> = Vec::new();
    {
        let skus = ctx.tx.open_multimap_table(SKUS)?;
        let products = ctx.tx.open_table(PRODUCTS)?;
        for (line, cells) in rows {
            let row = *line;
            let mut errs: Vec<RowError> = Vec::new();
            let mut err = |col: &str, msg: String| {
                errs.push(RowError {
                    row,
                    column: Some(col.to_string()),
                    message: msg,
                });
            };
            if cells.len() != header.len() {
                report.errors.push(RowError {
                    row,
                    column: None,
                    message: format!(
                        "{} cells, but the header has {} columns",
                        cells.len(),
                        header.len()
                    ),
                });
                continue;
            }
            let cell = |c: &str| cols.get(c).map(|i| undefuse(cells[*i].trim()));
            let sku = cell("sku").unwrap_or_default();
            let sku = match check_code("sku", &sku) {
                Ok(s) => s,
                Err(e) => {
                    err("sku", e.to_string());
                    String::new()
                }
            };
            if !sku.is_empty()
                && let Some(first) = seen.insert(sku.clone(), row)
            {
                err("sku", format!("SKU {sku:?} is also on row {first}"));
            }
            // The product this row updates, if any.
            let mut old: Option<Product> = None;
            if !sku.is_empty() {
                let mut claimants = Vec::new();
                for v in skus.get(sku.as_str())? {
                    claimants.push(v?.value());
                }
                claimants.sort();
                claimants.dedup();
                match claimants.as_slice() {
                    [] => {}
                    [(pid, 0)] => {
                        if let Some(v) = products.get(*pid)? {
                            old = Some(
                                serde_json::from_str(v.value())
                                    .map_err(|e| Error::Internal(e.to_string()))?,
                            );
                        }
                    }
                    [(_, _)] => err(
                        "sku",
                        format!("SKU {sku:?} belongs to a variant; edit it on its product"),
                    ),
                    _ => err(
                        "sku",
                        format!(
                            "SKU {sku:?} is claimed by {} products (a duplicate SKU alert): \
                             resolve that first",
                            claimants.len()
                        ),
                    ),
                }
            }
            let base = old.clone();
            let mut p = base.clone().unwrap_or(Product {
                id: Uuid::new_v4(),
                sku: sku.clone(),
                barcode: None,
                name: String::new(),
                category: None,
                unit: "pcs".into(),
                price: 0,
                cost: 0,
                tax_rate: 0,
                reorder_level: None,
                variants: Vec::new(),
                archived: false,
                conflicts: BTreeMap::new(),
            });
            p.sku = sku.clone();
            if let Some(v) = cell("name") {
                match non_empty("name", &v, 200) {
                    Ok(v) => p.name = v,
                    Err(e) => err("name", e.to_string()),
                }
            }
            if let Some(v) = cell("price") {
                match parse_major(&v, exp)
                    .map_err(|m| m.to_string())
                    .and_then(|m| check_money("price", m).map_err(|e| e.to_string()))
                {
                    Ok(v) => p.price = v,
                    Err(e) => err("price", e),
                }
            }
            if let Some(v) = cell("cost") {
                let parsed = if v.is_empty() {
                    Ok(0)
                } else {
                    parse_major(&v, exp)
                        .and_then(|m| check_money("cost", m).map_err(|e| e.to_string()))
                };
                match parsed {
                    Ok(v) => p.cost = v,
                    Err(e) => err("cost", e),
                }
            }
            if let Some(v) = cell("barcode") {
                if v.is_empty() {
                    p.barcode = None;
                } else {
                    match check_code("barcode", &v) {
                        Ok(v) => p.barcode = Some(v),
                        Err(e) => err("barcode", e.to_string()),
                    }
                }
            }
            if let Some(v) = cell("category") {
                if v.is_empty() {
                    p.category = None;
                } else {
                    match non_empty("category", &v, 100) {
                        Ok(v) => p.category = Some(v),
                        Err(e) => err("category", e.to_string()),
                    }
                }
            }
            if let Some(v) = cell("unit") {
                if v.is_empty() {
                    p.unit = "pcs".into();
                } else {
                    match non_empty("unit", &v, 20) {
                        Ok(v) => p.unit = v,
                        Err(e) => err("unit", e.to_string()),
                    }
                }
            }
            if let Some(v) = cell("tax_rate") {
                let parsed = if v.is_empty() {
                    Ok(0)
                } else {
                    parse_major(v.trim_end_matches('%').trim(), 2)
                        .map_err(|_| format!("{v:?} is not a percentage like 20 or 5.5"))
                        .and_then(|bp| {
                            u32::try_from(bp)
                                .map_err(|_| "too large".to_string())
                                .and_then(|bp| {
                                    check_tax_rate("tax_rate", bp).map_err(|_| {
                                        "a tax rate is a percentage between 0 and 100".to_string()
                                    })
                                })
                        })
                };
                match parsed {
                    Ok(v) => p.tax_rate = v,
                    Err(e) => err("tax_rate", e),
                }
            }
            if let Some(v) = cell("reorder_level") {
                if v.is_empty() {
                    p.reorder_level = None;
                } else {
                    match v.parse::<i64>() {
                        Ok(r) if (0..=MAX_QTY).contains(&r) => p.reorder_level = Some(r),
                        _ => err(
                            "reorder_level",
                            format!("{v:?} is not a whole number of 0 or more"),
                        ),
                    }
                }
            }
            if let Some(v) = cell("archived") {
                match v.to_ascii_lowercase().as_str() {
                    "" | "false" | "no" | "0" => p.archived = false,
                    "true" | "yes" | "1" => p.archived = true,
                    _ => err("archived", format!("{v:?} is not true or false")),
                }
            }
            if let Some(v) = cell("currency")
                && !v.is_empty()
                && !v.eq_ignore_ascii_case(&settings.currency)
            {
                err(
                    "currency",
                    format!(
                        "{v:?}, but the shop's prices are in {}; convert the prices first",
                        settings.currency
                    ),
                );
            }
            if let Some(o) = &old
                && p.variants.iter().any(|v| v.sku == p.sku)
            {
                let _ = o;
                err("sku", "a variant of this product uses that SKU".into());
            }
            if errs.is_empty() {
                planned.push(Planned {
                    row,
                    product: p,
                    old,
                });
            } else {
                report.errors.extend(errs);
            }
        }
    }
    report.errors.sort_by_key(|e| e.row);
    for pl in &planned {
        let (action, fields) = match &pl.old {
            None => ("create", Vec::new()),
            Some(o) => {
                let f = changed_fields(o, &pl.product);
                if f.is_empty() && o.conflicts.is_empty() {
                    ("unchanged", f)
                } else {
                    ("update", f)
                }
            }
        };
        match action {
            "create" => report.created += 1,
            "update" => report.updated += 1,
            _ => report.unchanged += 1,
        }
        if report.plan.len() < 1_000 {
            report.plan.push(RowPlan {
                row: pl.row,
                sku: pl.product.sku.clone(),
                action: action.into(),
                fields,
                product_id: pl.old.as_ref().map(|o| o.id),
            });
        }
    }
    if dry_run || !report.errors.is_empty() {
        return Ok(report);
    }
    // Write: every row validated. Updates start from the catalog document's own view of the
    // product (its conflicts decide which registers are rewritten).
    let writes: Vec<&Planned> = planned
        .iter()
        .filter(|pl| match &pl.old {
            None => true,
            Some(o) => !changed_fields(o, &pl.product).is_empty() || !o.conflicts.is_empty(),
        })
        .collect();
    for chunk in writes.chunks(PRODUCTS_PER_CHANGE) {
        let mut edits = Vec::new();
        {
            let doc = ctx
                .doc("catalog")?
                .ok_or_else(|| Error::NoShop("this node has no catalog yet".into()))?;
            for pl in chunk {
                let old = match &pl.old {
                    Some(o) => Some(catalog::read_product(doc, o.id).ok_or_else(|| {
                        Error::Internal(format!("product {} is not in the catalog", o.id))
                    })?),
                    None => None,
                };
                let mut new = pl.product.clone();
                if let Some(o) = &old {
                    new.variants = o.variants.clone();
                    new.conflicts = BTreeMap::new();
                }
                edits.push((old, new));
            }
        }
        ctx.change(&DocId::Catalog, &key, |doc| {
            for (old, new) in &edits {
                match old {
                    None => catalog::put_new_product(doc, new)?,
                    Some(o) => catalog::put_product_edit(doc, o, new)?,
                }
            }
            Ok(())
        })?;
    }
    for (pl, plan) in planned.iter().zip(report.plan.iter_mut()) {
        plan.product_id = Some(pl.product.id);
    }
    report.imported = true;
    Ok(report)
}

fn changed_fields(o: &Product, n: &Product) -> Vec<String> {
    let mut f = Vec::new();
    let mut c = |name: &str, changed: bool| {
        if changed {
            f.push(name.to_string());
        }
    };
    c("name", o.name != n.name);
    c("price", o.price != n.price);
    c("barcode", o.barcode != n.barcode);
    c("category", o.category != n.category);
    c("unit", o.unit != n.unit);
    c("cost", o.cost != n.cost);
    c("tax_rate", o.tax_rate != n.tax_rate);
    c("reorder_level", o.reorder_level != n.reorder_level);
    c("archived", o.archived != n.archived);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip() {
        assert_eq!(parse_major("2.50", 2), Ok(250));
        assert_eq!(parse_major("2.5", 2), Ok(250));
        assert_eq!(parse_major("2", 2), Ok(200));
        assert_eq!(parse_major("250", 0), Ok(250));
        assert_eq!(parse_major("0.001", 3), Ok(1));
        assert!(parse_major("2.505", 2).is_err());
        assert!(parse_major("2.", 2).is_err());
        assert!(parse_major("-1", 2).is_err());
        assert!(parse_major("1,50", 2).is_err());
        assert!(parse_major("2.5", 0).is_err());
        for (v, e) in [(1234, 2), (5, 0), (1, 3), (100, 2)] {
            assert_eq!(parse_major(&format_major(v, e), e), Ok(v));
        }
        assert_eq!(format_percent(2000), "20");
        assert_eq!(format_percent(550), "5.5");
        assert_eq!(format_percent(0), "0");
    }

    #[test]
    fn csv_records() {
        let r = parse_csv("\u{feff}a,b\r\n\"x, \"\"y\"\"\",\"multi\nline\"\n\n1,\n").unwrap();
        assert_eq!(
            r,
            vec![
                (1, vec!["a".to_string(), "b".into()]),
                (2, vec!["x, \"y\"".to_string(), "multi\nline".into()]),
                (5, vec!["1".to_string(), "".into()]),
            ]
        );
        assert_eq!(parse_csv("a,\"b").unwrap_err().row, 1);
        assert_eq!(parse_csv("a\nb\"c\n").unwrap_err().row, 2);
        assert_eq!(undefuse("'=SUM(A1)"), "=SUM(A1)");
        assert_eq!(undefuse("'quoted"), "'quoted");
    }
}
