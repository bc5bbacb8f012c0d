//! SQL functions Basin's sessions use in place of DataFusion's own.
//!
//! `date_trunc` to a day or coarser over timestamps without a time zone is the grouping key
//! of most reports (`GROUP BY date_trunc('month', invoice_date)`); DataFusion works out each
//! value's calendar date on its own, which was a quarter of such an aggregate's CPU. Rows come
//! in runs of the same month (tables are written in key or time order), so Basin's version
//! works out a bucket's bounds once and gives every value inside them the same start. Anything
//! else (time zones, finer units, times, scalars) is DataFusion's `date_trunc` itself.

use std::sync::Arc;

use chrono::{Datelike, Months, NaiveDate};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, FieldRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::Result;
use datafusion::functions::datetime::date_trunc::DateTruncFunc;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Put Basin's versions of functions into `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(DateTrunc::default()));
}

/// DataFusion's `date_trunc`, truncating runs of timestamps without a time zone to a day,
/// week, month, quarter or year by their bucket's bounds.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct DateTrunc(DateTruncFunc);

impl ScalarUDFImpl for DateTrunc {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn aliases(&self) -> &[String] {
        self.0.aliases()
    }

    fn signature(&self) -> &Signature {
        self.0.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.0.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.0.return_field_from_args(args)
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.0.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.0.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [ColumnarValue::Scalar(granularity), ColumnarValue::Array(array)] = args.args.as_slice()
            && let Some(Some(granularity)) = granularity.try_as_str()
            && let Some(bucket) = Bucket::parse(granularity)
            && let Some(truncated) = truncate(array, bucket)
        {
            return Ok(ColumnarValue::Array(truncated));
        }
        self.0.invoke_with_args(args)
    }
}

#[derive(Clone, Copy, Debug)]
enum Bucket {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i64 = 719_163;

impl Bucket {
    fn parse(granularity: &str) -> Option<Bucket> {
        Some(match granularity.to_ascii_lowercase().as_str() {
            "day" => Bucket::Day,
            "week" => Bucket::Week,
            "month" => Bucket::Month,
            "quarter" => Bucket::Quarter,
            "year" => Bucket::Year,
            _ => return None,
        })
    }

    /// The first day of the bucket holding `day` (days since 1970-01-01) and the first day of
    /// the next one.
    fn bounds(self, day: i64) -> Option<(i64, i64)> {
        let (first, months) = match self {
            Bucket::Day => return Some((day, day + 1)),
            // Weeks start on Monday; 1970-01-01 was a Thursday.
            Bucket::Week => {
                let monday = day - (day + 3).rem_euclid(7);
                return Some((monday, monday + 7));
            }
            Bucket::Month | Bucket::Quarter | Bucket::Year => {
                let date = NaiveDate::from_num_days_from_ce_opt(i32::try_from(day + UNIX_EPOCH_FROM_CE).ok()?)?;
                match self {
                    Bucket::Month => (date.with_day(1)?, 1),
                    Bucket::Quarter => (NaiveDate::from_ymd_opt(date.year(), date.month0() / 3 * 3 + 1, 1)?, 3),
                    _ => (NaiveDate::from_ymd_opt(date.year(), 1, 1)?, 12),
                }
            }
        };
        let next = first.checked_add_months(Months::new(months))?;
        let days = |d: NaiveDate| i64::from(d.num_days_from_ce()) - UNIX_EPOCH_FROM_CE;
        Some((days(first), days(next)))
    }
}

/// `array` truncated to `bucket`, or `None` to leave it to DataFusion (a time zone, a type
/// other than a timestamp, a value out of the calendar's range).
fn truncate(array: &ArrayRef, bucket: Bucket) -> Option<ArrayRef> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, None) => truncate_as::<TimestampSecondType>(array, bucket, 86_400),
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            truncate_as::<TimestampMillisecondType>(array, bucket, 86_400_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            truncate_as::<TimestampMicrosecondType>(array, bucket, 86_400_000_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, None) => {
            truncate_as::<TimestampNanosecondType>(array, bucket, 86_400_000_000_000)
        }
        _ => None,
    }
}

