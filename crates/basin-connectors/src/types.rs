//! Source column types to Arrow, without loss, and the builders that fill Arrow arrays from
//! source values. Every Arrow type used is one Delta Lake stores (Delta has no unsigned
//! integers, no TIME and no UUID, hence the widening and the text below). The mapping, in one
//! place:
//!
//! | Source type                                         | Arrow (Delta)                    |
//! |-----------------------------------------------------|----------------------------------|
//! | MySQL TINYINT / SMALLINT / MEDIUMINT, INT / BIGINT   | Int8 / Int16 / Int32 / Int32 / Int64 |
//! | MySQL TINYINT / SMALLINT / MEDIUMINT / INT UNSIGNED | Int16 / Int32 / Int32 / Int64 (one wider) |
//! | MySQL BIGINT UNSIGNED                               | Decimal128(20, 0): never overflows |
//! | MySQL TINYINT(1), BOOLEAN; BIT(1)                   | Boolean (`tinyint1_as_boolean = false` keeps Int8; a value not 0/1 fails) |
//! | MySQL BIT(n), n < 64 / n = 64                       | Int64 / Decimal128(20, 0)        |
//! | MySQL YEAR                                          | Int16                            |
//! | MySQL DECIMAL(p,s), p ≤ 38 / p > 38                 | Decimal128(p, s) exact / Utf8 (exact text) |
//! | MySQL FLOAT / DOUBLE                                | Float32 / Float64                |
//! | MySQL DATE                                          | Date32; zero dates (`0000-00-00`, month or day 00) → NULL, counted |
//! | MySQL DATETIME(fsp)                                 | Timestamp(µs), no zone (wall clock as stored) |
//! | MySQL TIMESTAMP(fsp)                                | Timestamp(µs, "UTC"): sessions run at `+00:00` |
//! | MySQL TIME                                          | Utf8 (`-838:59:59` … `838:59:59`, it is a duration) |
//! | MySQL CHAR / VARCHAR / *TEXT (utf8mb4), ENUM, SET, JSON | Utf8 (SET as its comma list, JSON as text) |
//! | MySQL BINARY / VARBINARY / *BLOB, spatial types     | Binary                           |
//! | PostgreSQL boolean                                  | Boolean                          |
//! | PostgreSQL smallint / integer / bigint / oid        | Int16 / Int32 / Int64 / Int64    |
//! | PostgreSQL real / double precision                  | Float32 / Float64                |
//! | PostgreSQL numeric(p,s), p ≤ 38                     | Decimal128(p, s) exact; NaN/±Infinity fail the table |
//! | PostgreSQL numeric without precision, p > 38        | Utf8 (the exact text)            |
//! | PostgreSQL text / varchar / char / name, json, jsonb | Utf8                            |
//! | PostgreSQL bytea                                    | Binary                           |
//! | PostgreSQL date / timestamp / timestamptz           | Date32 / Timestamp(µs) / Timestamp(µs, "UTC"); ±infinity fails, or with the source's `infinity = "null"` → NULL (counted) / `"clamp"` → 9999-12-31 / 0001-01-01 |
//! | PostgreSQL uuid                                     | Utf8 (canonical 8-4-4-4-12)      |
//! | PostgreSQL one-dimensional arrays of the above      | List of the element's type       |
//! | PostgreSQL time, timetz, interval, inet, money, bit, enums, ranges, domains… | Utf8 (`::text`) |
//! | SQLite: declared type contains `INT`                | Int64 (SQLite's integer)         |
//! | SQLite BOOLEAN, BOOL                                | Boolean                          |
//! | SQLite DECIMAL(p,s), NUMERIC(p,s) / without (p,s)   | Decimal128(p, s) / Decimal128(38, 10), exact |
//! | SQLite REAL, FLOAT, DOUBLE                          | Float64                          |
//! | SQLite DATE / DATETIME, TIMESTAMP                   | Date32 / Timestamp(µs), no zone  |
//! | SQLite CHAR, CLOB, TEXT, VARCHAR… (and no type)     | Utf8                             |
//! | SQLite BLOB                                         | Binary                           |
//!
//! A value that cannot be read as its column's type fails the table, naming the source, table,
//! column and the row's primary key.
//!
//! These are the types read; bronze stores a new column at the widest type of its family
//! (integers as Int64, decimals at precision 18 or 38), so that a source widening a column in
//! place does not change the Delta table (`basin_engine::schema::widest`).

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};

