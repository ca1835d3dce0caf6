//! Time ranges in query strings, shop-local days and money formatting.
//!
//! `from` and `to` of `GET /sales` and the exports accept three forms:
//!
//! - a shop-local day `YYYY-MM-DD` (the settings' time zone): `from` is the start of that day,
//!   `to` the end of it (the day is included);
//! - an RFC 3339 time (`2026-11-22T09:30:00+01:00`; a `+` that a query string turned into a
//!   space is accepted too);
//! - milliseconds since the Unix epoch.
//!
//! The range is `from <= time < to`. Without `from` it starts 24 h before `to` (or now); without
//! `to` it is open-ended (so entries from a device whose clock runs slightly ahead are listed).

use chrono::{
    DateTime, Duration as ChronoDuration, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;

use super::error::ApiError;
use crate::handle::NodeHandle;

/// The length of the default `/sales` window.
const DEFAULT_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// One end of a range as written in the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Millis(i64),
    Day(NaiveDate),
}

fn parse_bound(raw: &str, field: &str) -> Result<Bound, ApiError> {
    let s = raw.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Bound::Millis(ms));
    }
    if s.len() == 10
        && let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
    {
        return Ok(Bound::Day(day));
    }
    let parsed = DateTime::parse_from_rfc3339(s)
        .or_else(|e| DateTime::parse_from_rfc3339(&s.replace(' ', "+")).map_err(|_| e));
    match parsed {
        Ok(t) => Ok(Bound::Millis(t.timestamp_millis())),
        Err(_) => Err(ApiError::invalid_field(
            field,
            format!(
                "`{raw}` is not a day (YYYY-MM-DD), an RFC 3339 time or milliseconds since the epoch"
            ),
        )),
    }
}

/// The time zone of the shop (UTC if the settings name none this build knows).
pub(crate) fn shop_tz(handle: &NodeHandle) -> Result<Tz, ApiError> {
    let settings = handle.settings()?;
    Ok(settings.timezone.parse::<Tz>().unwrap_or_else(|_| {
        tracing::warn!(timezone = %settings.timezone, "unknown time zone in settings; using UTC");
        Tz::UTC
    }))
}

/// The first instant of a shop-local day, in ms since the epoch.
pub(crate) fn day_start(day: NaiveDate, tz: Tz) -> i64 {
    let midnight = day.and_time(NaiveTime::MIN);
    // Where a DST change skips midnight, the day starts at the first local time that exists.
    (0..=180)
        .find_map(|minutes| {
            tz.from_local_datetime(&(midnight + ChronoDuration::minutes(minutes)))
                .earliest()
        })
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| midnight.and_utc().timestamp_millis())
}

/// The first instant after a shop-local day.
fn day_end(day: NaiveDate, tz: Tz) -> i64 {
    match day.succ_opt() {
        Some(next) => day_start(next, tz),
        None => i64::MAX,
    }
}

/// Today in the shop's time zone.
pub(crate) fn today(tz: Tz) -> NaiveDate {
    Utc::now().with_timezone(&tz).date_naive()
}

/// Resolves `from`/`to` query values into `from <= time < to` in ms.
pub(crate) fn time_range(
    handle: &NodeHandle,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(i64, i64), ApiError> {
    let from = from
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_bound(s, "from"))
        .transpose()?;
    let to = to
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_bound(s, "to"))
        .transpose()?;
    let needs_tz = matches!(from, Some(Bound::Day(_))) || matches!(to, Some(Bound::Day(_)));
    let tz = if needs_tz { shop_tz(handle)? } else { Tz::UTC };

    let to_ms = match to {
        Some(Bound::Millis(ms)) => Some(ms),
        Some(Bound::Day(day)) => Some(day_end(day, tz)),
        None => None,
    };
    let from_ms = match from {
        Some(Bound::Millis(ms)) => ms,
        Some(Bound::Day(day)) => day_start(day, tz),
        None => to_ms
            .unwrap_or_else(|| Utc::now().timestamp_millis())
            .saturating_sub(DEFAULT_WINDOW_MS),
    };
    let to_ms = to_ms.unwrap_or(i64::MAX);
    if from_ms > to_ms {
        return Err(ApiError::invalid_field("from", "`from` is after `to`"));
    }
    Ok((from_ms, to_ms))
}

/// Parses a `YYYY-MM-DD` day.
pub(crate) fn parse_day(raw: &str, field: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::invalid_field(field, format!("`{raw}` is not a day (YYYY-MM-DD)")))
}

/// Formats a day as `YYYY-MM-DD`.
pub(crate) fn format_day(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// Formats ms since the epoch as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Formats an amount of minor units with the currency's exponent: `1234`, 2 → `12.34`.
pub(crate) fn format_minor(amount: i64, exponent: u8) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money() {
        assert_eq!(format_minor(1234, 2), "12.34");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(5, 0), "5");
        assert_eq!(format_minor(1, 3), "0.001");
        assert_eq!(format_minor(i64::MIN, 2), "-92233720368547758.08");
    }

    #[test]
    fn bounds() {
        assert_eq!(
            parse_bound("1700000000000", "from").unwrap(),
            Bound::Millis(1_700_000_000_000)
        );
        assert_eq!(
            parse_bound("2026-11-22", "from").unwrap(),
            Bound::Day(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap())
        );
        assert_eq!(
            parse_bound("1970-01-01T01:00:00+01:00", "from").unwrap(),
            Bound::Millis(0)
        );
        assert_eq!(
            parse_bound("1970-01-01T01:00:00 01:00", "from").unwrap(),
            Bound::Millis(0)
        );
        assert!(parse_bound("yesterday", "from").is_err());
    }

    #[test]
    fn days_in_zones() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 1, 15).unwrap();
        let start = day_start(day, paris);
        assert_eq!(rfc3339(start), "2026-01-14T23:00:00.000Z");
        assert_eq!(day_end(day, paris) - start, 24 * 3600 * 1000);
        // Santiago skipped midnight on 2022-09-11 (00:00 -> 01:00).
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let gap = NaiveDate::from_ymd_opt(2022, 9, 11).unwrap();
        assert_eq!(
            rfc3339(day_start(gap, santiago)),
            "2022-09-11T04:00:00.000Z"
        );
    }
}
