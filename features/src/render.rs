use chrono::NaiveDate;

/// Substitutes `{{as_of}}` with a SQL date literal and `{{name}}` with each parameter's value.
/// Values are dates and integers the caller controls, never user strings.
pub fn render(sql: &str, as_of: NaiveDate, params: &[(&str, i64)]) -> String {
    let mut out = sql.replace("{{as_of}}", &format!("DATE '{}'", as_of.format("%Y-%m-%d")));
    for (name, value) in params {
        out = out.replace(&format!("{{{{{name}}}}}"), &value.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dates_and_parameters() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(
            render("x <= {{as_of}} + INTERVAL '{{lead}}' DAY", d, &[("lead", 7)]),
            "x <= DATE '2026-03-01' + INTERVAL '7' DAY"
        );
    }
}
