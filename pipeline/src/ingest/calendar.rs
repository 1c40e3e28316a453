//! Calendar files (RFC 5545 iCalendar, `.ics`): meetings become `interactions` of kind
//! `meeting`. An event belongs to the account of its attendees: an attendee whose e-mail is a
//! known contact, or else whose e-mail domain is the domain of one account's contacts. Events
//! without a customer attendee (internal meetings) and cancelled events are skipped.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::ingest::records::{RawRecords, RawRow};

/// The fields read from each VEVENT, as a header.
pub const HEADER: &[&str] = &[
    "interaction_id",
    "kind",
    "occurred_at",
    "subject",
    "status",
    "organizer",
    "attendees",
];

/// Parses the VEVENTs of an iCalendar file into records (`attendees` joined by `;`). Recurring
/// events (RRULE) become one record per occurrence up to a year ahead, minus EXDATEs and the
/// occurrences a RECURRENCE-ID event moved; local times with a TZID are converted to UTC.
pub fn read_ics(bytes: &[u8], origin: String, today: NaiveDate) -> RawRecords {
    let text = String::from_utf8_lossy(bytes);
    // RFC 5545 3.1: a line starting with a space or tab continues the previous one
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match line.chars().next() {
            Some(' ' | '\t') if !lines.is_empty() => {
                if let Some(last) = lines.last_mut() {
                    last.push_str(&line[1..]);
                }
            }
            _ => lines.push(line.to_string()),
        }
    }
    let mut events: Vec<Event> = Vec::new();
    let mut event: Option<Event> = None;
    for line in &lines {
        let Some((name_params, value)) = line.split_once(':') else {
            continue;
        };
        let mut parts = name_params.split(';');
        let name = parts.next().unwrap_or_default().to_ascii_uppercase();
        let params: Vec<String> = parts.map(str::to_string).collect();
        let value = value.trim();
        match (name.as_str(), event.as_mut()) {
            ("BEGIN", None) if value.eq_ignore_ascii_case("VEVENT") => {
                event = Some(Event::default());
            }
            ("END", Some(_)) if value.eq_ignore_ascii_case("VEVENT") => {
                events.extend(event.take());
            }
            ("UID", Some(e)) => e.uid = value.to_string(),
            ("RECURRENCE-ID", Some(e)) => e.recurrence = Some(parse_start(value, &params)),
            ("SUMMARY", Some(e)) => e.summary = unescape(value),
            ("STATUS", Some(e)) => e.status = value.to_ascii_lowercase(),
            ("DTSTART", Some(e)) => e.start = Some(parse_start(value, &params)),
            ("RRULE", Some(e)) => e.rrule = Some(value.to_string()),
            ("EXDATE", Some(e)) => {
                for v in value.split(',') {
                    if let Ok(t) = parse_start(v, &params) {
                        e.exdates.push(t.utc);
                    }
                }
            }
            ("ORGANIZER", Some(e)) => e.organizer = mailto(value),
            ("ATTENDEE", Some(e)) => e.attendees.extend(mailto(value)),
            _ => {}
        }
    }
    let mut broken = Vec::new();
    if let Some(e) = event.take() {
        broken.push(format!(
            "event {} is not closed (no END:VEVENT): the file is cut short",
            if e.uid.is_empty() { "#?" } else { e.uid.as_str() }
        ));
        events.push(e);
    }
    if events.is_empty() && !text.to_ascii_uppercase().contains("BEGIN:VCALENDAR") {
        broken.push("not an iCalendar file (no BEGIN:VCALENDAR)".into());
    }
    // occurrences moved or changed by their own VEVENT (same UID, RECURRENCE-ID)
    let moved: std::collections::HashSet<(String, DateTime<Utc>)> = events
        .iter()
        .filter_map(|e| Some((e.uid.clone(), e.recurrence.clone()?.ok()?.utc)))
        .collect();
    // open-ended rules run a year past the run's date (its as-of date), not the wall clock's, so
    // re-running a past day expands the same occurrences
    let horizon = (today + chrono::Duration::days(366))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let mut rows = Vec::new();
    for e in &events {
        let which = if e.uid.is_empty() {
            format!("event #{}", rows.len() + 1)
        } else {
            format!("event {}", e.uid)
        };
        let start = match (&e.start, e.uid.is_empty()) {
            (_, true) => Err(format!("{which} has no UID")),
            (None, _) => Err(format!("{which} has no DTSTART")),
            (Some(Err(err)), _) => Err(format!("{which}: {err}")),
            (Some(Ok(s)), _) => Ok(s.clone()),
        };
        let start = match start {
            Ok(s) => s,
            Err(error) => {
                rows.push(e.row(rows.len() + 1, format!("ics:{}", e.uid), None, Some(error)));
                continue;
            }
        };
        match (&e.recurrence, &e.rrule) {
            (Some(rid), _) => {
                let rid = rid.as_ref().map(|r| r.utc).unwrap_or(start.utc);
                rows.push(e.row(rows.len() + 1, occurrence_id(&e.uid, rid), Some(start.utc), None));
            }
            (None, Some(rule)) => match expand(&start, rule, horizon) {
                Ok(occurrences) => {
                    for t in occurrences {
                        if e.exdates.contains(&t) || moved.contains(&(e.uid.clone(), t)) {
                            continue;
                        }
                        rows.push(e.row(rows.len() + 1, occurrence_id(&e.uid, t), Some(t), None));
                    }
                }
                Err(err) => {
                    let error = format!("{which}: RRULE '{rule}': {err}");
                    rows.push(e.row(rows.len() + 1, format!("ics:{}", e.uid), None, Some(error)));
                }
            },
            (None, None) => rows.push(e.row(rows.len() + 1, format!("ics:{}", e.uid), Some(start.utc), None)),
        }
    }
    for error in broken {
        rows.push(Event::default().row(rows.len() + 1, "ics:".into(), None, Some(error)));
    }
    RawRecords {
        origin,
        header: HEADER.iter().map(|h| h.to_string()).collect(),
        rows,
        meetings: true,
    }
}

