//! Sales per person and per till.

use std::collections::BTreeMap;

use redb::ReadTransaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DayRange, day_string, person_key};
use crate::docs::shop::ShopView;
use crate::error::Result;
use crate::store::tables::*;

/// Sales of one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StaffSales {
    /// Person (absent for entries recorded without one).
    pub person_id: Option<Uuid>,
    /// Display name (empty if unknown here).
    pub name: String,
    /// Sales rung up, voids left out.
    pub count: i64,
    /// Their total, tax included.
    pub total: i64,
    /// Refunds this person gave.
    pub refunds: i64,
}

/// Sales of one till.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TillSales {
    /// Device id.
    pub device: String,
    /// Device name (empty if unknown here).
    pub name: String,
    /// Sales, voids left out.
    pub count: i64,
    /// Their total, tax included.
    pub total: i64,
    /// Refunds given on this till.
    pub refunds: i64,
}

/// Sales per person and per till (`GET /api/v1/reports/staff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StaffReport {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Per person, largest total first (ties: person id).
    pub people: Vec<StaffSales>,
    /// Per till, largest total first (ties: device id).
    pub tills: Vec<TillSales>,
}

/// Sales per person and per till over `range`; names from `shop`.
pub fn staff(tx: &ReadTransaction, range: DayRange, shop: &ShopView) -> Result<StaffReport> {
    let (a, b) = range.numbers();
    let mut people: BTreeMap<u128, [i64; 3]> = BTreeMap::new();
    for row in tx
        .open_table(REPORT_STAFF)?
        .range((a, 0)..=(b, u128::MAX))?
    {
        let (k, v) = row?;
        let e = people.entry(k.value().1).or_default();
        for (s, d) in e.iter_mut().zip(v.value()) {
            *s += d;
        }
    }
    let mut tills: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    let t = tx.open_table(REPORT_TILLS)?;
    for row in t.range((a, "")..(b + 1, ""))? {
        let (k, v) = row?;
        let e = tills.entry(k.value().1.to_string()).or_default();
        for (s, d) in e.iter_mut().zip(v.value()) {
            *s += d;
        }
    }
    let mut people: Vec<StaffSales> = people
        .into_iter()
        .map(|(p, [count, total, refunds])| {
            let person_id = (p != 0).then(|| Uuid::from_u128(p));
            StaffSales {
                name: person_id
                    .and_then(|id| shop.person(id))
                    .map(|r| r.person.name.clone())
                    .unwrap_or_default(),
                person_id,
                count,
                total,
                refunds,
            }
        })
        .collect();
    people.sort_by(|x, y| {
        y.total
            .cmp(&x.total)
            .then_with(|| person_key(x.person_id).cmp(&person_key(y.person_id)))
    });
    let mut tills: Vec<TillSales> = tills
        .into_iter()
        .map(|(device, [count, total, refunds])| TillSales {
            name: shop
                .devices
                .iter()
                .find(|d| d.id == device)
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            device,
            count,
            total,
            refunds,
        })
        .collect();
    tills.sort_by(|x, y| y.total.cmp(&x.total).then_with(|| x.device.cmp(&y.device)));
    Ok(StaffReport {
        from: day_string(range.from),
        to: day_string(range.to),
        people,
        tills,
    })
}