/// The Arrow type of a column type declared for a files table.
pub fn declared_type(t: basin_core::source::ColumnType) -> DataType {
    use basin_core::source::ColumnType as C;
    match t {
        C::Boolean => DataType::Boolean,
        C::Int16 => DataType::Int16,
        C::Int32 => DataType::Int32,
        C::Int64 => DataType::Int64,
        C::Float32 => DataType::Float32,
        C::Float64 => DataType::Float64,
        C::Decimal(p, s) => DataType::Decimal128(p, s),
        C::Date => DataType::Date32,
        C::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        C::TimestampUtc => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        C::Text => DataType::Utf8,
        C::Binary => DataType::Binary,
    }
}

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
    /// Text made while decoding (a UUID's canonical form).
    String(String),
    Bytes(&'a [u8]),
    /// An exact decimal: unscaled digits and scale.
    Decimal(i128, i8),
    /// Days since 1970-01-01.
    Days(i32),
    /// Microseconds since 1970-01-01 00:00:00 (UTC for zoned columns).
    Micros(i64),
}

/// Fills one Arrow column.
pub enum ColumnBuilder {
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
    List(Box<ListColumn>),
}

/// A list column: offsets and validity here, element values in a child builder.
pub struct ListColumn {
    pub field: FieldRef,
    pub values: ColumnBuilder,
    offsets: Vec<i32>,
    len: i32,
    nulls: NullBufferBuilder,
}

impl ListColumn {
    /// Close one list value after its elements were appended to `values`.
    pub fn close(&mut self, elements: usize) {
        self.len += elements as i32;
        self.offsets.push(self.len);
        self.nulls.append_non_null();
    }
}

macro_rules! append_int {
    ($b:expr, $value:expr, $t:ty) => {
        match $value {
            Value::Int(i) => $b.append_value(<$t>::try_from(i).map_err(|_| format!("{i} is out of range"))?),
            Value::Text(t) => $b.append_value(t.trim().parse::<$t>().map_err(|_| not_an_integer(t))?),
            other => return Err(mismatch(&other)),
        }
    };
}

fn not_an_integer(t: &str) -> String {
    match t.trim().parse::<i128>() {
        Ok(_) => format!("{t} is out of range"),
        Err(_) => format!("`{t}` is not an integer"),
    }
}

fn mismatch(value: &Value<'_>) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Int(i) => format!("{i} does not fit the column's type"),
        Value::Float(f) => format!("{f} does not fit the column's type"),
        Value::Text(t) => format!("`{t}` does not fit the column's type"),
        Value::String(t) => format!("`{t}` does not fit the column's type"),
        Value::Bytes(_) => "binary data in a non-binary column".into(),
        Value::Decimal(..) => "a decimal in a non-decimal column".into(),
        Value::Days(_) | Value::Micros(_) => "a date in a non-date column".into(),
    }
}

impl ColumnBuilder {
    pub fn new(data_type: &DataType) -> Self {
        match data_type {
            DataType::Int8 => ColumnBuilder::Int8(Int8Builder::new()),
            DataType::Int16 => ColumnBuilder::Int16(Int16Builder::new()),
            DataType::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            DataType::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            DataType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            DataType::Binary => ColumnBuilder::Binary(BinaryBuilder::new()),
            DataType::Decimal128(p, s) => ColumnBuilder::Decimal(
                Decimal128Builder::new().with_precision_and_scale(*p, *s).expect("valid precision"),
                *p,
                *s,
            ),
            DataType::Date32 => ColumnBuilder::Date(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new(), tz.clone())
            }
            DataType::List(field) => ColumnBuilder::List(Box::new(ListColumn {
                field: field.clone(),
                values: ColumnBuilder::new(field.data_type()),
                offsets: vec![0],
                len: 0,
                nulls: NullBufferBuilder::new(0),
            })),
            _ => ColumnBuilder::Utf8(StringBuilder::new()),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Int8(b) => b.append_null(),
            ColumnBuilder::Int16(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Utf8(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
            ColumnBuilder::Decimal(b, ..) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b, _) => b.append_null(),
            ColumnBuilder::List(l) => {
                l.offsets.push(l.len);
                l.nulls.append_null();
            }
        }
    }