fn occurrence_id(uid: &str, t: DateTime<Utc>) -> String {
    format!("ics:{uid}:{}", t.format("%Y%m%dT%H%M%SZ"))
}

#[derive(Default)]
struct Event {
    uid: String,
    recurrence: Option<Result<Start, String>>,
    summary: String,
    status: String,
    start: Option<Result<Start, String>>,
    rrule: Option<String>,
    exdates: Vec<DateTime<Utc>>,
    organizer: Option<String>,
    attendees: Vec<String>,
}

impl Event {
    fn row(&self, number: usize, id: String, start: Option<DateTime<Utc>>, error: Option<String>) -> RawRow {
        RawRow {
            number,
            values: vec![
                Some(id),
                Some("meeting".into()),
                start.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                Some(self.summary.clone()),
                Some(if self.status.is_empty() {
                    "confirmed".into()
                } else {
                    self.status.clone()
                }),
                self.organizer.clone(),
                Some(self.attendees.join(";")),
            ],
            error,
        }
    }
}

/// A DTSTART (or RECURRENCE-ID, EXDATE): the instant, and the wall-clock time and zone that
/// recurrences step in (so a weekly 9:00 meeting stays at 9:00 across daylight-saving changes).
#[derive(Debug, Clone)]
struct Start {
    utc: DateTime<Utc>,
    local: NaiveDateTime,
    zone: Option<Tz>,
}

impl Start {
    fn at(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.zone {
            Some(tz) => to_utc(tz, local),
            None => local.and_utc(),
        }
    }
}

fn to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        // a wall-clock time skipped by a daylight-saving jump: the same time an hour later
        LocalResult::None => match local.checked_add_signed(chrono::TimeDelta::hours(1)) {
            Some(later) => to_utc(tz, later),
            None => local.and_utc(),
        },
    }
}

