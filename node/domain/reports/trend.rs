//! The movement trend: stock movements per kind and day.

use std::collections::BTreeMap;

use redb::ReadTransaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DayRange, day_of_number, day_string, from_json_name};
use crate::error::Result;
use crate::model::*;
use crate::store::tables::*;

/// Quantities of one movement kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KindQty {
    /// Kind.
    pub kind: MovementKind,
    /// Units in.
    pub qty_in: i64,
    /// Units out.
    pub qty_out: i64,
}

/// Movements of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MovementDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Units in, every kind.
    pub qty_in: i64,
    /// Units out, every kind.
    pub qty_out: i64,
    /// Per kind, the kinds of [`MovementTrend::kinds`] in that order.
    pub kinds: Vec<KindQty>,
}

/// Stock movements per day and kind (`GET /api/v1/reports/movements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MovementTrend {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Kinds that moved in the range, by name.
    pub kinds: Vec<MovementKind>,
    /// Every day of the range in order.
    pub days: Vec<MovementDay>,
}

/// Stock movements per day and kind over `range`.
pub fn movements(tx: &ReadTransaction, range: DayRange) -> Result<MovementTrend> {
    let (a, b) = range.numbers();
    let mut rows: BTreeMap<(i32, String), [i64; 2]> = BTreeMap::new();
    for row in tx.open_table(REPORT_MOVES)?.range((a, "")..(b + 1, ""))? {
        let (k, v) = row?;
        let (d, kind) = k.value();
        rows.insert((d, kind.to_string()), v.value());
    }
    let mut names: Vec<String> = rows.keys().map(|(_, k)| k.clone()).collect();
    names.sort();
    names.dedup();
    let kinds: Vec<(String, MovementKind)> = names
        .into_iter()
        .filter_map(|n| from_json_name(&n).map(|k| (n, k)))
        .collect();
    let days = (a..=b)
        .map(|n| {
            let per: Vec<KindQty> = kinds
                .iter()
                .map(|(name, kind)| {
                    let [qty_in, qty_out] =
                        rows.get(&(n, name.clone())).copied().unwrap_or_default();
                    KindQty {
                        kind: *kind,
                        qty_in,
                        qty_out,
                    }
                })
                .collect();
            MovementDay {
                day: day_string(day_of_number(n)),
                qty_in: per.iter().map(|k| k.qty_in).sum(),
                qty_out: per.iter().map(|k| k.qty_out).sum(),
                kinds: per,
            }
        })
        .collect();
    Ok(MovementTrend {
        from: day_string(range.from),
        to: day_string(range.to),
        kinds: kinds.into_iter().map(|(_, k)| k).collect(),
        days,
    })
}