    /// Append one value. `Ok(true)` when a zero date was turned into NULL; `Err` says why the
    /// value does not fit the column.
    pub fn append(&mut self, value: Value<'_>) -> Result<bool, String> {
        if let Value::Null = value {
            self.append_null();
            return Ok(false);
        }
        match self {
            ColumnBuilder::Int8(b) => append_int!(b, value, i8),
            ColumnBuilder::Int16(b) => append_int!(b, value, i16),
            ColumnBuilder::Int32(b) => append_int!(b, value, i32),
            ColumnBuilder::Int64(b) => append_int!(b, value, i64),
            ColumnBuilder::Float32(b) => match value {
                // Text of a FLOAT is its shortest round-trip form, so parsing as f32 is exact.
                Value::Float(f) => b.append_value(f as f32),
                Value::Int(i) => b.append_value(i as f32),
                Value::Text(t) => b.append_value(t.trim().parse().map_err(|_| format!("`{t}` is not a number"))?),
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::Float64(b) => match value {
                Value::Float(f) => b.append_value(f),
                Value::Int(i) => b.append_value(i as f64),
                Value::Text(t) => b.append_value(t.trim().parse().map_err(|_| format!("`{t}` is not a number"))?),
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::Boolean(b) => match value {
                Value::Int(0) => b.append_value(false),
                Value::Int(1) => b.append_value(true),
                Value::Text(t) => b.append_value(match t.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "t" | "yes" => true,
                    "0" | "false" | "f" | "no" => false,
                    _ => return Err(format!("`{t}` is not a boolean (0 or 1)")),
                }),
                Value::Int(i) => return Err(format!("{i} is not a boolean (0 or 1)")),
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::Utf8(b) => match value {
                Value::Text(t) => b.append_value(t),
                Value::String(t) => b.append_value(t),
                Value::Int(i) => b.append_value(i.to_string()),
                Value::Float(f) => b.append_value(f.to_string()),
                Value::Bytes(x) => {
                    b.append_value(std::str::from_utf8(x).map_err(|_| "bytes that are not UTF-8 text".to_string())?)
                }
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::Binary(b) => match value {
                Value::Bytes(x) => b.append_value(x),
                Value::Text(t) => b.append_value(t.as_bytes()),
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::Decimal(b, p, s) => match value {
                Value::Int(i) => b.append_value(parse_decimal(&i.to_string(), *p, *s)?),
                Value::Text(t) => b.append_value(parse_decimal(t, *p, *s)?),
                Value::Decimal(v, scale) => b.append_value(rescale(v, scale, *p, *s)?),
                // SQLite keeps some decimals as REAL; its shortest round-trip text is the value.
                Value::Float(f) => b.append_value(parse_decimal(&format!("{f}"), *p, *s)?),
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::Date(b) => match value {
                Value::Days(d) => b.append_value(d),
                Value::Text(t) => match parse_date(t)? {
                    Some(d) => {
                        b.append_value((d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
                    }
                    None => {
                        b.append_null();
                        return Ok(true);
                    }
                },
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::Timestamp(b, _) => match value {
                Value::Micros(m) => b.append_value(m),
                Value::Text(t) => match parse_datetime(t)? {
                    Some(d) => b.append_value(d.and_utc().timestamp_micros()),
                    None => {
                        b.append_null();
                        return Ok(true);
                    }
                },
                Value::Int(secs) => b.append_value(secs * 1_000_000),
                other => return Err(mismatch(&other)),
            },
            ColumnBuilder::List(_) => return Err(mismatch(&value)),
        }
        Ok(false)
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int8(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => {
                Arc::new(b.finish().with_precision_and_scale(*p, *s).expect("valid precision"))
            }
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            ColumnBuilder::List(l) => {
                let offsets = OffsetBuffer::new(std::mem::replace(&mut l.offsets, vec![0]).into());
                l.len = 0;
                Arc::new(ListArray::new(l.field.clone(), offsets, l.values.finish(), l.nulls.finish()))
            }
        }
    }
}

/// An unscaled decimal at `scale` brought to scale `s`, refusing to drop digits or overflow `p`.
fn rescale(v: i128, scale: i8, p: u8, s: i8) -> Result<i128, String> {
    let shown = || format!("{v}e-{scale}");
    let v = if scale <= s {
        v.checked_mul(10i128.pow((s - scale) as u32)).ok_or_else(|| format!("{} is too large", shown()))?
    } else {
        let d = 10i128.pow((scale - s) as u32);
        if v % d != 0 {
            return Err(format!("{} has more than {s} decimal places", shown()));
        }
        v / d
    };
    if v.unsigned_abs() >= 10u128.pow(p as u32) {
        return Err(format!("{} does not fit DECIMAL({p},{s})", shown()));
    }
    Ok(v)
}

/// An exact decimal from its text, scaled to `s` digits; refuses to drop digits.
pub fn parse_decimal(text: &str, p: u8, s: i8) -> Result<i128, String> {
    // One pass over the bytes: this runs once per value of every DECIMAL column extracted.
    let t = text.trim().as_bytes();
    let (neg, digits) = match t {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, t),
    };
    let (int, frac) = match digits.iter().position(|&c| c == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &[][..]),
    };
    let frac = &frac[..frac.iter().rposition(|&c| c != b'0').map_or(0, |i| i + 1)];
    if int.is_empty() && frac.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return Err(format!("`{text}` is not a decimal number"));
    }
    let scale = s.max(0) as usize;
    if frac.len() > scale {
        return Err(format!("`{text}` has more than {scale} decimal places"));
    }
    let int = &int[int.iter().position(|&c| c != b'0').unwrap_or(int.len())..];
    if int.len() + scale > p as usize {
        return Err(format!("`{text}` does not fit DECIMAL({p},{s})"));
    }
    let v = int.iter().chain(frac).fold(0i128, |v, &c| v * 10 + (c - b'0') as i128)
        * 10i128.pow((scale - frac.len()) as u32);
    Ok(if neg { -v } else { v })
}

/// MySQL's zero dates: `0000-00-00`, and dates with a zero month or day (`2024-00-00`).
fn is_zero_date(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && (&b[5..7] == b"00" || &b[8..10] == b"00")
}

/// A date, or `None` for a MySQL-style zero date.
pub fn parse_date(text: &str) -> Result<Option<NaiveDate>, String> {
    let t = text.trim();
    if is_zero_date(t) {
        return Ok(None);
    }
    if let Some(d) = iso_date(t.as_bytes()) {
        return Ok(Some(d));
    }
    NaiveDate::parse_from_str(&t[..t.len().min(10)], "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("`{text}` is not a date"))
}

/// Digits as a number; `None` if any byte is not a digit.
#[inline]
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32))
}

/// `YYYY-MM-DD` at the start of `b`, the way servers print dates: read without chrono's
/// format machinery (a tenth of an ingest's time otherwise). Anything else is left to chrono.
#[inline]
fn iso_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(&b[..4])? as i32, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `YYYY-MM-DD[ |T]HH:MM:SS[.f{1,9}]` or a bare date; `None` for anything else (left to chrono).
#[inline]
fn iso_datetime(b: &[u8]) -> Option<NaiveDateTime> {
    let date = iso_date(b)?;
    if b.len() == 10 {
        return date.and_hms_opt(0, 0, 0);
    }
    if b.len() < 19 || !matches!(b[10], b' ' | b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => digits(frac)? * 10u32.pow(9 - frac.len() as u32),
        _ => return None,
    };
    date.and_hms_nano_opt(digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?, nanos)
}

/// A date-time, or `None` for a zero date.
pub fn parse_datetime(text: &str) -> Result<Option<NaiveDateTime>, String> {
    let t = text.trim();
    if is_zero_date(t) {
        return Ok(None);
    }
    if let Some(d) = iso_datetime(t.as_bytes()) {
        return Ok(Some(d));
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
    fn dates_and_times_read_fast_as_chrono_reads_them() {
        let chrono_dt = |t: &str| {
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        };
        for t in [
            "2024-02-29 23:59:59",
            "2024-02-29T23:59:59.5",
            "1999-12-31 00:00:00.000001",
            "2020-01-01 12:34:56.123456789",
            "0001-01-01 00:00:00",
        ] {
            assert_eq!(iso_datetime(t.as_bytes()), chrono_dt(t), "{t}");
            assert_eq!(parse_datetime(t).unwrap(), chrono_dt(t), "{t}");
        }
        // Not a valid date or time: the fast path declines and the error is the same as before.
        for t in ["2023-02-29 00:00:00", "2024-01-01 24:00:00", "2024-13-01", "2024-01-01 10:00:00.", "x"] {
            assert_eq!(iso_datetime(t.as_bytes()), None, "{t}");
            assert!(parse_datetime(t).is_err(), "{t}");
        }
        assert_eq!(
            parse_datetime("2024-03-01").unwrap(),
            NaiveDate::from_ymd_opt(2024, 3, 1).unwrap().and_hms_opt(0, 0, 0)
        );
        assert_eq!(
            parse_datetime("2024-03-01 10:15").unwrap(),
            NaiveDate::from_ymd_opt(2024, 3, 1).unwrap().and_hms_opt(10, 15, 0),
            "chrono's other formats still apply"
        );
        assert_eq!(parse_date("2024-02-29").unwrap(), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert!(parse_date("2023-02-29").is_err());
        assert_eq!(parse_date("0000-00-00").unwrap(), None, "a zero date");
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.34", 18, 4), Ok(123_400));
        assert_eq!(parse_decimal("-0.5", 18, 4), Ok(-5_000));
        assert_eq!(parse_decimal("7", 5, 2), Ok(700));
        assert!(parse_decimal("1.23456", 18, 4).is_err(), "digits may not be dropped");
        assert!(parse_decimal("1234", 5, 2).is_err(), "too large");
        assert!(parse_decimal("abc", 5, 2).is_err());
        assert_eq!(parse_decimal(" +0012.3400 ", 6, 4), Ok(123_400), "signs, zeros and spaces");
        assert_eq!(parse_decimal(".5", 3, 2), Ok(50));
        assert_eq!(parse_decimal("5.", 3, 2), Ok(500));
        assert_eq!(parse_decimal("0", 1, 0), Ok(0));
        assert!(parse_decimal(".", 5, 2).is_err());
        assert!(parse_decimal("1.2.3", 5, 2).is_err());
        assert!(parse_decimal("1e5", 9, 2).is_err());
        assert!(parse_decimal("-", 5, 2).is_err());
        // Past 18 digits the value is still exact.
        assert_eq!(parse_decimal("123456789012345678.9", 38, 10), Ok(1_234_567_890_123_456_789_000_000_000));
        assert_eq!(
            parse_decimal("-99999999999999999999999999999999999999", 38, 0),
            Ok(-99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal("999999999999999999", 18, 0), Ok(999_999_999_999_999_999));
    }

    #[test]
    fn zero_dates_become_null() {
        assert_eq!(parse_date("0000-00-00"), Ok(None));
        assert_eq!(parse_datetime("0000-00-00 00:00:00"), Ok(None));
        assert_eq!(parse_date("2024-03-00"), Ok(None));
        assert_eq!(parse_datetime("2024-01-02 03:04:05.25").unwrap().unwrap().to_string(), "2024-01-02 03:04:05.250");
        assert!(parse_date("yesterday").is_err());
    }
}