/// A time zone from TZID: IANA names, and the Windows names Outlook and Exchange write.
fn zone(tzid: &str) -> Option<Tz> {
    let id = tzid.trim_matches('"').trim_start_matches('/');
    if let Ok(tz) = id.parse::<Tz>() {
        return Some(tz);
    }
    let iana = match id {
        "Eastern Standard Time" => "America/New_York",
        "Central Standard Time" => "America/Chicago",
        "Mountain Standard Time" => "America/Denver",
        "Pacific Standard Time" => "America/Los_Angeles",
        "GMT Standard Time" => "Europe/London",
        "W. Europe Standard Time" => "Europe/Berlin",
        "Romance Standard Time" => "Europe/Paris",
        "Central Europe Standard Time" => "Europe/Budapest",
        "Central European Standard Time" => "Europe/Warsaw",
        "E. Europe Standard Time" => "Europe/Chisinau",
        "India Standard Time" => "Asia/Kolkata",
        "China Standard Time" => "Asia/Shanghai",
        "Tokyo Standard Time" => "Asia/Tokyo",
        "AUS Eastern Standard Time" => "Australia/Sydney",
        "E. South America Standard Time" => "America/Sao_Paulo",
        "UTC" | "Coordinated Universal Time" => "UTC",
        _ => return None,
    };
    iana.parse().ok()
}

/// Parses `20260302T150000Z` (UTC), `20260302T150000` with `TZID=…` (local to that zone; without
/// a known zone, UTC) or a `VALUE=DATE` `20260302` (midnight UTC).
fn parse_start(v: &str, params: &[String]) -> Result<Start, String> {
    let v = v.trim();
    let date_only = params.iter().any(|p| p.eq_ignore_ascii_case("VALUE=DATE"))
        || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()));
    if date_only {
        let d = NaiveDate::parse_from_str(v, "%Y%m%d")
            .map_err(|_| format!("DTSTART '{v}' is not a date (YYYYMMDD)"))?;
        let local = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        return Ok(Start {
            utc: local.and_utc(),
            local,
            zone: None,
        });
    }
    let local = NaiveDateTime::parse_from_str(v.trim_end_matches('Z'), "%Y%m%dT%H%M%S")
        .map_err(|_| format!("DTSTART '{v}' is not a date-time (YYYYMMDDTHHMMSS[Z])"))?;
    let zone = if v.ends_with('Z') {
        None
    } else {
        params
            .iter()
            .find_map(|p| p.strip_prefix("TZID=").or_else(|| p.strip_prefix("tzid=")))
            .and_then(zone)
    };
    let start = Start {
        utc: local.and_utc(),
        local,
        zone,
    };
    Ok(Start {
        utc: start.at(local),
        ..start
    })
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("MO", Weekday::Mon),
    ("TU", Weekday::Tue),
    ("WE", Weekday::Wed),
    ("TH", Weekday::Thu),
    ("FR", Weekday::Fri),
    ("SA", Weekday::Sat),
    ("SU", Weekday::Sun),
];

