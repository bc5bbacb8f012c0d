//! Daily partitions: a model with `partitions = "daily"` is built a day, or a range of days,
//! at a time. Its SQL reads the range from `$partition_start` (the first day) and
//! `$partition_end` (the day after the last), both `DATE`s; a run replaces exactly the rows of
//! its days, so a day rebuilt with no rows is emptied.

use std::fmt;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

pub const START: &str = "$partition_start";
pub const END: &str = "$partition_end";

/// Days `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayRange {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl DayRange {
    pub fn new(first: NaiveDate, last: NaiveDate) -> Result<DayRange, String> {
        if last < first {
            return Err(format!("the range ends ({last}) before it starts ({first})"));
        }
        Ok(DayRange { first, last })
    }

    /// `2024-03-01` or `2024-03-01..2024-03-31` (both ends included).
    pub fn parse(text: &str) -> Result<DayRange, String> {
        let day = |t: &str| {
            NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
                .map_err(|_| format!("`{}` is not a day (YYYY-MM-DD)", t.trim()))
        };
        match text.split_once("..") {
            Some((a, b)) => DayRange::new(day(a)?, day(b)?),
            None => {
                let d = day(text)?;
                Ok(DayRange { first: d, last: d })
            }
        }
    }

    /// The last complete day before `now` (UTC): what a run without a partition builds.
    pub fn yesterday(now: DateTime<Utc>) -> DayRange {
        let d = now.date_naive().pred_opt().unwrap_or(NaiveDate::MIN);
        DayRange { first: d, last: d }
    }

    pub fn days(&self) -> u64 {
        (self.last - self.first).num_days() as u64 + 1
    }

    /// The day after the last: the exclusive end `$partition_end` stands for.
    pub fn end(&self) -> NaiveDate {
        self.last.checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX)
    }

    /// The range cut into consecutive ranges of at most `per_run` days.
    pub fn chunks(&self, per_run: u64) -> Vec<DayRange> {
        let per_run = per_run.max(1);
        let mut out = Vec::new();
        let mut first = self.first;
        while first <= self.last {
            let last = first.checked_add_days(Days::new(per_run - 1)).unwrap_or(NaiveDate::MAX).min(self.last);
            out.push(DayRange { first, last });
            match last.succ_opt() {
                Some(next) => first = next,
                None => break,
            }
        }
        out
    }
}

impl fmt::Display for DayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}..{}", self.first, self.last) }
    }
}

/// The partition placeholders `sql` uses (`$partition_start`, `$partition_end`); other
/// placeholders are not Basin's and are left to the planner to refuse.
pub fn placeholders(sql: &str) -> Vec<String> {
    tokens(sql)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| match t {
            Token::Placeholder(p) if p == START || p == END => Some(p),
            _ => None,
        })
        .collect()
}

/// `sql` with the partition placeholders replaced by the range's `DATE` literals. Strings and
/// comments that mention them are left alone.
pub fn bind(sql: &str, range: &DayRange) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len() + 32);
    for t in tokens(sql)? {
        match t {
            Token::Placeholder(p) if p == START => out.push_str(&format!("DATE '{}'", range.first)),
            Token::Placeholder(p) if p == END => out.push_str(&format!("DATE '{}'", range.end())),
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

fn tokens(sql: &str) -> Result<Vec<Token>, String> {
    Tokenizer::new(&GenericDialect {}, sql).tokenize().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_print_and_cut() {
        let r = DayRange::parse("2024-01-30..2024-02-03").unwrap();
        assert_eq!((r.days(), r.to_string()), (5, "2024-01-30..2024-02-03".to_string()));
        assert_eq!(DayRange::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        let chunks: Vec<String> = r.chunks(2).iter().map(ToString::to_string).collect();
        assert_eq!(chunks, ["2024-01-30..2024-01-31", "2024-02-01..2024-02-02", "2024-02-03"]);
        assert_eq!(r.chunks(31), [r]);
        assert!(DayRange::parse("2024-02-03..2024-01-30").unwrap_err().contains("ends (2024-01-30) before"));
        assert!(DayRange::parse("2024-02-30").unwrap_err().contains("not a day"));
        let now = DateTime::parse_from_rfc3339("2024-03-01T02:00:00Z").unwrap().to_utc();
        assert_eq!(DayRange::yesterday(now).to_string(), "2024-02-29");
    }

    #[test]
    fn binding_replaces_placeholders_but_not_strings_or_comments() {
        let sql = "SELECT '$partition_start' AS s -- $partition_end\nFROM t WHERE d >= $partition_start AND d < $partition_end";
        let r = DayRange::parse("2024-01-01..2024-01-31").unwrap();
        assert_eq!(
            bind(sql, &r).unwrap(),
            "SELECT '$partition_start' AS s -- $partition_end\nFROM t WHERE d >= DATE '2024-01-01' AND d < DATE '2024-02-01'"
        );
        assert_eq!(placeholders(sql), [START, END]);
        assert!(placeholders("SELECT $1, $other").is_empty());
    }
}
