//! Cron schedules: 5-field strings in UTC and Deno's object form.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::CronError;

/// One field of Deno's object form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// `n`.
    Exact(u32),
    /// `a,b,c`.
    List(Vec<u32>),
    /// `start-end/every` with the parts given.
    Range {
        /// Lower bound.
        start: Option<u32>,
        /// Upper bound (needs `start`).
        end: Option<u32>,
        /// Step.
        every: Option<u32>,
    },
}

impl Field {
    fn render(&self) -> Result<String, CronError> {
        Ok(match self {
            Field::Exact(n) => n.to_string(),
            Field::List(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
            Field::Range {
                start: Some(s),
                end: Some(e),
                every: Some(v),
            } => format!("{s}-{e}/{v}"),
            Field::Range {
                start: Some(s),
                end: Some(e),
                every: None,
            } => format!("{s}-{e}"),
            Field::Range {
                start: Some(s),
                end: None,
                every: Some(v),
            } => format!("{s}/{v}"),
            Field::Range {
                start: Some(s),
                end: None,
                every: None,
            } => format!("{s}/1"),
            Field::Range {
                start: None,
                end: None,
                every: Some(v),
            } => format!("*/{v}"),
            Field::Range {
                start: None,
                end: None,
                every: None,
            } => "*".to_owned(),
            Field::Range { start, end, every } => {
                let show =
                    |v: &Option<u32>| v.map_or_else(|| "undefined".to_owned(), |v| v.to_string());
                return Err(CronError::InvalidSchedule(format!(
                    "Invalid cron schedule: start={}, end={}, every={}",
                    show(start),
                    show(end),
                    show(every)
                )));
            }
        })
    }
}

/// Deno's object schedule: `{ minute, hour, dayOfMonth, month, dayOfWeek }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleObject {
    /// Minute field.
    pub minute: Option<Field>,
    /// Hour field.
    pub hour: Option<Field>,
    /// Day-of-month field.
    pub day_of_month: Option<Field>,
    /// Month field.
    pub month: Option<Field>,
    /// Day-of-week field (POSIX numbering: 0 or 7 = Sunday).
    pub day_of_week: Option<Field>,
}

impl ScheduleObject {
    /// The 5-field string, exactly as Deno converts the object form:
    /// unspecified fields are `*`, except that fields below the highest one
    /// given are filled with their first value (`{hour: 4}` → `0 4 * * *`,
    /// `{month: 4}` → `0 0 1 4 *`).
    ///
    /// # Errors
    /// `InvalidSchedule` for an `end` without a `start`.
    pub fn to_cron_string(&self) -> Result<String, CronError> {
        let render = |f: &Option<Field>| f.as_ref().map(Field::render).transpose();
        let minute = render(&self.minute)?;
        let hour = render(&self.hour)?;
        let dom = render(&self.day_of_month)?;
        let month = render(&self.month)?;
        let dow = render(&self.day_of_week)?;
        // The lowest level given: 0 minute, 1 hour, 2 day, 3 month.
        let lowest = [
            minute.is_some(),
            hour.is_some(),
            dom.is_some() || dow.is_some(),
            month.is_some(),
        ]
        .iter()
        .position(|given| *given)
        .unwrap_or(0);
        let fill = |v: Option<String>, level: usize, first: &str| {
            v.unwrap_or_else(|| if lowest > level { first } else { "*" }.to_owned())
        };
        let minute = fill(minute, 0, "0");
        let hour = fill(hour, 1, "0");
        let dom = if dow.is_some() {
            dom.unwrap_or_else(|| "*".to_owned())
        } else {
            fill(dom, 2, "1")
        };
        let month = month.unwrap_or_else(|| "*".to_owned());
        let dow = dow.unwrap_or_else(|| "*".to_owned());
        Ok(format!("{minute} {hour} {dom} {month} {dow}"))
    }
}

/// Rewrites `a/s` (from `a` every `s`, which Deno's object form produces
/// and Deno accepts) as the equivalent range `a-MAX/s`.
fn expand_start_steps(text: &str) -> String {
    const MAX: [u32; 5] = [59, 23, 31, 12, 7];
    text.split_whitespace()
        .zip(MAX)
        .map(|(field, max)| {
            field
                .split(',')
                .map(|item| match item.split_once('/') {
                    Some((start, step))
                        if !start.is_empty() && start.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        format!("{start}-{max}/{step}")
                    }
                    _ => item.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Schedule {
    /// Parses a 5-field cron string (minute, hour, day of month, month,
    /// day of week), always in UTC. Day of week follows POSIX cron: 0 or 7
    /// is Sunday, 1 Monday (Deno's parser numbers 1–7 from Sunday). When
    /// both day fields are restricted, a day matching either runs.
    ///
    /// # Errors
    /// `InvalidSchedule` (`Invalid cron schedule`) for anything else.
    pub fn parse(text: &str) -> Result<Schedule, CronError> {
        let invalid = || CronError::InvalidSchedule("Invalid cron schedule".to_owned());
        if text.split_whitespace().count() != 5 || text.trim_start().starts_with('@') {
            return Err(invalid());
        }
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let cron = parser
            .parse(&expand_start_steps(text))
            .map_err(|_| invalid())?;
        Ok(Schedule {
            text: text.to_owned(),
            cron,
        })
    }

    /// Parses Deno's object form.
    ///
    /// # Errors
    /// As [`ScheduleObject::to_cron_string`] and [`Schedule::parse`].
    pub fn from_object(object: &ScheduleObject) -> Result<Schedule, CronError> {
        Schedule::parse(&object.to_cron_string()?)
    }

    /// The first matching minute strictly after `after_ms` (Unix ms).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after =
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(after_ms).ok()?)?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }
}

#[cfg(test)]
mod tests;
