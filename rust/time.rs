//! Time as API Gateway writes it: `$context.requestTime` and the events' `requestContext.time`.

fn push_u64(out: &mut String, n: u64) {
    use std::fmt::Write;
    let _ = write!(out, "{n}");
}

fn push_2(out: &mut String, n: u32) {
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// CLF time in UTC, `dd/MMM/yyyy:HH:mm:ss +0000` (API Gateway's `requestTime`), appended to `out`.
pub fn push_clf_time(out: &mut String, epoch_ms: u64) {
    let secs = epoch_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let tod = (secs % 86_400) as u32;
    push_2(out, day);
    out.push('/');
    out.push_str(MONTHS[(month - 1) as usize]);
    out.push('/');
    push_u64(out, year.max(0) as u64);
    out.push(':');
    push_2(out, tod / 3600);
    out.push(':');
    push_2(out, tod / 60 % 60);
    out.push(':');
    push_2(out, tod % 60);
    out.push_str(" +0000");
}

/// A certificate's time as OpenSSL prints it and API Gateway hands it on
/// (`requestContext.identity.clientCert.validity`): `May 28 12:30:02 2019 GMT`, the day padded with
/// a space (`Aug  5 09:36:04 2021 GMT`). `epoch_s`: seconds since the Unix epoch.
pub fn push_openssl_time(out: &mut String, epoch_s: i64) {
    let (year, month, day) = civil_from_days(epoch_s.div_euclid(86_400));
    let tod = epoch_s.rem_euclid(86_400) as u32;
    out.push_str(MONTHS[(month - 1) as usize]);
    out.push(' ');
    out.push(if day < 10 { ' ' } else { char::from(b'0' + (day / 10) as u8) });
    out.push(char::from(b'0' + (day % 10) as u8));
    out.push(' ');
    push_2(out, tod / 3600);
    out.push(':');
    push_2(out, tod / 60 % 60);
    out.push(':');
    push_2(out, tod % 60);
    out.push(' ');
    use std::fmt::Write;
    let _ = write!(out, "{year}");
    out.push_str(" GMT");
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian (H. Hinnant).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}


/// (year, month 1-12, day 1-31) to days since 1970-01-01, proleptic Gregorian (H. Hinnant): the
/// inverse of `civil_from_days`.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Environment variable naming a file that holds milliseconds (a signed integer) added to the
/// core's wall clock: tests move time (quota periods, day boundaries) without waiting. Unset in
/// production, where the clock is the system's.
pub const CLOCK_OFFSET_FILE_ENV: &str = "PORTICO_CLOCK_OFFSET_FILE";
/// How often the offset file is read again while set.
const CLOCK_OFFSET_REREAD_NS: u64 = 20_000_000;

static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
static CLOCK_OFFSET_NEXT_READ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn clock_offset_file() -> Option<&'static std::path::Path> {
    static FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        std::env::var_os(CLOCK_OFFSET_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(Into::into)
    })
    .as_deref()
}

/// The offset of the test clock (0 unless `PORTICO_CLOCK_OFFSET_FILE` is set); the file is read
/// at most every 20 ms, an unreadable one keeps the last offset.
#[inline]
fn clock_offset_ms() -> i64 {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(path) = clock_offset_file() else {
        return 0;
    };
    let now = crate::throttle::monotonic_ns();
    let next = CLOCK_OFFSET_NEXT_READ.load(Relaxed);
    if now >= next
        && CLOCK_OFFSET_NEXT_READ
            .compare_exchange(next, now + CLOCK_OFFSET_REREAD_NS, Relaxed, Relaxed)
            .is_ok()
    {
        if let Some(offset) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        {
            CLOCK_OFFSET_MS.store(offset, Relaxed);
        }
    }
    CLOCK_OFFSET_MS.load(Relaxed)
}

/// The core's wall clock: milliseconds since the Unix epoch (UTC), as requests are stamped
/// (`$context.requestTimeEpoch`) and usage plans' quota periods are counted.
#[inline]
pub fn wall_clock_ms() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let offset = clock_offset_ms();
    if offset >= 0 {
        real.saturating_add(offset as u64)
    } else {
        real.saturating_sub(offset.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_time_of_aws_documented_sample() {
        let mut out = String::new();
        push_clf_time(&mut out, 1_584_039_838_390);
        assert_eq!(out, "12/Mar/2020:19:03:58 +0000");
        let mut out = String::new();
        push_clf_time(&mut out, 0);
        assert_eq!(out, "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn certificate_times_as_aws_shows_them() {
        // The samples of "Working with AWS Lambda proxy integrations for HTTP APIs".
        let mut out = String::new();
        push_openssl_time(&mut out, 1_559_046_602);
        assert_eq!(out, "May 28 12:30:02 2019 GMT");
        let mut out = String::new();
        push_openssl_time(&mut out, 1_628_156_164);
        assert_eq!(out, "Aug  5 09:36:04 2021 GMT");
        let mut out = String::new();
        push_openssl_time(&mut out, -1);
        assert_eq!(out, "Dec 31 23:59:59 1969 GMT");
    }

    #[test]
    fn civil_days_round_trip() {
        for days in (-800_000i64..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