fn truncate_as<T: ArrowTimestampType>(array: &ArrayRef, bucket: Bucket, per_day: i64) -> Option<ArrayRef> {
    let array = array.as_primitive::<T>();
    // The bucket of the previous value, [start, end) in the array's unit: empty at first.
    let (mut start, mut end) = (0i64, 0i64);
    let mut out = Vec::with_capacity(array.len());
    for &value in array.values().iter() {
        if value < start || value >= end {
            let (first, next) = bucket.bounds(value.div_euclid(per_day))?;
            start = first.checked_mul(per_day)?;
            end = next.checked_mul(per_day).unwrap_or(i64::MAX);
        }
        out.push(start);
    }
    Some(Arc::new(PrimitiveArray::<T>::new(out.into(), array.nulls().cloned())))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::common::config::ConfigOptions;

    use super::*;

    fn invoke(f: &dyn ScalarUDFImpl, granularity: &str, array: &ArrayRef) -> Result<ArrayRef> {
        let args = vec![
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(granularity.into()))),
            ColumnarValue::Array(array.clone()),
        ];
        let arg_fields = vec![
            Arc::new(Field::new("g", DataType::Utf8, false)),
            Arc::new(Field::new("t", array.data_type().clone(), true)),
        ];
        let out = f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: array.len(),
            return_field: Arc::new(Field::new("date_trunc", array.data_type().clone(), true)),
            config_options: Arc::new(ConfigOptions::default()),
        })?;
        out.into_array(array.len())
    }

    /// Timestamps from before 1900 to after 2100, in runs and alone, around month, quarter,
    /// year and week boundaries, with nulls.
    fn timestamps() -> Vec<Option<i64>> {
        const DAY: i64 = 86_400_000_000_000;
        let mut values = Vec::new();
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..20_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let value = match i % 5 {
                // Anywhere from 1832 to 2107.
                0 => x.rem_euclid(100_000 * DAY) - 50_000 * DAY,
                // Runs of consecutive seconds, crossing midnight and month ends.
                1 | 2 => 1_706_745_000_000_000_000 + i * 600_000_000_000,
                // The last and first nanosecond of days around 1970 and 2000.
                3 => (i / 5 % 800 - 400) * DAY - 1 + (i / 5 % 2),
                _ => 946_684_800_000_000_000 + (i / 5 % 400) * DAY,
            };
            values.push((i % 97 != 0).then_some(value));
        }
        values
    }

    #[test]
    fn date_trunc_matches_datafusions_for_every_coarse_granularity_and_unit() {
        let nanos: ArrayRef = Arc::new(TimestampNanosecondArray::from(timestamps()));
        let ours = DateTrunc::default();
        let theirs = DateTruncFunc::new();
        for unit in [TimeUnit::Second, TimeUnit::Millisecond, TimeUnit::Microsecond, TimeUnit::Nanosecond] {
            let array = datafusion::arrow::compute::cast(&nanos, &DataType::Timestamp(unit, None)).unwrap();
            // The comparison below is of Basin's own path, not of DataFusion with itself.
            assert!(truncate(&array, Bucket::Month).is_some(), "{unit:?}");
            for granularity in ["day", "week", "month", "quarter", "year", "MONTH", "hour"] {
                let expected = invoke(&theirs, granularity, &array).unwrap();
                let got = invoke(&ours, granularity, &array).unwrap();
                assert_eq!(got.as_ref(), expected.as_ref(), "{granularity} over {unit:?}");
            }
        }
        // Time zones are DataFusion's.
        let zoned = datafusion::arrow::compute::cast(
            &nanos,
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/Prague".into())),
        )
        .unwrap();
        assert_eq!(
            invoke(&ours, "month", &zoned).unwrap().as_ref(),
            invoke(&theirs, "month", &zoned).unwrap().as_ref()
        );
        // A value out of the calendar's range is DataFusion's error, not a wrong bucket.
        let extreme: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![i64::MIN, 0]));
        let (ours, theirs) = (invoke(&ours, "year", &extreme), invoke(&theirs, "year", &extreme));
        assert_eq!(ours.map_err(|e| e.to_string()), theirs.map_err(|e| e.to_string()));
    }
}
