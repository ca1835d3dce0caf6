//! Money in and out per payment method.

use std::collections::BTreeMap;

use redb::ReadTransaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DayRange, day_string, from_json_name, json_name};
use crate::error::Result;
use crate::model::*;
use crate::store::tables::*;

/// Money of one payment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MethodTotals {
    /// Method.
    pub method: PaymentMethod,
    /// Received from sales, net of change (cash includes cash rounding).
    pub received: i64,
    /// Paid back by refunds.
    pub refunded: i64,
    /// `received − refunded`.
    pub net: i64,
}

/// Money per payment method (`GET /api/v1/reports/payments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentsReport {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Cash, card and other always, in that order (then any other method seen).
    pub methods: Vec<MethodTotals>,
    /// Received, refunded and net of every method.
    pub received: i64,
    #[allow(missing_docs)]
    pub refunded: i64,
    #[allow(missing_docs)]
    pub net: i64,
}

/// Money per payment method over `range`.
pub fn payments(tx: &ReadTransaction, range: DayRange) -> Result<PaymentsReport> {
    let (a, b) = range.numbers();
    let mut by: BTreeMap<String, [i64; 2]> = BTreeMap::new();
    for m in [
        PaymentMethod::Cash,
        PaymentMethod::Card,
        PaymentMethod::Other,
    ] {
        by.insert(json_name(&m)?, [0, 0]);
    }
    for row in tx
        .open_table(REPORT_PAYMENTS)?
        .range((a, "")..(b + 1, ""))?
    {
        let (k, v) = row?;
        let e = by.entry(k.value().1.to_string()).or_default();
        let [r, f] = v.value();
        e[0] += r;
        e[1] += f;
    }
    let mut methods: Vec<MethodTotals> = by
        .into_iter()
        .filter_map(|(name, [received, refunded])| {
            Some(MethodTotals {
                method: from_json_name(&name)?,
                received,
                refunded,
                net: received - refunded,
            })
        })
        .collect();
    methods.sort_by_key(|m| m.method);
    Ok(PaymentsReport {
        from: day_string(range.from),
        to: day_string(range.to),
        received: methods.iter().map(|m| m.received).sum(),
        refunded: methods.iter().map(|m| m.refunded).sum(),
        net: methods.iter().map(|m| m.net).sum(),
        methods,
    })
}
