//! The quantities people write in `cslake.toml` and on the command line, parsed in one place:
//! sizes (`512M`, `4G`), calendar spans in whole days (`730d`, `104w`, `2y`: retention and
//! freshness, where a year is 365 days) and durations (`35d`, `6h`, `1h 30m`: look-backs and
//! retry budgets, parsed by `humantime`). Each returns a message without context; the caller
//! names the key it came from.

/// The longest span a setting may name: anything longer is a typo, not a retention.
const MAX_DAYS: i64 = 100 * 366;

/// Parses `512M`, `4G`, `2GiB`, `1000000` (bytes).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected e.g. 512M or 4G"))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TB" | "TIB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use K, M, G or T)")),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes >= usize::MAX as f64 {
        return Err(format!("'{s}': too large"));
    }
    Ok(bytes as usize)
}

/// Parses a span of calendar days: `730d` (or `730`), `104w`, `2y` (a year is 365 days).
pub fn parse_days(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected e.g. 730d, 104w or 2y"))?;
    let per = match unit.trim() {
        "" | "d" => 1,
        "w" => 7,
        "y" => 365,
        other => return Err(format!("'{s}': unknown unit '{other}' (d, w or y)")),
    };
    n.checked_mul(per)
        .filter(|d| *d <= MAX_DAYS)
        .ok_or_else(|| format!("'{s}': more than 100 years"))
}

/// Parses a duration: `35d`, `6h`, `30m`, `90s`, `1h 30m` (humantime's units), or plain seconds.
pub fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let t = s.trim();
    let std = if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        t.parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|e| format!("'{s}': {e}"))?
    } else {
        humantime::parse_duration(t).map_err(|e| format!("'{s}': {e} (e.g. 35d, 6h, 30m)"))?
    };
    chrono::Duration::from_std(std)
        .ok()
        .filter(|d| d.num_days() <= MAX_DAYS)
        .ok_or_else(|| format!("'{s}': more than 100 years"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1000000").unwrap(), 1_000_000);
        assert!(
            parse_bytes("lots")
                .unwrap_err()
                .contains("expected e.g. 512M or 4G")
        );
        assert!(parse_bytes("4X").unwrap_err().contains("unknown unit 'X'"));
        assert!(parse_bytes("1e400T").is_err());
    }

    #[test]
    fn calendar_days() {
        assert_eq!(parse_days("730d").unwrap(), 730);
        assert_eq!(parse_days("104w").unwrap(), 728);
        assert_eq!(parse_days("2y").unwrap(), 730);
        assert_eq!(parse_days(" 30 ").unwrap(), 30);
        assert!(parse_days("2 months").unwrap_err().contains("unknown unit"));
        // huge numbers are refused, not overflowed
        assert!(parse_days("99999999999999999y").is_err());
        assert!(parse_days("9223372036854775807w").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("35d").unwrap(), chrono::Duration::days(35));
        assert_eq!(parse_duration("6h").unwrap(), chrono::Duration::hours(6));
        assert_eq!(parse_duration("3m").unwrap(), chrono::Duration::minutes(3));
        assert_eq!(parse_duration("1h 30m").unwrap(), chrono::Duration::minutes(90));
        assert_eq!(parse_duration("45").unwrap(), chrono::Duration::seconds(45));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999d").is_err());
    }
}
