//! Money arithmetic: integer minor units only, explicit rounding, no floats.

use crate::error::{Error, Result};
use crate::model::{NewPayment, Payment, PaymentMethod, Rounding, TaxMode};

/// Largest amount of money the node accepts anywhere (10^15 minor units).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// The minor-unit exponent of an ISO 4217 currency.
pub fn currency_exponent(field: &str, code: &str) -> Result<u8> {
    let code = code.to_ascii_uppercase();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::invalid(
            field,
            format!("{code:?} is not an ISO 4217 currency code"),
        ));
    }
    Ok(match code.as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    })
}

/// `num / den` rounded by `rule` (`den > 0`).
pub fn div_round(num: i128, den: i128, rule: Rounding) -> i64 {
    debug_assert!(den > 0);
    let q = num / den;
    let r = num % den;
    let adj = if r == 0 {
        0
    } else {
        let twice = 2 * r.abs();
        let away = if num < 0 { -1 } else { 1 };
        match rule {
            Rounding::Down => 0,
            Rounding::HalfUp => {
                if twice >= den {
                    away
                } else {
                    0
                }
            }
            Rounding::HalfEven => {
                if twice > den || (twice == den && q % 2 != 0) {
                    away
                } else {
                    0
                }
            }
        }
    };
    (q + adj) as i64
}

/// A sale line's customer total and the tax in it.
pub fn line_amounts(
    unit_price: i64,
    qty: i64,
    discount: i64,
    tax_rate_bp: u32,
    mode: TaxMode,
    rule: Rounding,
) -> Result<(i64, i64)> {
    let gross = (unit_price as i128) * (qty as i128);
    if gross.abs() > MAX_AMOUNT as i128 {
        return Err(Error::invalid("qty", "line amount too large"));
    }
    let net = gross - discount as i128;
    if discount < 0 || net < 0 {
        return Err(Error::invalid(
            "discount",
            "a discount must be between 0 and the line amount",
        ));
    }
    let rate = tax_rate_bp as i128;
    Ok(match mode {
        TaxMode::Inclusive => (net as i64, div_round(net * rate, 10_000 + rate, rule)),
        TaxMode::Exclusive => {
            let tax = div_round(net * rate, 10_000, rule);
            (net as i64 + tax, tax)
        }
    })
}

/// `amount` rounded to the nearest multiple of `step` (half up), for cash.
pub fn cash_round(amount: i64, step: i64) -> i64 {
    if step <= 1 {
        return amount;
    }
    div_round(amount as i128, step as i128, Rounding::HalfUp) * step
}

/// How a sale was settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// Payments with every amount filled in.
    pub payments: Vec<Payment>,
    /// Cash given back.
    pub change_due: i64,
    /// Cash rounding added to the total.
    pub rounding: i64,
}

