//! Which off-site backups to keep: the newest of each of the last `daily` days, `weekly` ISO weeks and
//! `monthly` months that have one (grandfather-father-son). A backup kept by any rule stays; the newest
//! always does.

use std::collections::BTreeSet;

/// How many days, weeks and months keep a backup each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    pub(crate) daily: usize,
    pub(crate) weekly: usize,
    pub(crate) monthly: usize,
}

/// A backup's UTC date: year, month, day.
pub(crate) type Date = (i64, u32, u32);

/// The period a date falls in, comparable with others of its kind.
type Period = fn(Date) -> (i64, u32);

/// The indexes of `dates` (sorted oldest first) to keep.
pub(crate) fn keep(dates: &[Date], retention: Retention) -> BTreeSet<usize> {
    let mut kept = BTreeSet::new();
    let rules: [(usize, Period); 3] = [
        (retention.daily, |date| (days(date), 0)),
        (retention.weekly, |date| ((days(date) + 3).div_euclid(7), 0)),
        (retention.monthly, |(year, month, _)| (year, month)),
    ];
    for (count, period) in rules {
        let mut seen = Vec::new();
        // Newest first: the first backup met in a period is that period's newest.
        for (index, date) in dates.iter().enumerate().rev() {
            let key = period(*date);
            if seen.len() == count {
                break;
            }
            if !seen.contains(&key) {
                seen.push(key);
                kept.insert(index);
            }
        }
    }
    if !dates.is_empty() {
        kept.insert(dates.len() - 1);
    }
    kept
}

/// Days since 1970-01-01 (a Thursday), for the proleptic Gregorian calendar.
pub(crate) fn days((year, month, day): Date) -> i64 {
    let (year, month) = if month <= 2 { (year - 1, month + 12) } else { (year, month) };
    let era = year.div_euclid(400);
    let of_era = year - era * 400;
    let of_year = (153 * (i64::from(month) - 3) + 2) / 5 + i64::from(day) - 1;
    let of_era_days = of_era * 365 + of_era / 4 - of_era / 100 + of_year;
    era * 146_097 + of_era_days - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_count_from_the_epoch() {
        assert_eq!(days((1970, 1, 1)), 0);
        assert_eq!(days((2000, 3, 1)), 11_017);
        assert_eq!(days((2026, 12, 1)), 20_788);
    }

    #[test]
    fn the_newest_of_each_day_week_and_month_are_kept() {
        // Oldest first: two backups on 30 Nov (the later one counts), then one a day; 2026-11-30 is a Monday.
        let dates: Vec<Date> = vec![
            (2026, 9, 15),
            (2026, 10, 20),
            (2026, 10, 31),
            (2026, 11, 22),
            (2026, 11, 30),
            (2026, 11, 30),
            (2026, 12, 1),
            (2026, 12, 2),
        ];
        let kept = keep(&dates, Retention { daily: 2, weekly: 2, monthly: 3 });
        // Days: 2 Dec, 1 Dec. Weeks: this week (2 Dec), the week of 22 Nov. Months: Dec, Nov (30 Nov,
        // the later one), Oct (31 Oct).
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), [2, 3, 5, 6, 7]);
    }

    #[test]
    fn the_newest_is_kept_whatever_the_rules() {
        assert_eq!(keep(&[(2026, 1, 1)], Retention { daily: 0, weekly: 0, monthly: 0 }).len(), 1);
        assert!(keep(&[], Retention { daily: 1, weekly: 1, monthly: 1 }).is_empty());
    }
}
