//! Calendar files (RFC 5545 iCalendar, `.ics`): meetings become `interactions` of kind
//! `meeting`. An event belongs to the account of its attendees: an attendee whose e-mail is a
//! known contact, or else whose e-mail domain is the domain of one account's contacts. Events
//! without a customer attendee (internal meetings) and cancelled events are skipped.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};

use crate::records::{RawRecords, RawRow};

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

/// Parses the VEVENTs of an iCalendar file into records (`attendees` joined by `;`).
pub fn read_ics(bytes: &[u8], origin: String) -> RawRecords {
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
    let mut rows = Vec::new();
    let mut event: Option<Event> = None;
    for line in &lines {
        let Some((name_params, value)) = line.split_once(':') else {
            continue;
        };
        let mut parts = name_params.split(';');
        let name = parts.next().unwrap_or_default().to_ascii_uppercase();
        let params: Vec<&str> = parts.collect();
        match (name.as_str(), event.as_mut()) {
            ("BEGIN", None) if value.eq_ignore_ascii_case("VEVENT") => {
                event = Some(Event::default());
            }
            ("END", Some(_)) if value.eq_ignore_ascii_case("VEVENT") => {
                if let Some(e) = event.take() {
                    rows.push(e.into_row(rows.len() + 1));
                }
            }
            ("UID", Some(e)) => e.uid = value.trim().to_string(),
            ("RECURRENCE-ID", Some(e)) => e.recurrence = Some(value.trim().to_string()),
            ("SUMMARY", Some(e)) => e.summary = unescape(value),
            ("STATUS", Some(e)) => e.status = value.trim().to_ascii_lowercase(),
            ("DTSTART", Some(e)) => e.start = Some(parse_dt(value.trim(), &params)),
            ("ORGANIZER", Some(e)) => e.organizer = mailto(value),
            ("ATTENDEE", Some(e)) => e.attendees.extend(mailto(value)),
            _ => {}
        }
    }
    RawRecords {
        origin,
        header: HEADER.iter().map(|h| h.to_string()).collect(),
        rows,
        meetings: true,
    }
}

#[derive(Default)]
struct Event {
    uid: String,
    recurrence: Option<String>,
    summary: String,
    status: String,
    start: Option<Result<String, String>>,
    organizer: Option<String>,
    attendees: Vec<String>,
}

impl Event {
    fn into_row(self, number: usize) -> RawRow {
        let id = match &self.recurrence {
            Some(r) => format!("ics:{}:{r}", self.uid),
            None => format!("ics:{}", self.uid),
        };
        let which = if self.uid.is_empty() {
            format!("event #{number}")
        } else {
            format!("event {}", self.uid)
        };
        let (start, error) = match self.start {
            Some(Ok(s)) => (Some(s), None),
            Some(Err(e)) => (None, Some(format!("{which}: {e}"))),
            None => (None, Some(format!("{which} has no DTSTART"))),
        };
        let error = error.or_else(|| self.uid.is_empty().then(|| format!("{which} has no UID")));
        RawRow {
            number,
            values: vec![
                Some(id),
                Some("meeting".into()),
                start,
                Some(self.summary),
                Some(if self.status.is_empty() {
                    "confirmed".into()
                } else {
                    self.status
                }),
                self.organizer,
                Some(self.attendees.join(";")),
            ],
            error,
        }
    }
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

/// DTSTART as RFC 3339: `…Z` is UTC; a local time (with or without TZID) is taken as UTC, and a
/// `VALUE=DATE` as midnight UTC.
fn parse_dt(v: &str, params: &[&str]) -> Result<String, String> {
    let date_only = params.iter().any(|p| p.eq_ignore_ascii_case("VALUE=DATE"))
        || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()));
    if date_only {
        return NaiveDate::parse_from_str(v, "%Y%m%d")
            .map(|d| format!("{}T00:00:00Z", d.format("%Y-%m-%d")))
            .map_err(|_| format!("DTSTART '{v}' is not a date (YYYYMMDD)"));
    }
    NaiveDateTime::parse_from_str(v.trim_end_matches('Z'), "%Y%m%dT%H%M%S")
        .map(|t| t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .map_err(|_| format!("DTSTART '{v}' is not a date-time (YYYYMMDDTHHMMSS[Z])"))
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
        let email = email.trim().to_ascii_lowercase();
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

    #[test]
    fn parses_folded_lines_dates_and_attendees() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e1@cal\r\nDTSTART:20260302T150000Z\r\nSUMMARY:Quarterly business\r\n  review\\, Q1\r\n\
                   ORGANIZER;CN=Kim:mailto:kim@vendor.example\r\nATTENDEE;CN=Ann:mailto:Ann@Acme.example\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nUID:e2@cal\r\nDTSTART;VALUE=DATE:20260303\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nUID:e3@cal\r\nDTSTART:tomorrow\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let r = read_ics(ics.as_bytes(), "cal.ics".into());
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