/// The occurrences of an RRULE (RFC 5545 3.3.10): FREQ DAILY, WEEKLY, MONTHLY or YEARLY with
/// INTERVAL, COUNT, UNTIL, BYDAY (with ordinals for MONTHLY, e.g. `2TU`, `-1FR`) and BYMONTHDAY;
/// open-ended rules stop at `horizon`. Other BY-parts are refused rather than misread.
fn expand(start: &Start, rule: &str, horizon: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>, String> {
    let mut freq = None;
    let (mut interval, mut count, mut until) = (1i64, None::<usize>, None::<DateTime<Utc>>);
    let mut by_day: Vec<(Option<i64>, Weekday)> = Vec::new();
    let mut by_month_day: Vec<i64> = Vec::new();
    for part in rule.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not NAME=VALUE"))?;
        match k.to_ascii_uppercase().as_str() {
            "FREQ" => freq = Some(v.to_ascii_uppercase()),
            "INTERVAL" => {
                interval = v
                    .parse()
                    .ok()
                    .filter(|i| (1..=100_000).contains(i))
                    .ok_or_else(|| format!("INTERVAL '{v}' (a whole number from 1 to 100000)"))?;
            }
            "COUNT" => count = Some(v.parse().map_err(|_| format!("COUNT '{v}'"))?),
            "UNTIL" => until = Some(parse_start(v, &[]).map_err(|e| format!("UNTIL: {e}"))?.utc),
            "WKST" => {}
            "BYDAY" => {
                for d in v.split(',') {
                    let d = d.trim().to_ascii_uppercase();
                    // the weekday is the last two characters (whatever bytes they take)
                    let at = d.char_indices().rev().nth(1).map_or(0, |(i, _)| i);
                    let (n, wd) = d.split_at(at);
                    let day = WEEKDAYS
                        .iter()
                        .find(|(code, _)| *code == wd)
                        .map(|(_, w)| *w)
                        .ok_or_else(|| format!("BYDAY '{d}'"))?;
                    let n = if n.is_empty() {
                        None
                    } else {
                        Some(
                            n.trim_start_matches('+')
                                .parse()
                                .map_err(|_| format!("BYDAY '{d}'"))?,
                        )
                    };
                    by_day.push((n, day));
                }
            }
            "BYMONTHDAY" => {
                for d in v.split(',') {
                    by_month_day.push(d.trim().parse().map_err(|_| format!("BYMONTHDAY '{d}'"))?);
                }
            }
            other => return Err(format!("{other} is not supported")),
        }
    }
    let interval = interval.max(1);
    let first = start.local;
    let time = first.time();
    let mut out: Vec<DateTime<Utc>> = Vec::new();
    let limit = count.unwrap_or(usize::MAX).min(5_000);
    // candidates of the k-th period, in order; `None` past the calendar's end
    let period = |k: i64| -> Option<Vec<NaiveDate>> {
        let d0 = first.date();
        let step = k.checked_mul(interval)?;
        let plus_days = |d: NaiveDate, n: i64| d.checked_add_signed(chrono::TimeDelta::try_days(n)?);
        Some(match freq.as_deref() {
            Some("DAILY") => vec![plus_days(d0, step)?],
            Some("WEEKLY") => {
                let monday = plus_days(
                    d0,
                    step.checked_mul(7)? - i64::from(d0.weekday().num_days_from_monday()),
                )?;
                if by_day.is_empty() {
                    vec![plus_days(d0, step.checked_mul(7)?)?]
                } else {
                    let mut days: Vec<NaiveDate> = by_day
                        .iter()
                        .filter_map(|(_, w)| plus_days(monday, i64::from(w.num_days_from_monday())))
                        .collect();
                    days.sort();
                    days
                }
            }
            Some("MONTHLY") => {
                let m0 = (i64::from(d0.year()) * 12 + i64::from(d0.month0())).checked_add(step)?;
                let y = i32::try_from(m0.div_euclid(12)).ok()?;
                let m = (m0.rem_euclid(12) + 1) as u32;
                month_days(y, m, d0.day(), &by_day, &by_month_day)
            }
            Some("YEARLY") => {
                let y = i32::try_from(i64::from(d0.year()).checked_add(step)?).ok()?;
                NaiveDate::from_ymd_opt(y, d0.month(), d0.day())
                    .into_iter()
                    .collect()
            }
            _ => vec![],
        })
    };
    if !matches!(freq.as_deref(), Some("DAILY" | "WEEKLY" | "MONTHLY" | "YEARLY")) {
        return Err(format!("FREQ {} is not supported", freq.unwrap_or_default()));
    }
    'periods: for k in 0.. {
        let Some(days) = period(k) else { break };
        for day in days {
            let local = day.and_time(time);
            if local < first {
                continue;
            }
            let t = start.at(local);
            if until.is_some_and(|u| t > u) || t > horizon.max(start.utc) || out.len() >= limit {
                break 'periods;
            }
            out.push(t);
        }
        if k > 100_000 {
            break;
        }
    }
    if out.first() != Some(&start.utc) {
        // DTSTART is always the first occurrence, whether or not it matches the rule
        out.insert(0, start.utc);
        out.truncate(limit);
    }
    Ok(out)
}

