//! Schema evolution rules for incremental writes: which new column types an existing Delta
//! column can take in place (same or narrower, cast on write), and which need a full refresh;
//! and the types bronze stores, so that a source widening a column changes nothing in Delta.

use datafusion::arrow::datatypes::DataType;

/// Whether values of type `new` can be written into an existing column of type `existing`
/// without loss and without changing the table's type.
pub(crate) fn fits(new: &DataType, existing: &DataType) -> bool {
    use DataType::*;
    if new == existing || matches!(new, Null) {
        return true;
    }
    match (new, existing) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => true,
        (Int8 | Int16 | Int32 | Int64, Int8 | Int16 | Int32 | Int64) => int_width(new) <= int_width(existing),
        (UInt8 | UInt16 | UInt32, Int16 | Int32 | Int64) => int_width(new) < int_width(existing),
        (Float16 | Float32, Float32 | Float64) | (Float64, Float64) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 <= s2 && (*p1 as i16 - *s1 as i16) <= (*p2 as i16 - *s2 as i16),
        (Timestamp(_, tz1), Timestamp(_, tz2)) => tz1.is_some() == tz2.is_some(),
        (Date32 | Date64, Date32 | Date64) => true,
        (Dictionary(_, v), e) => fits(v, e),
        (List(a) | LargeList(a), List(b) | LargeList(b)) => fits(a.data_type(), b.data_type()),
        (Struct(a), Struct(b)) => {
            a.len() == b.len()
                && a.iter().zip(b.iter()).all(|(x, y)| x.name() == y.name() && fits(x.data_type(), y.data_type()))
        }
        _ => false,
    }
}

/// The type bronze stores a new column of source type `t` as: the widest of its family that
/// costs nothing more to store or read, so that the widenings sources make in place
/// (`INT` → `BIGINT`, `DECIMAL(10,2)` → `DECIMAL(16,2)`) leave the Delta table as it is
/// (delta-rs reads no type-widening tables, and bronze files are never rewritten). Integers
/// become Int64; decimals keep their scale, with precision 18 (Parquet's INT64) or 38; floats
/// stay as they are, since a FLOAT shown as `1.1` would read back as `1.100000023841858`.
pub(crate) fn widest(t: &DataType) -> DataType {
    use DataType::*;
    match t {
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 => Int64,
        Decimal128(p, s) if *p <= 18 => Decimal128(18, *s),
        Decimal128(_, s) => Decimal128(38, *s),
        List(f) => List(std::sync::Arc::new(f.as_ref().clone().with_data_type(widest(f.data_type())))),
        other => other.clone(),
    }
}

/// How a source column's type moved between two reads: wider, narrower, or neither (the same,
/// or a change `fits` does not order, which the write itself refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeChange {
    Widened,
    Narrowed,
    Other,
}

pub(crate) fn type_change(before: &DataType, after: &DataType) -> Option<TypeChange> {
    if before == after {
        return None;
    }
    Some(match (fits(before, after), fits(after, before)) {
        (true, false) => TypeChange::Widened,
        (false, true) => TypeChange::Narrowed,
        _ => TypeChange::Other,
    })
}

fn int_width(t: &DataType) -> u8 {
    match t {
        DataType::Int8 | DataType::UInt8 => 8,
        DataType::Int16 | DataType::UInt16 => 16,
        DataType::Int32 | DataType::UInt32 => 32,
        _ => 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrower_fits_wider_does_not() {
        assert!(fits(&DataType::Int32, &DataType::Int64));
        assert!(!fits(&DataType::Int64, &DataType::Int32));
        assert!(fits(&DataType::Utf8View, &DataType::Utf8));
        assert!(!fits(&DataType::Utf8, &DataType::Int64));
        assert!(fits(&DataType::Decimal128(10, 2), &DataType::Decimal128(18, 4)));
        assert!(!fits(&DataType::Decimal128(18, 4), &DataType::Decimal128(10, 2)));
        assert!(fits(&DataType::Null, &DataType::Date32));
    }

    #[test]
    fn bronze_stores_the_widest_type_of_a_family() {
        assert_eq!(widest(&DataType::Int8), DataType::Int64);
        assert_eq!(widest(&DataType::Int32), DataType::Int64);
        assert_eq!(widest(&DataType::Decimal128(10, 2)), DataType::Decimal128(18, 2));
        assert_eq!(widest(&DataType::Decimal128(20, 0)), DataType::Decimal128(38, 0));
        assert_eq!(widest(&DataType::Float32), DataType::Float32, "a float is not made to print differently");
        assert_eq!(widest(&DataType::Utf8), DataType::Utf8);
        let list = |t| DataType::List(std::sync::Arc::new(datafusion::arrow::datatypes::Field::new("item", t, true)));
        assert_eq!(widest(&list(DataType::Int16)), list(DataType::Int64));
        // Every widest type holds its source type's values.
        for t in [DataType::Int16, DataType::Decimal128(9, 3), DataType::Decimal128(30, 5)] {
            assert!(fits(&t, &widest(&t)), "{t}");
        }
    }

    #[test]
    fn type_changes_are_ordered_by_what_fits() {
        assert_eq!(type_change(&DataType::Int32, &DataType::Int64), Some(TypeChange::Widened));
        assert_eq!(type_change(&DataType::Int64, &DataType::Int32), Some(TypeChange::Narrowed));
        let (d10, d16) = (DataType::Decimal128(10, 2), DataType::Decimal128(16, 2));
        assert_eq!(type_change(&d10, &d16), Some(TypeChange::Widened));
        assert_eq!(type_change(&DataType::Int64, &DataType::Utf8), Some(TypeChange::Other));
        assert_eq!(type_change(&DataType::Utf8, &DataType::Utf8), None);
    }
}
