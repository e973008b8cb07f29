//! `Date` values as ISO 8601 text: written as `toISOString` writes them,
//! read in the date-time forms JavaScript's `Date` parses for every
//! implementation.

/// The largest time value a `Date` holds (±8.64e15 ms, 100 million days).
const MAX_TIME: f64 = 8.64e15;

/// `date.toJSON()`: the ISO string, or `None` for an invalid date (which
/// `JSON.stringify` writes as `null`).
pub(super) fn to_json(ms: f64) -> Option<String> {
    if !ms.is_finite() || ms.abs() > MAX_TIME {
        return None;
    }
    Some(crate::display::date_to_iso(ms))
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let part = self.s.get(self.i..self.i + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
    }

    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

/// Milliseconds since the epoch for an ISO 8601 date-time in the format
/// `toISOString` writes and `Date` parses everywhere:
/// `YYYY[-MM[-DD]]` (UTC) or that followed by `THH:mm[:ss[.s…]]` and `Z`
/// or `±HH:mm`, with `±YYYYYY` for extended years. Returns `None` for
/// anything else, an impossible date or one outside `Date`'s range. A
/// date-time without an offset is refused: JavaScript reads it in the
/// local time zone of whoever runs it.
pub(super) fn parse_iso(text: &str) -> Option<f64> {
    let mut c = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    let year = if c.eat(b'+') {
        c.digits(6)?
    } else if c.eat(b'-') {
        let y = c.digits(6)?;
        if y == 0 {
            // `-000000` is not a year in the format.
            return None;
        }
        -y
    } else {
        c.digits(4)?
    };
    let (mut month, mut day) = (1, 1);
    if c.eat(b'-') {
        month = c.digits(2)?;
        if c.eat(b'-') {
            day = c.digits(2)?;
        }
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms_of_day = 0;
    let mut offset_min = 0;
    if c.eat(b'T') {
        let hour = c.digits(2)?;
        if !c.eat(b':') {
            return None;
        }
        let minute = c.digits(2)?;
        let (mut second, mut milli) = (0, 0);
        if c.eat(b':') {
            second = c.digits(2)?;
            if c.eat(b'.') {
                let start = c.i;
                while c.s.get(c.i).is_some_and(u8::is_ascii_digit) {
                    c.i += 1;
                }
                let frac = &c.s[start..c.i];
                if frac.is_empty() {
                    return None;
                }
                // Milliseconds: the first three digits, padded; more
                // digits are truncated, as V8 does.
                milli = (0..3).fold(0, |acc, k| {
                    acc * 10 + frac.get(k).map_or(0, |d| i64::from(d - b'0'))
                });
            }
        }
        let end_of_day = hour == 24 && minute == 0 && second == 0 && milli == 0;
        if (hour > 23 && !end_of_day) || minute > 59 || second > 59 {
            return None;
        }
        ms_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + milli;
        if !c.eat(b'Z') {
            let sign = if c.eat(b'+') {
                1
            } else if c.eat(b'-') {
                -1
            } else {
                return None;
            };
            let h = c.digits(2)?;
            if !c.eat(b':') {
                return None;
            }
            let m = c.digits(2)?;
            if h > 23 || m > 59 {
                return None;
            }
            offset_min = sign * (h * 60 + m);
        }
    }
    if !c.done() {
        return None;
    }
    let ms = days_from_civil(year, month, day) * 86_400_000 + ms_of_day - offset_min * 60_000;
    // Bounded by the year's six digits, so exact in a double.
    #[allow(clippy::cast_precision_loss)]
    let ms = ms as f64;
    (ms.abs() <= MAX_TIME).then_some(ms)
}