/// The days of one month a MONTHLY rule selects.
fn month_days(
    y: i32,
    m: u32,
    day: u32,
    by_day: &[(Option<i64>, Weekday)],
    by_month_day: &[i64],
) -> Vec<NaiveDate> {
    let Some(first) = NaiveDate::from_ymd_opt(y, m, 1) else {
        return vec![];
    };
    let last = (28..=31)
        .rev()
        .find_map(|d| NaiveDate::from_ymd_opt(y, m, d))
        .unwrap_or(first);
    let n_days = i64::from(last.day());
    let mut days: Vec<NaiveDate> = Vec::new();
    for &md in by_month_day.iter().filter(|d| (-31..=31).contains(*d)) {
        let d = if md < 0 { n_days + md + 1 } else { md };
        if (1..=n_days).contains(&d) {
            days.extend(NaiveDate::from_ymd_opt(y, m, d as u32));
        }
    }
    for &(n, wd) in by_day {
        let all: Vec<NaiveDate> = first
            .iter_days()
            .take_while(|d| d.month() == m)
            .filter(|d| d.weekday() == wd)
            .collect();
        match n {
            None => days.extend(all),
            Some(n) if n > 0 => days.extend(all.get(n as usize - 1)),
            Some(n) => days.extend(
                all.len()
                    .checked_sub(n.unsigned_abs() as usize)
                    .and_then(|i| all.get(i)),
            ),
        }
    }
    if by_day.is_empty() && by_month_day.is_empty() {
        days.extend(NaiveDate::from_ymd_opt(y, m, day));
    }
    days.sort();
    days.dedup();
    days
}

fn unescape(v: &str) -> String {
    v.replace("\\n", " ")
        .replace("\\N", " ")
        .replace("\\,", ",")
        .replace("\\;", ";")
        .replace("\\\\", "\\")
}

fn mailto(v: &str) -> Option<String> {
    let v = v.trim();
    let email = v
        .strip_prefix("mailto:")
        .or_else(|| v.strip_prefix("MAILTO:"))
        .unwrap_or(v);
    email.contains('@').then(|| email.to_ascii_lowercase())
}

/// Finds accounts for calendar events by their attendees.
#[derive(Debug, Default)]
pub struct AttendeeIndex {
    /// e-mail → (account_id, contact_id)
    by_email: HashMap<String, (String, String)>,
    /// domain → the one account whose contacts use it (`None` when several do)
    by_domain: HashMap<String, Option<String>>,
}

impl AttendeeIndex {
    pub fn add(&mut self, email: &str, account_id: &str, contact_id: &str) {
        // a [pii]-protected address is case-sensitive text; a clear one is matched ignoring case
        let email = if crate::lake::pii::Protector::is_protected(email) {
            email.trim().to_string()
        } else {
            email.trim().to_ascii_lowercase()
        };
        if let Some((_, domain)) = email.split_once('@') {
            self.by_domain
                .entry(domain.to_string())
                .and_modify(|a| {
                    if a.as_deref() != Some(account_id) {
                        *a = None;
                    }
                })
                .or_insert_with(|| Some(account_id.to_string()));
        }
        self.by_email
            .insert(email, (account_id.to_string(), contact_id.to_string()));
    }

    /// The account (and contact, when one matched by e-mail) of the first customer attendee.
    pub fn account_of(&self, attendees: &str) -> Option<(String, Option<String>)> {
        let emails: Vec<&str> = attendees.split(';').filter(|e| !e.is_empty()).collect();
        emails
            .iter()
            .find_map(|e| self.by_email.get(*e).map(|(a, c)| (a.clone(), Some(c.clone()))))
            .or_else(|| {
                emails.iter().find_map(|e| {
                    let domain = e.split_once('@')?.1;
                    self.by_domain.get(domain)?.clone().map(|a| (a, None))
                })
            })
    }

