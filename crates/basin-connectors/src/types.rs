//! Source column types to Arrow, without loss, and the builders that fill Arrow arrays from
//! source values. The mapping, in one place:
//!
//! | SQLite declared type (affinity rules)       | Arrow                        |
//! |---------------------------------------------|------------------------------|
//! | contains `INT` (INTEGER, BIGINT, TINYINT…)  | Int64 (SQLite's integer)     |
//! | BOOLEAN, BOOL                               | Boolean                      |
//! | DECIMAL(p,s), NUMERIC(p,s)                  | Decimal128(p, s), exact      |
//! | DECIMAL, NUMERIC (no precision)             | Decimal128(38, 10)           |
//! | REAL, FLOAT, DOUBLE                         | Float64                      |
//! | DATE                                        | Date32                       |
//! | DATETIME, TIMESTAMP                         | Timestamp(µs), no time zone  |
//! | CHAR, CLOB, TEXT, VARCHAR… (and no type)    | Utf8                         |
//! | BLOB                                        | Binary                       |
//!
//! Zero dates (`0000-00-00`, `0000-00-00 00:00:00`) become NULL and are counted. A value that
//! cannot be read as its column's type fails the table, naming the column and the row key.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};

/// The Arrow type of a SQLite column, from its declared type.
pub fn sqlite_type(declared: &str) -> DataType {
    let t = declared.trim().to_ascii_uppercase();
    let base = t.split('(').next().unwrap_or("").trim();
    if base.starts_with("BOOL") {
        DataType::Boolean
    } else if t.contains("INT") {
        DataType::Int64
    } else if base == "DECIMAL" || base == "NUMERIC" {
        match precision_scale(&t) {
            Some((p, s)) => DataType::Decimal128(p, s),
            None => DataType::Decimal128(38, 10),
        }
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        DataType::Float64
    } else if base == "DATE" {
        DataType::Date32
    } else if base == "DATETIME" || base.starts_with("TIMESTAMP") {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else if t.contains("BLOB") {
        DataType::Binary
    } else {
        DataType::Utf8
    }
}

fn precision_scale(t: &str) -> Option<(u8, i8)> {
    let inner = t.split_once('(')?.1.split_once(')')?.0;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u8>());
    let p = parts.next()?.ok()?.clamp(1, 38);
    let s = parts.next().map(|s| s.ok()).unwrap_or(Some(0))?;
    Some((p, s.min(p) as i8))
}

