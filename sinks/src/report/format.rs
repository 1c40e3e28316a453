//! How money and shares are written in reports: `$1.23M`, `$46K`, `91.2%`.

/// A number as money: 1234567 → "$1.23M".
pub fn money(v: f64, currency: &str) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    let body = if a >= 1e9 {
        format!("{:.2}B", a / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", a / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}K", a / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}K", a / 1e3)
    } else {
        format!("{a:.0}")
    };
    format!("{sign}{currency}{body}")
}

/// A ratio as a percentage: 0.912 → "91.2%".
pub fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_percent() {
        assert_eq!(money(1_234_567.0, "$"), "$1.23M");
        assert_eq!(money(45_600.0, "$"), "$46K");
        assert_eq!(money(4_560.0, "€"), "€4.6K");
        assert_eq!(money(-999.0, "$"), "-$999");
        assert_eq!(percent(0.9123), "91.2%");
        assert_eq!(percent(f64::NAN), "–");
    }
}