    /// Adds `account_id` and `contact_id` fields from the attendees; drops the events without a
    /// customer attendee and the cancelled ones. Returns how many were dropped.
    pub fn assign(&self, records: &mut RawRecords) -> usize {
        let before = records.rows.len();
        records
            .header
            .extend(["account_id".to_string(), "contact_id".to_string()]);
        records.rows.retain_mut(|row| {
            if row.error.is_some() {
                row.values.extend([None, None]);
                return true;
            }
            let cancelled = row.values.get(4).and_then(|v| v.as_deref()) == Some("cancelled");
            let found = row
                .values
                .get(6)
                .and_then(|v| v.as_deref())
                .and_then(|a| self.account_of(a));
            match (cancelled, found) {
                (false, Some((account, contact))) => {
                    row.values.extend([Some(account), contact]);
                    true
                }
                _ => false,
            }
        });
        before - records.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: NaiveDate = NaiveDate::from_ymd_opt(2026, 6, 30).expect("a date");

    /// An open-ended rule runs a year past the run's date, whatever the wall clock says: a past
    /// day re-run expands the same occurrences.
    #[test]
    fn open_ended_rules_stop_a_year_after_the_runs_date() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:w@cal\r\nDTSTART:20260105T090000Z\r\n\
                   RRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let last = |today: NaiveDate| {
            let r = read_ics(ics.as_bytes(), "cal.ics".into(), today);
            assert!(r.rows.iter().all(|row| row.error.is_none()));
            (r.rows.len(), r.rows.last().unwrap().values[2].clone().unwrap())
        };
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(last(day("2026-01-05")), (53, "2027-01-04T09:00:00Z".to_string()));
        assert_eq!(last(day("2026-06-30")), (78, "2027-06-28T09:00:00Z".to_string()));
        assert_eq!(last(day("2026-06-30")), last(day("2026-06-30")));
    }

    #[test]
    fn hostile_rules_and_broken_files_become_rejected_rows() {
        let ics = |rule: &str| {
            format!(
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260302T090000Z\r\nRRULE:{rule}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            )
        };
        for (rule, why) in [
            ("FREQ=DAILY;INTERVAL=100000000", "INTERVAL '100000000'"),
            ("FREQ=WEEKLY;BYDAY=€", "BYDAY '€'"),
            ("FREQ=WEEKLY;BYDAY=9999999999999999999999MO", "BYDAY"),
        ] {
            let r = read_ics(ics(rule).as_bytes(), "x.ics".into(), TODAY);
            assert_eq!(r.rows.len(), 1, "{rule}");
            let e = r.rows[0].error.clone().unwrap_or_default();
            assert!(e.contains(why), "{rule}: {e}");
        }
        // huge years and month days do not overflow: they end the series
        let r = read_ics(
            ics("FREQ=YEARLY;INTERVAL=100000").as_bytes(),
            "x.ics".into(),
            TODAY,
        );
        assert!(r.rows.iter().all(|row| row.error.is_none()));
        let r = read_ics(
            ics("FREQ=MONTHLY;BYMONTHDAY=-9223372036854775808").as_bytes(),
            "x.ics".into(),
            TODAY,
        );
        assert!(!r.rows.is_empty());
        // a file that is not a calendar, and one cut short, say so
        let r = read_ics(b"hello", "x.ics".into(), TODAY);
        assert_eq!(
            r.rows[0].error.as_deref(),
            Some("not an iCalendar file (no BEGIN:VCALENDAR)")
        );
        let r = read_ics(
            b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:cut\r\nDTSTART:2026",
            "x.ics".into(),
            TODAY,
        );
        assert!(r.rows.iter().any(|row| {
            row.error
                .as_deref()
                .is_some_and(|e| e.contains("event cut is not closed"))
        }));
    }

