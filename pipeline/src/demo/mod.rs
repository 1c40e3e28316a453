//! A seeded, streaming B2B SaaS generator: accounts, contacts, subscriptions over time, invoices,
//! daily usage per user, tickets, NPS and CSM meetings. Churn and expansion are *caused* by
//! behaviour (falling usage, low seat utilisation, open tickets, failed payments, detractor NPS;
//! high utilisation and advanced-feature adoption), plus unobserved shocks, so that no single
//! feature gives the label away. Accounts are simulated one at a time and written as they finish,
//! so memory does not grow with the number of accounts or events.
//!
//! `vocab` holds the random stream and the fixed vocabularies (names, plans, event types, the
//! content catalogue), `writers` the per-table file writers; this file is the simulation.

use std::path::PathBuf;

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use cslake_sinks::FileFormat;

use crate::ingest::records::Value;
use crate::{Progress, Result};

mod vocab;
mod writers;

use vocab::{
    CONTENT_AGE_DAYS, CONTENT_ITEMS, COUNTRIES, EVENT_TYPES, FIRST, INDUSTRIES, LAST, PLANS, ROLES, Rng,
    SUFFIX, WORDS, sigmoid,
};
pub use writers::GenStats;
use writers::Writers;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub accounts: usize,
    /// Days of history ending at `end` (usage, tickets and NPS are emitted in this window;
    /// subscriptions and invoices go back to each account's signup).
    pub days: i64,
    pub end: NaiveDate,
    pub seed: u64,
    pub format: FileFormat,
    pub out: PathBuf,
    /// Usage events per file part.
    pub events_per_file: usize,
    /// How churn depends on what the data shows.
    pub churn: ChurnProfile,
}

/// How the generator decides churn at each renewal, from the account's observable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChurnProfile {
    /// A logit that is a weighted sum of seat utilisation, usage trend, open tickets, failed
    /// payments, an NPS detractor flag and the segment: what logistic regression can learn.
    #[default]
    Linear,
    /// Churn driven by thresholds and interactions only: contract type x tenure (monthly
    /// contracts leave in their first four months, annual ones at their first renewal); low seat
    /// use (< 50% active) together with an open ticket; a failed payment, but only where seats are
    /// well used (>= 80%); monthly contracts whose seats are full (>= 90%: a U in utilisation).
    /// What trees can learn and a linear logit cannot.
    Interactions,
}

impl std::str::FromStr for ChurnProfile {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "linear" => Ok(Self::Linear),
            "interactions" => Ok(Self::Interactions),
            other => Err(format!("unknown churn profile '{other}': linear or interactions")),
        }
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}
fn d(v: NaiveDate) -> Value {
    Value::Date(v)
}
fn opt_d(v: Option<NaiveDate>) -> Value {
    v.map_or(Value::Null, Value::Date)
}
fn ts(day: NaiveDate, secs: i64) -> Value {
    Value::Ts(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default()) + Duration::seconds(secs))
}

/// Generates the data set into `opts.out`.
pub fn generate(opts: &GenOptions, progress: &dyn Progress) -> Result<GenStats> {
    std::fs::create_dir_all(&opts.out).map_err(|source| crate::Error::Io {
        path: opts.out.display().to_string(),
        source,
    })?;
    Writers::clear(&opts.out)?;
    let mut w = Writers::new(&opts.out, opts.format, opts.events_per_file.max(1));
    let n_csms = (opts.accounts / 60).max(3);
    let teams = ["SMB", "Mid-Market", "Enterprise"];
    for c in 0..n_csms {
        let mut r = Rng::new(opts.seed ^ 0xC5C5 ^ (c as u64) << 20);
        let name = format!("{} {}", r.pick(FIRST), r.pick(LAST));
        let team = teams[c % 3];
        w.push(
            "csms",
            vec![
                s(format!("CSM-{:03}", c + 1)),
                s(name.clone()),
                s(format!(
                    "{}.{}@vendor.example",
                    name.split(' ').next().unwrap_or("csm").to_lowercase(),
                    c + 1
                )),
                s(team),
                Value::Int([80, 45, 20][c % 3]),
            ],
        )?;
    }
    for (rank, (plan, price)) in PLANS.iter().enumerate() {
        w.push(
            "products",
            vec![
                s(*plan),
                s(format!("{}{} plan", &plan[..1].to_uppercase(), &plan[1..])),
                s("plan"),
                Value::Int(rank as i64 + 1),
                Value::Float(*price),
            ],
        )?;
    }
    for (i, (kind, title, teaches, segment)) in CONTENT_ITEMS.iter().enumerate() {
        let id = format!("CNT-{:03}", i + 1);
        let topic = teaches.replace('_', " ");
        w.push(
            "content",
            vec![
                s(id.clone()),
                s(*title),
                s(*kind),
                s(format!("https://help.vendor.example/articles/{id}")),
                s(format!("{topic}, {kind}")),
                s(*teaches),
                segment.map_or(Value::Null, s),
                s("en"),
                ts(
                    opts.end - Duration::days(CONTENT_AGE_DAYS - 60 * i as i64),
                    9 * 3600,
                ),
            ],
        )?;
    }
    progress.start("generate", Some(opts.accounts as u64));
    for a in 0..opts.accounts {
        simulate_account(opts, a, n_csms, &mut w)?;
        progress.advance(1);
    }
    progress.finish();
    w.finish()
}