/// A source value on its way into Arrow.
pub enum Value<'a> {
    Null,
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// Fills one Arrow column.
pub enum ColumnBuilder {
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    pub fn new(data_type: &DataType) -> Self {
        match data_type {
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            DataType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            DataType::Binary => ColumnBuilder::Binary(BinaryBuilder::new()),
            DataType::Decimal128(p, s) => ColumnBuilder::Decimal(
                Decimal128Builder::new().with_precision_and_scale(*p, *s).expect("valid precision"),
                *p,
                *s,
            ),
            DataType::Date32 => ColumnBuilder::Date(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new())
            }
            _ => ColumnBuilder::Utf8(StringBuilder::new()),
        }
    }

    /// Append one value. `Ok(true)` when a zero date was turned into NULL; `Err` says why the
    /// value does not fit the column.
    pub fn append(&mut self, value: Value<'_>) -> Result<bool, String> {
        match (self, value) {
            (ColumnBuilder::Int64(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Float64(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Boolean(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Utf8(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Binary(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Decimal(b, ..), Value::Null) => b.append_null(),
            (ColumnBuilder::Date(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), Value::Null) => b.append_null(),

            (ColumnBuilder::Int64(b), Value::Int(i)) => b.append_value(i),
            (ColumnBuilder::Int64(b), Value::Text(t)) => {
                b.append_value(t.trim().parse().map_err(|_| format!("`{t}` is not an integer"))?)
            }
            (ColumnBuilder::Int64(_), Value::Float(f)) => return Err(format!("{f} is not an integer")),
            (ColumnBuilder::Float64(b), Value::Float(f)) => b.append_value(f),
            (ColumnBuilder::Float64(b), Value::Int(i)) => b.append_value(i as f64),
            (ColumnBuilder::Float64(b), Value::Text(t)) => {
                b.append_value(t.trim().parse().map_err(|_| format!("`{t}` is not a number"))?)
            }
            (ColumnBuilder::Boolean(b), Value::Int(i)) => b.append_value(i != 0),
            (ColumnBuilder::Boolean(b), Value::Text(t)) => {
                b.append_value(match t.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "t" | "yes" => true,
                    "0" | "false" | "f" | "no" => false,
                    _ => return Err(format!("`{t}` is not a boolean")),
                })
            }
            (ColumnBuilder::Utf8(b), Value::Text(t)) => b.append_value(t),
            (ColumnBuilder::Utf8(b), Value::Int(i)) => b.append_value(i.to_string()),
            (ColumnBuilder::Utf8(b), Value::Float(f)) => b.append_value(f.to_string()),
            (ColumnBuilder::Utf8(b), Value::Bytes(x)) => {
                b.append_value(std::str::from_utf8(x).map_err(|_| "bytes that are not UTF-8 text".to_string())?)
            }
            (ColumnBuilder::Binary(b), Value::Bytes(x)) => b.append_value(x),
            (ColumnBuilder::Binary(b), Value::Text(t)) => b.append_value(t.as_bytes()),
            (ColumnBuilder::Decimal(b, p, s), Value::Int(i)) => b.append_value(parse_decimal(&i.to_string(), *p, *s)?),
            (ColumnBuilder::Decimal(b, p, s), Value::Text(t)) => b.append_value(parse_decimal(t, *p, *s)?),
            // SQLite keeps some decimals as REAL; its shortest round-trip text is the value.
            (ColumnBuilder::Decimal(b, p, s), Value::Float(f)) => {
                b.append_value(parse_decimal(&format!("{f}"), *p, *s)?)
            }
            (ColumnBuilder::Date(b), Value::Text(t)) => match parse_date(t)? {
                Some(d) => b.append_value((d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32),
                None => {
                    b.append_null();
                    return Ok(true);
                }
            },
            (ColumnBuilder::Timestamp(b), Value::Text(t)) => match parse_datetime(t)? {
                Some(d) => b.append_value(d.and_utc().timestamp_micros()),
                None => {
                    b.append_null();
                    return Ok(true);
                }
            },
            (ColumnBuilder::Timestamp(b), Value::Int(secs)) => b.append_value(secs * 1_000_000),
            (_, Value::Bytes(_)) => return Err("binary data in a non-binary column".into()),
            (_, Value::Int(i)) => return Err(format!("{i} does not fit the column's type")),
            (_, Value::Float(f)) => return Err(format!("{f} does not fit the column's type")),
        }
        Ok(false)
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => {
                Arc::new(b.finish().with_precision_and_scale(*p, *s).expect("valid precision"))
            }
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// An exact decimal from its text, scaled to `s` digits; refuses to drop digits.
pub fn parse_decimal(text: &str, p: u8, s: i8) -> Result<i128, String> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = frac.trim_end_matches('0');
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(format!("`{text}` is not a decimal number"));
    }
    let scale = s.max(0) as usize;
    if frac.len() > scale {
        return Err(format!("`{text}` has more than {scale} decimal places"));
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > p as usize {
        return Err(format!("`{text}` does not fit DECIMAL({p},{s})"));
    }
    let mut v: i128 = 0;
    for c in int.chars().chain(frac.chars()).chain(std::iter::repeat_n('0', scale - frac.len())) {
        v = v * 10 + (c as u8 - b'0') as i128;
    }
    Ok(if neg { -v } else { v })
}

/// A date, or `None` for a MySQL-style zero date.
pub fn parse_date(text: &str) -> Result<Option<NaiveDate>, String> {
    let t = text.trim();
    if t.starts_with("0000-00-00") {
        return Ok(None);
    }
    NaiveDate::parse_from_str(&t[..t.len().min(10)], "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("`{text}` is not a date"))
}

/// A date-time, or `None` for a zero date.
pub fn parse_datetime(text: &str) -> Result<Option<NaiveDateTime>, String> {
    let t = text.trim();
    if t.starts_with("0000-00-00") {
        return Ok(None);
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(Some(d));
        }
        if format == "%Y-%m-%d"
            && let Ok(d) = NaiveDate::parse_from_str(t, format)
        {
            return Ok(Some(d.and_hms_opt(0, 0, 0).expect("midnight")));
        }
    }
    Err(format!("`{text}` is not a date and time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_declared_types() {
        assert_eq!(sqlite_type("INTEGER"), DataType::Int64);
        assert_eq!(sqlite_type("tinyint(1)"), DataType::Int64);
        assert_eq!(sqlite_type("DECIMAL(18,4)"), DataType::Decimal128(18, 4));
        assert_eq!(sqlite_type("numeric"), DataType::Decimal128(38, 10));
        assert_eq!(sqlite_type("varchar(255)"), DataType::Utf8);
        assert_eq!(sqlite_type(""), DataType::Utf8);
        assert_eq!(sqlite_type("DATETIME"), DataType::Timestamp(TimeUnit::Microsecond, None));
        assert_eq!(sqlite_type("BOOLEAN"), DataType::Boolean);
        assert_eq!(sqlite_type("BLOB"), DataType::Binary);
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.34", 18, 4), Ok(123_400));
        assert_eq!(parse_decimal("-0.5", 18, 4), Ok(-5_000));
        assert_eq!(parse_decimal("7", 5, 2), Ok(700));
        assert!(parse_decimal("1.23456", 18, 4).is_err(), "digits may not be dropped");
        assert!(parse_decimal("1234", 5, 2).is_err(), "too large");
        assert!(parse_decimal("abc", 5, 2).is_err());
    }

    #[test]
    fn zero_dates_become_null() {
        assert_eq!(parse_date("0000-00-00"), Ok(None));
        assert_eq!(parse_datetime("0000-00-00 00:00:00"), Ok(None));
        assert_eq!(parse_datetime("2024-01-02 03:04:05.25").unwrap().unwrap().to_string(), "2024-01-02 03:04:05.250");
        assert!(parse_date("yesterday").is_err());
    }
}