/// Settles `total` with split-tender payments. At most one payment may leave its amount out:
/// it tenders exactly what is left. Only cash may be over-tendered (change is given); when cash
/// pays the rest, that rest is rounded to `cash_step`.
pub fn settle(total: i64, payments: &[NewPayment], cash_step: i64) -> Result<Settlement> {
    if payments.is_empty() {
        return Err(Error::invalid("payments", "at least one payment is needed"));
    }
    if payments.len() > 10 {
        return Err(Error::invalid("payments", "at most 10 payments"));
    }
    let open: Vec<usize> = (0..payments.len())
        .filter(|&i| payments[i].amount.is_none())
        .collect();
    if open.len() > 1 {
        return Err(Error::invalid(
            "payments",
            "only one payment may leave out its amount",
        ));
    }
    for (i, p) in payments.iter().enumerate() {
        if let Some(a) = p.amount
            && !(1..=MAX_AMOUNT).contains(&a)
        {
            return Err(Error::invalid(
                format!("payments[{i}].amount"),
                "must be a positive amount in minor units",
            ));
        }
    }
    let sum = |cash: bool| -> i64 {
        payments
            .iter()
            .filter(|p| (p.method == PaymentMethod::Cash) == cash)
            .filter_map(|p| p.amount)
            .sum()
    };
    let (non_cash, cash) = (sum(false), sum(true));
    let open_method = open.first().map(|&i| payments[i].method);
    let uses_cash = payments.iter().any(|p| p.method == PaymentMethod::Cash);
    if non_cash > total {
        return Err(Error::invalid(
            "payments",
            "card and other payments exceed the total; only cash can be over-tendered",
        ));
    }
    let (rounding, cash_due) = if uses_cash
        && open_method != Some(PaymentMethod::Card)
        && open_method != Some(PaymentMethod::Other)
    {
        let due = total - non_cash;
        let rounded = cash_round(due, cash_step);
        (rounded - due, rounded)
    } else {
        (0, total - non_cash)
    };
    let mut filled: Vec<Payment> = payments
        .iter()
        .map(|p| Payment {
            method: p.method,
            amount: p.amount.unwrap_or(0),
        })
        .collect();
    let change_due = match open.first() {
        Some(&i) => {
            let rest = cash_due - cash;
            if rest <= 0 {
                return Err(Error::invalid(
                    format!("payments[{i}]"),
                    "nothing is left to pay with this payment",
                ));
            }
            filled[i].amount = rest;
            0
        }
        None => {
            let change = cash - cash_due;
            if change < 0 {
                return Err(Error::invalid(
                    "payments",
                    format!("payments are short by {} minor units", -change),
                ));
            }
            change
        }
    };
    Ok(Settlement {
        payments: filled,
        change_due,
        rounding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(method: PaymentMethod, amount: Option<i64>) -> NewPayment {
        NewPayment { method, amount }
    }

    #[test]
    fn exponents() {
        assert_eq!(currency_exponent("c", "JPY").unwrap(), 0);
        assert_eq!(currency_exponent("c", "eur").unwrap(), 2);
        assert_eq!(currency_exponent("c", "KWD").unwrap(), 3);
        assert!(currency_exponent("c", "EURO").is_err());
    }

    #[test]
    fn rounding_rules() {
        assert_eq!(div_round(5, 2, Rounding::HalfUp), 3);
        assert_eq!(div_round(5, 2, Rounding::HalfEven), 2);
        assert_eq!(div_round(7, 2, Rounding::HalfEven), 4);
        assert_eq!(div_round(5, 2, Rounding::Down), 2);
        assert_eq!(div_round(-5, 2, Rounding::HalfUp), -3);
        assert_eq!(div_round(-5, 2, Rounding::HalfEven), -2);
    }

    #[test]
    fn tax_inclusive_eur() {
        // 3 × 4.99 € at 20 % included: 14.97 €, tax = 14.97 × 20/120 = 2.495 → 2.50 (half up).
        assert_eq!(
            line_amounts(499, 3, 0, 2000, TaxMode::Inclusive, Rounding::HalfUp).unwrap(),
            (1497, 250)
        );
        // Banker's rounding keeps 2.495 → 2.50? 249.5 → 250 (250 is even).
        assert_eq!(
            line_amounts(499, 3, 0, 2000, TaxMode::Inclusive, Rounding::HalfEven).unwrap(),
            (1497, 250)
        );
        // 1.00 € discount: 13.97 €, tax 13.97/6 = 2.32833 → 2.33.
        assert_eq!(
            line_amounts(499, 3, 100, 2000, TaxMode::Inclusive, Rounding::HalfUp).unwrap(),
            (1397, 233)
        );
    }

    #[test]
    fn tax_exclusive_usd() {
        // 2 × $19.99 + 8.875 % tax: 39.98 × 0.08875 = 3.548225 → 3.55; total 43.53.
        assert_eq!(
            line_amounts(1999, 2, 0, 888, TaxMode::Exclusive, Rounding::HalfUp).unwrap(),
            (3998 + 355, 355)
        );
        assert_eq!(
            line_amounts(1999, 2, 0, 888, TaxMode::Exclusive, Rounding::Down).unwrap(),
            (3998 + 355, 355)
        );
    }

    #[test]
    fn tax_jpy_and_kwd() {
        // ¥1,080 including 8 %: tax = 1080 × 8/108 = 80 exactly.
        assert_eq!(
            line_amounts(1080, 1, 0, 800, TaxMode::Inclusive, Rounding::HalfUp).unwrap(),
            (1080, 80)
        );
        // ¥333 × 1 incl. 10 %: 30.27 → 30.
        assert_eq!(
            line_amounts(333, 1, 0, 1000, TaxMode::Inclusive, Rounding::HalfUp).unwrap(),
            (333, 30)
        );
        // 1.250 KWD (1250 fils) × 3, 5 % exclusive: 3750 × 0.05 = 187.5 → 188 fils (half up).
        assert_eq!(
            line_amounts(1250, 3, 0, 500, TaxMode::Exclusive, Rounding::HalfUp).unwrap(),
            (3938, 188)
        );
        assert_eq!(
            line_amounts(1250, 3, 0, 500, TaxMode::Exclusive, Rounding::HalfEven).unwrap(),
            (3938, 188)
        );
    }

    #[test]
    fn split_tender_and_change() {
        use PaymentMethod::*;
        // 43.53 total: 20.00 card, cash 30.00 → change 6.47.
        let s = settle(4353, &[pay(Card, Some(2000)), pay(Cash, Some(3000))], 1).unwrap();
        assert_eq!(s.change_due, 647);
        assert_eq!(s.rounding, 0);
        // Card tenders exactly the rest after 10.00 cash.
        let s = settle(4353, &[pay(Cash, Some(1000)), pay(Card, None)], 1).unwrap();
        assert_eq!(s.payments[1].amount, 3353);
        assert_eq!(s.change_due, 0);
        // Card may not over-tender.
        assert!(settle(4353, &[pay(Card, Some(5000))], 1).is_err());
        // Short payment.
        assert!(settle(4353, &[pay(Cash, Some(4000))], 1).is_err());
        // Cash rounding to 0.05 (CHF): 43.53 → 43.55, 50.00 tendered → change 6.45.
        let s = settle(4353, &[pay(Cash, Some(5000))], 5).unwrap();
        assert_eq!((s.rounding, s.change_due), (2, 645));
        // 43.52 → 43.50 exactly tendered with an open cash payment.
        let s = settle(4352, &[pay(Cash, None)], 5).unwrap();
        assert_eq!(
            (s.rounding, s.payments[0].amount, s.change_due),
            (-2, 4350, 0)
        );
        // Two open payments are ambiguous.
        assert!(settle(100, &[pay(Cash, None), pay(Card, None)], 1).is_err());
    }
}
