//! Schema evolution rules for incremental writes: which new column types an existing Delta
//! column can take in place (same or narrower, cast on write), and which need a full refresh.

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
}
