//! What `cslake act` reports: per playbook, who entered and why, and the day's counts.

/// What one playbook did (or, in a dry run, would do) today.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlaybookDay {
    pub playbook: String,
    pub version: u32,
    pub matched: usize,
    pub enrolled: usize,
    pub exited: usize,
    pub completed: usize,
    pub steps_run: usize,
    /// Who entered and why (every one in a dry run, the first 20 otherwise).
    pub enrolments: Vec<Firing>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Firing {
    pub account_id: String,
    pub name: String,
    pub reason: String,
    pub steps_today: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeliveryCounts {
    pub sent: usize,
    pub failed: usize,
    pub dead: usize,
    pub already_sent: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CrmReport {
    pub name: String,
    pub records_updated: usize,
    pub fields_sent: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub tasks_created: usize,
    pub tasks_completed_in_crm: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ActReport {
    pub as_of: String,
    pub dry_run: bool,
    pub accounts: usize,
    pub enrolled: usize,
    pub exited: usize,
    pub completed: usize,
    pub cancelled: usize,
    pub active: usize,
    pub tasks_created: usize,
    pub tasks_overdue: usize,
    pub alerts_created: usize,
    pub renotified: usize,
    pub campaign_assignments: usize,
    /// `send_content` steps run today, and those of them with nothing left to send (every item
    /// completed, no recommendation).
    pub content_sends: usize,
    pub content_nothing_to_send: usize,
    pub deliveries: DeliveryCounts,
    pub crm: Vec<CrmReport>,
    pub playbooks: Vec<PlaybookDay>,
    pub warnings: Vec<String>,
}
