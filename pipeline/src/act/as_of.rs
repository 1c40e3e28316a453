//! Task and alert state *as of a date*. `actions.tasks` and `actions.alerts` are kept in place
//! (a task's row says what it is now), so anything computed for a past date — team analytics,
//! playbook statistics — reads the state each row had at the end of that day instead: completed
//! when `completed_at` falls on or before it, acknowledged likewise, cancelled or resolved when
//! its enrolment had ended by then (the only way either happens), overdue when still open past
//! its due date. Re-running a past day after later activity then gives the same rows.
//!
//! The rule exists twice, as Rust (for the act step's in-memory rows) and as SQL (for analytics);
//! the test below holds them to the same answers.

use chrono::NaiveDate;

use crate::act::tables::{Alert, Task};

/// The first microsecond after day `d` (UTC): state "as of d" is everything before it.
pub fn day_end_micros(d: NaiveDate) -> i64 {
    (d + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_micros()
}

impl Task {
    /// The task's status at the end of day `d` (`None`: not created yet). `ended` is the day
    /// its enrolment ended, if it has.
    pub fn status_on(&self, d: NaiveDate, ended: Option<NaiveDate>) -> Option<&'static str> {
        if self.created_on > d {
            return None;
        }
        let done = match self.completed_at {
            Some(at) => at < day_end_micros(d),
            None => self.status == "completed",
        };
        Some(if done {
            "completed"
        } else if self.status == "cancelled" && ended.is_none_or(|e| e <= d) {
            "cancelled"
        } else if self.due_date < d {
            "overdue"
        } else {
            "open"
        })
    }
}

impl Alert {
    /// The alert's status at the end of day `d` (`None`: not raised yet).
    pub fn status_on(&self, d: NaiveDate, ended: Option<NaiveDate>) -> Option<&'static str> {
        if self.as_of_date > d {
            return None;
        }
        let acknowledged = match self.acknowledged_at {
            Some(at) => at < day_end_micros(d),
            None => self.status == "acknowledged",
        };
        Some(if acknowledged {
            "acknowledged"
        } else if self.status == "resolved" && ended.is_none_or(|e| e <= d) {
            "resolved"
        } else {
            "open"
        })
    }
}

/// When each enrolment ended (`enrollment_id`, `ended_on`), from the daily snapshots, or an empty
/// relation without `actions.playbook_runs`.
fn ended_sql(has_runs: bool) -> &'static str {
    if has_runs {
        "(SELECT enrollment_id, MIN(ended_on) AS ended_on FROM actions.playbook_runs \
         WHERE ended_on IS NOT NULL GROUP BY enrollment_id)"
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS enrollment_id, CAST(NULL AS DATE) AS ended_on WHERE FALSE)"
    }
}

/// `actions.tasks` as of the end of day `d`: the tasks created by then, with the status each had.
pub fn tasks_sql(d: NaiveDate, has_runs: bool) -> String {
    let end = day_end_micros(d);
    format!(
        "(SELECT t.task_id, t.enrollment_id, t.playbook, t.account_id, t.assignee, t.team, t.priority, \
         t.created_on, t.due_date, \
         CASE WHEN t.completed_at IS NOT NULL AND CAST(t.completed_at AS BIGINT) < {end} THEN t.completed_at END AS completed_at, \
         CASE WHEN (t.completed_at IS NOT NULL AND CAST(t.completed_at AS BIGINT) < {end}) \
                   OR (t.completed_at IS NULL AND t.status = 'completed') THEN 'completed' \
              WHEN t.status = 'cancelled' AND (e.ended_on IS NULL OR e.ended_on <= DATE '{d}') THEN 'cancelled' \
              WHEN t.due_date < DATE '{d}' THEN 'overdue' \
              ELSE 'open' END AS status \
         FROM actions.tasks t LEFT JOIN {ended} e ON e.enrollment_id = t.enrollment_id \
         WHERE t.created_on <= DATE '{d}')",
        ended = ended_sql(has_runs)
    )
}