struct User {
    id: String,
    propensity: f64,
    power: f64,
    last_active: Option<NaiveDate>,
    /// Content started and the day it will be completed.
    learning: Vec<(NaiveDate, usize)>,
    /// The event types the content this user completed teaches.
    learned: Vec<&'static str>,
}

#[allow(clippy::too_many_lines)]
fn simulate_account(opts: &GenOptions, index: usize, n_csms: usize, w: &mut Writers) -> Result<()> {
    let mut r = Rng::new(opts.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (index as u64 + 1));
    let id = format!("ACC-{:06}", index + 1);
    let start = opts.end - Duration::days(opts.days - 1);
    let seg_draw = r.f();
    let (segment, seat_lo, seat_hi, annual_share, csm_team) = if seg_draw < 0.6 {
        ("SMB", 2, 10, 0.3, 0)
    } else if seg_draw < 0.9 {
        ("Mid-Market", 10, 30, 0.8, 1)
    } else {
        ("Enterprise", 30, 80, 1.0, 2)
    };
    let mut plan_rank: usize = match segment {
        "SMB" => usize::from(r.chance(0.3)),
        "Mid-Market" => {
            if r.chance(0.15) {
                2
            } else if r.chance(0.18) {
                0
            } else {
                1
            }
        }
        _ => {
            if r.chance(0.8) {
                2
            } else {
                1
            }
        }
    };
    let annual = r.chance(annual_share);
    let mut seats = ((seat_lo as f64) * ((seat_hi as f64 / seat_lo as f64).powf(r.f()))).round() as i64;
    let signup = opts.end - Duration::days(r.range(20, opts.days + 730));
    let csm = {
        let team_csms: Vec<usize> = (0..n_csms).filter(|c| c % 3 == csm_team).collect();
        format!(
            "CSM-{:03}",
            team_csms[r.range(0, team_csms.len() as i64 - 1) as usize] + 1
        )
    };
    let industry = r.pick(INDUSTRIES);
    let country = r.pick(COUNTRIES);
    let name = format!("{} {} {}", r.pick(WORDS), r.pick(WORDS), r.pick(SUFFIX));
    // latent, unobserved: product fit and health
    let fit = r.normal();
    let mut h = 0.6 + 0.4 * fit + 0.4 * r.normal();
    let mut declining = false;
    let mut price = PLANS[plan_rank].1 * (1.0 + 0.1 * r.normal()).clamp(0.7, 1.3);
    let advanced_affinity = sigmoid(fit + r.normal());

    let mut users: Vec<User> = Vec::new();
    let mut contact_seq = 0;
    let mut add_users =
        |users: &mut Vec<User>, n: i64, r: &mut Rng, w: &mut Writers, day: NaiveDate| -> Result<()> {
            for _ in 0..n {
                contact_seq += 1;
                let cid = format!("{id}-U{contact_seq:03}");
                let first = r.pick(FIRST);
                let last = r.pick(LAST);
                w.push(
                    "contacts",
                    vec![
                        s(cid.clone()),
                        s(id.clone()),
                        s(format!(
                            "{}.{}{}@{}.example",
                            first.to_lowercase(),
                            last.to_lowercase(),
                            contact_seq,
                            id.to_lowercase()
                        )),
                        s(format!("{first} {last}")),
                        s(r.pick(ROLES)),
                        d(day),
                    ],
                )?;
                users.push(User {
                    id: cid,
                    propensity: r.f().powf(0.7),
                    power: r.f(),
                    last_active: None,
                    learning: Vec::new(),
                    learned: Vec::new(),
                });
            }
            Ok(())
        };
    let initial_users = ((seats as f64) * (0.55 + 0.4 * r.f())).round().max(1.0) as i64;
    add_users(&mut users, initial_users, &mut r, w, signup)?;

    // subscription periods
    let mut sub_seq = 0;
    let mut period_start = signup;
    let mut period_kind = "new";
    let mut churned_on: Option<NaiveDate> = None;
    let mut invoice_seq = 0;
    let mut event_seq: u64 = 0;
    // content: a stream of its own, so the rest of the simulation draws what it always drew
    let mut rc = Rng::new(opts.seed ^ 0xC047_E475 ^ ((index as u64 + 1) << 17));
    let mut content_seq: u64 = 0;
    let published = opts.end - Duration::days(CONTENT_AGE_DAYS);
    let mut ticket_seq = 0;
    let mut open_tickets: Vec<(NaiveDate, Option<NaiveDate>)> = Vec::new();
    let mut failed_payments: Vec<NaiveDate> = Vec::new();
    let mut last_nps: Option<(NaiveDate, f64)> = None;
    let mut daily_events: Vec<f64> = Vec::new(); // events per day since signup
    let mut next_nps = signup + Duration::days(r.range(30, 120));
    let meet_every = match segment {
        "SMB" => 90,
        "Mid-Market" => 45,
        _ => 30,
    };
    let mut next_meeting = signup + Duration::days(r.range(7, meet_every));
    let mut contract_anchor = signup;

    let mut close_period = |w: &mut Writers,
                            end: NaiveDate,
                            status: &str,
                            kind: &str,
                            seats: i64,
                            mrr: f64,
                            plan: &str,
                            start: NaiveDate|
     -> Result<()> {
        sub_seq += 1;
        w.push(
            "subscriptions",
            vec![
                s(format!("{id}-S{sub_seq:02}")),
                s(id.clone()),
                s(plan),
                Value::Int(seats),
                Value::Float((mrr * 100.0).round() / 100.0),
                d(start),
                d(end),
                s(status),
                s(kind),
                Value::Int(if annual { 12 } else { 1 }),
                Value::Null,
            ],
        )
    };

    let mut day = signup;
    while day <= opts.end {
        let in_window = day >= start;
        let t = (day - signup).num_days();
        // weekly: latent health moves
        if day.weekday() == Weekday::Mon {
            if !declining && r.chance(0.004 + 0.01 * f64::from(u8::from(fit < -0.5))) {
                declining = true;
            } else if declining && r.chance(0.03) {
                declining = false;
            }
            let drift = if declining {
                -0.07
            } else {
                0.02 * (0.6 + 0.4 * fit - h)
            };
            h = (h + drift + 0.08 * r.normal()).clamp(-3.0, 3.0);
        }
        // usage
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let activity = sigmoid(1.6 * h - 0.2) * if weekend { 0.15 } else { 1.0 };
        let mut today = 0.0;
        for u in &mut users {
            if !r.chance(0.55 * u.propensity * activity) {
                continue;
            }
            u.last_active = Some(day);
            let logins = 1 + i64::from(r.chance(0.3)) + i64::from(r.chance(0.1));
            today += logins as f64;
            let uid = u.id.clone();
            // training: now and then a user opens a piece of content, often starts it and
            // mostly finishes it within two weeks; what it teaches they then use more
            let mut learn =
                |action: &str, item: usize, at: NaiveDate, score: Option<f64>, w: &mut Writers| {
                    content_seq += 1;
                    if at < start || at > opts.end {
                        return Ok(());
                    }
                    w.push(
                        "content_events",
                        vec![
                            s(format!("{id}-C{content_seq:05}")),
                            s(format!("CNT-{:03}", item + 1)),
                            s(id.clone()),
                            s(uid.clone()),
                            s(action),
                            ts(
                                at,
                                8 * 3600 + (item as i64 * 997 + content_seq as i64 * 131) % (10 * 3600),
                            ),
                            score.map_or(Value::Null, Value::Float),
                        ],
                    )
                };
            let due: Vec<usize> = u
                .learning
                .iter()
                .filter(|(d, _)| *d <= day)
                .map(|(_, i)| *i)
                .collect();
            u.learning.retain(|(d, _)| *d > day);
            for item in due {
                let rating = rc.chance(0.4).then(|| rc.range(3, 5) as f64);
                learn("completed", item, day, None, w)?;
                if let Some(score) = rating {
                    learn("rated", item, day, Some(score), w)?;
                }
                let teaches = CONTENT_ITEMS[item].2;
                if !u.learned.contains(&teaches) {
                    u.learned.push(teaches);
                }
            }
            if day >= published && rc.chance(0.005 * (1.2 - u.power)) {
                let item = rc.range(0, CONTENT_ITEMS.len() as i64 - 1) as usize;
                learn("viewed", item, day, None, w)?;
                if rc.chance(0.6) {
                    learn("started", item, day, None, w)?;
                    if rc.chance(0.7) {
                        u.learning.push((day + Duration::days(rc.range(1, 14)), item));
                    }
                }
            }
            let mut emit = |etype: &str, qty: f64, r: &mut Rng, w: &mut Writers| -> Result<()> {
                if in_window {
                    event_seq += 1;
                    w.push(
                        "usage_events",
                        vec![
                            s(format!("{id}-E{event_seq:07}")),
                            s(id.clone()),
                            s(u.id.clone()),
                            s(etype),
                            ts(day, r.range(7 * 3600, 19 * 3600)),
                            Value::Float(qty),
                        ],
                    )?;
                }
                Ok(())
            };
            emit("login", logins as f64, &mut r, w)?;
            let learned = u.learned.clone();
            for (etype, base, advanced) in EVENT_TYPES {
                let p = if *advanced {
                    if plan_rank == 0 {
                        0.0
                    } else {
                        base * advanced_affinity * (0.5 + u.power)
                    }
                } else {
                    base * (0.4 + u.power)
                };
                if r.chance(p) {
                    let qty = if *etype == "api_call" {
                        r.range(5, 60) as f64
                    } else {
                        r.range(1, 4) as f64
                    };
                    today += qty.min(5.0);
                    emit(etype, qty, &mut r, w)?;
                } else if learned.contains(etype) && rc.chance(0.5 * p / (1.0 - p).max(0.05)) {
                    // trained: half as likely again to use it (drawn from the content stream,
                    // and not counted in the activity the churn simulation reads)
                    emit(etype, 1.0, &mut rc, w)?;
                }
            }
        }
        daily_events.push(today);
        // support tickets
        let ticket_rate = 0.002 * (users.len() as f64).sqrt() * (1.0 + 3.0 * sigmoid(-2.0 * h));
        if r.chance(ticket_rate) {
            ticket_seq += 1;
            let high = r.chance(0.12 + 0.25 * f64::from(u8::from(h < 0.0)));
            let slow = h < 0.0 || high;
            let days_to_resolve = if r.chance(if slow { 0.12 } else { 0.02 }) {
                None
            } else {
                Some((-(r.f().max(1e-9)).ln() * if slow { 12.0 } else { 3.0 }).ceil() as i64)
            };
            let resolved = days_to_resolve
                .map(|n| day + Duration::days(n))
                .filter(|x| *x <= opts.end);
            open_tickets.push((day, resolved));
            if in_window {
                let opened = r.range(8 * 3600, 18 * 3600);
                w.push(
                    "interactions",
                    vec![
                        s(format!("{id}-T{ticket_seq:04}")),
                        s(id.clone()),
                        s(users[r.range(0, users.len() as i64 - 1) as usize].id.clone()),
                        s("ticket"),
                        ts(day, opened),
                        resolved.map_or(Value::Null, |x| ts(x, r.range(8 * 3600, 18 * 3600))),
                        s(if resolved.is_some() { "resolved" } else { "open" }),
                        s(if high {
                            "high"
                        } else if r.chance(0.5) {
                            "normal"
                        } else {
                            "low"
                        }),
                        Value::Null,
                        s(r.pick(&[
                            "Login problem",
                            "Export fails",
                            "Billing question",
                            "Slow dashboard",
                            "Integration error",
                            "Feature request",
                        ])),
                        s(csm.clone()),
                    ],
                )?;
            }
        }
        // NPS survey
        if day >= next_nps {
            next_nps = day + Duration::days(r.range(80, 100));
            if r.chance(0.45) {
                let score = (7.0 + 2.0 * h + 1.8 * r.normal()).round().clamp(0.0, 10.0);
                last_nps = Some((day, score));
                if in_window {
                    ticket_seq += 1;
                    w.push(
                        "interactions",
                        vec![
                            s(format!("{id}-N{ticket_seq:04}")),
                            s(id.clone()),
                            s(users[r.range(0, users.len() as i64 - 1) as usize].id.clone()),
                            s("nps"),
                            ts(day, r.range(8 * 3600, 20 * 3600)),
                            Value::Null,
                            s("answered"),
                            Value::Null,
                            Value::Float(score),
                            s("Quarterly NPS survey"),
                            Value::Null,
                        ],
                    )?;
                }
            }
        }
        // CSM meetings (more often when the CSM sees trouble: a confounder, as in real life)
        if day >= next_meeting {
            let every = if h < 0.0 { meet_every * 2 / 3 } else { meet_every };
            next_meeting = day + Duration::days(r.range(every * 3 / 4, every * 5 / 4));
            if in_window && r.chance(0.8) {
                ticket_seq += 1;
                w.push(
                    "interactions",
                    vec![
                        s(format!("{id}-M{ticket_seq:04}")),
                        s(id.clone()),
                        Value::Null,
                        s("meeting"),
                        ts(day, r.range(9 * 3600, 17 * 3600)),
                        Value::Null,
                        s("held"),
                        Value::Null,
                        Value::Null,
                        s(r.pick(&[
                            "Quarterly business review",
                            "Check-in",
                            "Onboarding session",
                            "Renewal discussion",
                        ])),
                        s(csm.clone()),
                    ],
                )?;
            }
        }
        // billing, renewal and churn decisions on the billing anniversary
        let monthly_anniv = t > 0 && day.day() == signup.day().min(28);
        let yearly_anniv = t > 0
            && day.ordinal() == contract_anchor.ordinal().min(365)
            && day.year() > contract_anchor.year();
        let billing_day = if annual { yearly_anniv } else { monthly_anniv };
        if billing_day {
            let active30 = users
                .iter()
                .filter(|u| u.last_active.is_some_and(|x| (day - x).num_days() < 30))
                .count() as f64;
            let util = active30 / seats.max(1) as f64;
            let n = daily_events.len();
            let last30: f64 = daily_events[n.saturating_sub(30)..].iter().sum();
            let prev30: f64 = daily_events[n.saturating_sub(60)..n.saturating_sub(30)]
                .iter()
                .sum();
            let trend = (last30 + 1.0) / (prev30 + 1.0) - 1.0;
            let open = open_tickets
                .iter()
                .filter(|(o, res)| *o <= day && res.is_none_or(|x| x > day))
                .count() as f64;
            let failed_recent = failed_payments
                .iter()
                .filter(|f| (day - **f).num_days() < 90)
                .count() as f64;
            let detractor = last_nps.is_some_and(|(when, sc)| sc <= 6.0 && (day - when).num_days() < 180);
            let shock = 0.9 * r.normal();
            let flag = |b: bool| f64::from(u8::from(b));
            let logit = match opts.churn {
                ChurnProfile::Linear => {
                    let base = if annual { -1.9 } else { -4.1 };
                    base - 2.2 * (util - 0.5) - 0.9 * trend.clamp(-1.0, 1.0)
                        + 0.35 * open.min(5.0)
                        + 0.7 * failed_recent.min(3.0)
                        + 0.8 * flag(detractor)
                        - 0.3 * flag(segment == "Enterprise")
                        + shock
                }
                ChurnProfile::Interactions => {
                    let tenure = (day - signup).num_days();
                    // contract type x tenure: a monthly contract leaves in its first months
                    // (onboarding that failed) or never; an annual one cannot leave before its
                    // first renewal and is most at risk there, so tenure means opposite things by
                    // contract. Monthly contracts also leave when their seats are full (they
                    // outgrow the plan rather than pay for more): a U in utilisation.
                    let onboarding = !annual && tenure < 120;
                    let first_renewal = annual && tenure < 400;
                    let base = if annual { -4.2 } else { -6.5 };
                    base + 4.0 * flag(onboarding)
                        + 3.8 * flag(first_renewal)
                        + 5.0 * flag(util < 0.5 && open >= 1.0)
                        + 4.5 * flag(util >= 0.8 && failed_recent >= 1.0)
                        + 2.2 * flag(!annual && util >= 0.9)
                        + 0.4 * shock
                }
            };
            let plan = PLANS[plan_rank].0;
            let mrr = seats as f64 * price;
            let old_seats = seats;
            if r.chance(sigmoid(logit)) {
                close_period(w, day, "cancelled", period_kind, seats, mrr, plan, period_start)?;
                churned_on = Some(day);
                break;
            }
            // expansion: high utilisation and advanced adoption lead to more seats or a higher plan
            let expand_p =
                sigmoid(-3.2 + 7.0 * (util - 0.8) + 1.5 * advanced_affinity + 0.8 * h + 0.5 * r.normal());
            let mut change: Option<&str> = None;
            // accounts plateau: seats stop growing at three times the segment's largest start
            // (without it, high utilisation compounds into 100x growth within a few years)
            if seats < seat_hi * 3 && r.chance(expand_p) {
                let added = ((seats as f64) * (0.15 + 0.35 * r.f())).ceil() as i64;
                if plan_rank < 2 && advanced_affinity > 0.6 && r.chance(0.3) {
                    plan_rank += 1;
                    price = PLANS[plan_rank].1 * (1.0 + 0.05 * r.normal()).clamp(0.8, 1.2);
                } else {
                    seats += added;
                }
                change = Some("upgrade");
            } else if util < 0.35 && seats > 2 && r.chance(if annual { 0.35 } else { 0.08 }) {
                seats = ((active30 * 1.3).ceil() as i64).clamp(1, seats - 1);
                change = Some("downgrade");
            } else if annual {
                if r.chance(0.4) {
                    price *= 1.05;
                }
                change = Some("renewal");
            }
            if let Some(kind) = change {
                close_period(w, day, "ended", period_kind, old_seats, mrr, plan, period_start)?;
                period_start = day;
                period_kind = kind;
                if kind == "renewal" {
                    contract_anchor = day;
                }
                let want = ((seats as f64) * (0.55 + 0.4 * sigmoid(h))).round() as i64;
                if want > users.len() as i64 {
                    let n = want - users.len() as i64;
                    add_users(&mut users, n, &mut r, w, day)?;
                }
            }
            // invoice for the period just started
            invoice_seq += 1;
            let amount = seats as f64 * price * if annual { 12.0 } else { 1.0 };
            let due = day + Duration::days(if annual { 30 } else { 7 });
            let fail_p = 0.025 + 0.10 * sigmoid(-2.0 * h - 1.0);
            let failures = if r.chance(fail_p) { r.range(1, 3) } else { 0 };
            let late = r.chance(0.04 + 0.15 * f64::from(u8::from(h < 0.0)));
            let paid = if failures > 0 && r.chance(0.3) {
                None
            } else if failures > 0 || late {
                Some(due + Duration::days(r.range(2, 25)))
            } else {
                Some(day + Duration::days(r.range(0, 5)))
            }
            .filter(|p| *p <= opts.end);
            if failures > 0 {
                failed_payments.push(day);
            }
            w.push(
                "invoices",
                vec![
                    s(format!("{id}-I{invoice_seq:03}")),
                    s(id.clone()),
                    d(day),
                    d(due),
                    Value::Float((amount * 100.0).round() / 100.0),
                    s(if paid.is_some() {
                        "paid"
                    } else if failures > 0 {
                        "failed"
                    } else {
                        "open"
                    }),
                    opt_d(paid),
                    Value::Int(failures),
                ],
            )?;
        }
        day += Duration::days(1);
    }
    if churned_on.is_none() {
        // the current period stays open
        sub_seq += 1;
        w.push(
            "subscriptions",
            vec![
                s(format!("{id}-S{sub_seq:02}")),
                s(id.clone()),
                s(PLANS[plan_rank].0),
                Value::Int(seats),
                Value::Float(((seats as f64 * price) * 100.0).round() / 100.0),
                d(period_start),
                Value::Null,
                s("active"),
                s(period_kind),
                Value::Int(if annual { 12 } else { 1 }),
                Value::Null,
            ],
        )?;
    }
    let contract_end = annual.then(|| contract_anchor + Duration::days(365));
    w.push(
        "accounts",
        vec![
            s(id.clone()),
            s(name),
            s(industry),
            s(segment),
            s(PLANS[plan_rank].0),
            Value::Int(seats),
            Value::Float(if churned_on.is_some() {
                0.0
            } else {
                ((seats as f64 * price) * 100.0).round() / 100.0
            }),
            d(signup),
            opt_d(contract_end),
            s(csm),
            s(country),
            d(signup),
            s(if churned_on.is_some() { "churned" } else { "active" }),
        ],
    )?;
    Ok(())
}