    #[test]
    fn parses_folded_lines_dates_and_attendees() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e1@cal\r\nDTSTART:20260302T150000Z\r\nSUMMARY:Quarterly business\r\n  review\\, Q1\r\n\
                   ORGANIZER;CN=Kim:mailto:kim@vendor.example\r\nATTENDEE;CN=Ann:mailto:Ann@Acme.example\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nUID:e2@cal\r\nDTSTART;VALUE=DATE:20260303\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nUID:e3@cal\r\nDTSTART:tomorrow\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let r = read_ics(ics.as_bytes(), "cal.ics".into(), TODAY);
        assert_eq!(r.rows.len(), 3);
        let v = &r.rows[0].values;
        assert_eq!(v[0].as_deref(), Some("ics:e1@cal"));
        assert_eq!(v[2].as_deref(), Some("2026-03-02T15:00:00Z"));
        assert_eq!(v[3].as_deref(), Some("Quarterly business review, Q1"));
        assert_eq!(v[6].as_deref(), Some("ann@acme.example"));
        assert_eq!(r.rows[1].values[2].as_deref(), Some("2026-03-03T00:00:00Z"));
        assert_eq!(
            r.rows[2].error.as_deref(),
            Some("event e3@cal: DTSTART 'tomorrow' is not a date-time (YYYYMMDDTHHMMSS[Z])")
        );
    }

    #[test]
    fn recurring_meetings_expand_in_their_time_zone() {
        // weekly at 9:00 Berlin time across the DST change of 29 March 2026, one week excluded,
        // one occurrence moved to the afternoon
        let ics = "BEGIN:VEVENT\r\nUID:weekly@cal\r\nDTSTART;TZID=Europe/Berlin:20260319T090000\r\n\
                   RRULE:FREQ=WEEKLY;COUNT=4\r\nEXDATE;TZID=Europe/Berlin:20260326T090000\r\nSUMMARY:Check-in\r\n\
                   ATTENDEE:mailto:ann@acme.example\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nUID:weekly@cal\r\nRECURRENCE-ID;TZID=Europe/Berlin:20260402T090000\r\n\
                   DTSTART;TZID=Europe/Berlin:20260402T150000\r\nSUMMARY:Check-in (moved)\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nUID:monthly@cal\r\nDTSTART:20260105T170000Z\r\n\
                   RRULE:FREQ=MONTHLY;BYDAY=-1FR;UNTIL=20260401T000000Z\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nUID:odd@cal\r\nDTSTART:20260105T170000Z\r\nRRULE:FREQ=HOURLY\r\nEND:VEVENT\r\n";
        let r = read_ics(ics.as_bytes(), "cal.ics".into(), TODAY);
        let got: Vec<(String, String)> = r
            .rows
            .iter()
            .filter(|r| r.error.is_none())
            .map(|r| (r.values[0].clone().unwrap(), r.values[2].clone().unwrap()))
            .collect();
        let want = [
            ("ics:weekly@cal:20260319T080000Z", "2026-03-19T08:00:00Z"),
            // after the change to summer time 9:00 Berlin is 7:00 UTC
            ("ics:weekly@cal:20260409T070000Z", "2026-04-09T07:00:00Z"),
            ("ics:weekly@cal:20260402T070000Z", "2026-04-02T13:00:00Z"),
            ("ics:monthly@cal:20260105T170000Z", "2026-01-05T17:00:00Z"),
            ("ics:monthly@cal:20260130T170000Z", "2026-01-30T17:00:00Z"),
            ("ics:monthly@cal:20260227T170000Z", "2026-02-27T17:00:00Z"),
            ("ics:monthly@cal:20260327T170000Z", "2026-03-27T17:00:00Z"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, want);
        let bad = r.rows.iter().find_map(|r| r.error.clone()).unwrap();
        assert_eq!(
            bad,
            "event odd@cal: RRULE 'FREQ=HOURLY': FREQ HOURLY is not supported"
        );
    }

    #[test]
    fn accounts_by_contact_email_then_by_unambiguous_domain() {
        let mut idx = AttendeeIndex::default();
        idx.add("ann@acme.example", "A1", "C1");
        idx.add("bob@acme.example", "A1", "C2");
        idx.add("cy@shared.example", "A2", "C3");
        idx.add("di@shared.example", "A3", "C4");
        assert_eq!(
            idx.account_of("kim@vendor.example;bob@acme.example"),
            Some(("A1".into(), Some("C2".into())))
        );
        assert_eq!(
            idx.account_of("new.person@acme.example"),
            Some(("A1".into(), None))
        );
        assert_eq!(
            idx.account_of("someone@shared.example"),
            None,
            "two accounts share the domain"
        );
        assert_eq!(idx.account_of("kim@vendor.example"), None);
    }
}