/// `actions.alerts` as of the end of day `d`: the alerts raised by then, with their status then.
pub fn alerts_sql(d: NaiveDate, has_runs: bool) -> String {
    let end = day_end_micros(d);
    format!(
        "(SELECT a.alert_id, a.enrollment_id, a.playbook, a.account_id, a.as_of_date, a.priority, \
         CASE WHEN a.acknowledged_at IS NOT NULL AND CAST(a.acknowledged_at AS BIGINT) < {end} THEN a.acknowledged_at END AS acknowledged_at, \
         CASE WHEN (a.acknowledged_at IS NOT NULL AND CAST(a.acknowledged_at AS BIGINT) < {end}) \
                   OR (a.acknowledged_at IS NULL AND a.status = 'acknowledged') THEN 'acknowledged' \
              WHEN a.status = 'resolved' AND (e.ended_on IS NULL OR e.ended_on <= DATE '{d}') THEN 'resolved' \
              ELSE 'open' END AS status \
         FROM actions.alerts a LEFT JOIN {ended} e ON e.enrollment_id = a.enrollment_id \
         WHERE a.as_of_date <= DATE '{d}')",
        ended = ended_sql(has_runs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::tables::Enrolment;
    use crate::lake::query::{sql, strings};
    use deltalake::datafusion::prelude::SessionContext;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    fn task(id: &str, status: &str, created: &str, due: &str, completed: Option<&str>) -> Task {
        Task {
            task_id: id.into(),
            enrollment_id: Some(format!("e-{id}")),
            playbook: Some("save".into()),
            account_id: "a1".into(),
            title: "call".into(),
            description: None,
            assignee: Some("csm1".into()),
            assignee_email: None,
            team: None,
            priority: "P2".into(),
            created_on: day(created),
            due_date: day(due),
            status: status.into(),
            completed_at: completed.map(at),
            completed_by: None,
            crm_task_id: None,
        }
    }

    /// The Rust rule and the SQL rule give every task and alert the same status on every day.
    #[tokio::test]
    async fn rust_and_sql_agree_on_the_state_of_each_day() {
        let tasks = vec![
            task(
                "t1",
                "completed",
                "2026-03-01",
                "2026-03-05",
                Some("2026-03-03T23:59:59Z"),
            ),
            task(
                "t2",
                "completed",
                "2026-03-01",
                "2026-03-05",
                Some("2026-03-04T00:00:00Z"),
            ),
            task("t3", "cancelled", "2026-03-01", "2026-03-02", None),
            task("t4", "overdue", "2026-03-02", "2026-03-03", None),
            task("t5", "open", "2026-03-04", "2026-03-10", None),
            task("t6", "cancelled", "2026-03-01", "2026-03-09", None),
        ];
        // t3's enrolment ended on the 4th; t6's is unknown (cancelled whenever that was)
        let ended = |id: &str| (id == "e-t3").then(|| day("2026-03-04"));
        let alert = |id: &str, status: &str, raised: &str, ack: Option<&str>| Alert {
            alert_id: id.into(),
            enrollment_id: Some(format!("e-{id}")),
            playbook: None,
            account_id: "a1".into(),
            as_of_date: day(raised),
            priority: "P1".into(),
            title: "t".into(),
            message: None,
            recipients: String::new(),
            status: status.into(),
            acknowledged_at: ack.map(at),
            acknowledged_by: None,
            notified_count: 0,
            last_notified_on: None,
        };
        let alerts = vec![
            alert("x1", "acknowledged", "2026-03-01", Some("2026-03-02T08:00:00Z")),
            alert("x2", "resolved", "2026-03-02", None),
            alert("t3", "resolved", "2026-03-01", None),
            alert("x3", "open", "2026-03-05", None),
        ];
        let ctx = SessionContext::new();
        ctx.sql("CREATE SCHEMA actions").await.unwrap();
        let run_ids = "r".to_string();
        ctx.register_batch("actions.tasks", Task::batch(&tasks, &run_ids).unwrap())
            .unwrap();
        ctx.register_batch("actions.alerts", Alert::batch(&alerts, &run_ids).unwrap())
            .unwrap();
        let e = Enrolment {
            enrollment_id: "e-t3".into(),
            playbook: "save".into(),
            playbook_version: 1,
            category: None,
            dedupe_group: None,
            account_id: "a1".into(),
            enrolled_on: day("2026-03-01"),
            status: "exited".into(),
            steps_done: 1,
            steps_total: 1,
            last_step_on: None,
            ended_on: ended("e-t3"),
            end_reason: None,
            trigger_reason: "test".into(),
            mrr_at_enrolment: None,
            risk_at_enrolment: None,
            health_at_enrolment: None,
            renewal_date: None,
        };
        let runs = Enrolment::batch(&[e], day("2026-03-05"), "r").unwrap();
        ctx.register_batch("actions.playbook_runs", runs).unwrap();

        let mut d = day("2026-02-28");
        while d <= day("2026-03-12") {
            let expected: Vec<String> = tasks
                .iter()
                .filter_map(|t| {
                    let s = t.status_on(d, ended(t.enrollment_id.as_deref().unwrap()))?;
                    Some(format!("{}={s}", t.task_id))
                })
                .collect();
            let q = format!(
                "SELECT task_id, status FROM {} t ORDER BY task_id",
                tasks_sql(d, true)
            );
            let b = sql(&ctx, &q).await.unwrap();
            let got: Vec<String> = b
                .iter()
                .flat_map(|b| {
                    let (id, s) = (strings(b, "task_id").unwrap(), strings(b, "status").unwrap());
                    id.into_iter()
                        .zip(s)
                        .map(|(i, s)| format!("{}={}", i.unwrap(), s.unwrap()))
                })
                .collect();
            assert_eq!(got, expected, "tasks on {d}");

            let mut expected: Vec<String> = alerts
                .iter()
                .filter_map(|a| {
                    let s = a.status_on(d, ended(a.enrollment_id.as_deref().unwrap()))?;
                    Some(format!("{}={s}", a.alert_id))
                })
                .collect();
            expected.sort();
            let q = format!(
                "SELECT alert_id, status FROM {} a ORDER BY alert_id",
                alerts_sql(d, true)
            );
            let b = sql(&ctx, &q).await.unwrap();
            let got: Vec<String> = b
                .iter()
                .flat_map(|b| {
                    let (id, s) = (strings(b, "alert_id").unwrap(), strings(b, "status").unwrap());
                    id.into_iter()
                        .zip(s)
                        .map(|(i, s)| format!("{}={}", i.unwrap(), s.unwrap()))
                })
                .collect();
            assert_eq!(got, expected, "alerts on {d}");
            d += chrono::Duration::days(1);
        }
        // the cases the rule is for
        let on = |t: &Task, d: &str| t.status_on(day(d), ended(t.enrollment_id.as_deref().unwrap()));
        assert_eq!(on(&tasks[0], "2026-03-03"), Some("completed"));
        assert_eq!(
            on(&tasks[1], "2026-03-03"),
            Some("open"),
            "completed a microsecond later"
        );
        assert_eq!(
            on(&tasks[2], "2026-03-03"),
            Some("overdue"),
            "cancelled only on the 4th"
        );
        assert_eq!(on(&tasks[2], "2026-03-04"), Some("cancelled"));
        assert_eq!(on(&tasks[4], "2026-03-03"), None);
        assert_eq!(alerts[0].status_on(day("2026-03-01"), None), Some("open"));
        assert_eq!(alerts[0].status_on(day("2026-03-02"), None), Some("acknowledged"));
    }
}
