//! `cslake report --deliver`: the report through the `[report] deliver` channels (e-mail with the
//! files attached, a signed webhook with the KPIs and the files, Slack with the KPIs).

use crate::analytics::report::write::ReportOutput;
use crate::{Error, Result, Settings};

/// One delivery of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportDelivery {
    pub channel: String,
    pub sent: bool,
    pub detail: String,
}

/// Sends the written report to every channel of `[report] deliver`: e-mail with the files
/// attached (to `[report] recipients`), webhooks with the KPIs and the files (base64, with their
/// SHA-256), Slack with the KPIs. The idempotency key is the report's date and content, so a
/// receiver can tell a repeated delivery of the same report.
pub async fn deliver(settings: &Settings, r: &ReportOutput) -> Result<Vec<ReportDelivery>> {
    use crate::act::channels::{Delivery, Dispatcher, Outcome};
    use cslake_sinks::email::Attachment;
    let cfg = &settings.file.report;
    if cfg.deliver.is_empty() {
        return Err(Error::Config(
            "--deliver: [report] deliver lists no channels (names of [[actions.channels]])".into(),
        ));
    }
    let dispatcher = Dispatcher::new(&settings.file.actions, &settings.config_dir)?;
    let mut attachments = Vec::new();
    for f in &r.files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let content_type = match ext {
            "pdf" => "application/pdf",
            "html" => "text/html; charset=utf-8",
            "json" => "application/json",
            _ => "application/octet-stream",
        };
        let bytes = std::fs::read(f).map_err(|source| Error::Io {
            path: f.display().to_string(),
            source,
        })?;
        attachments.push(Attachment {
            filename: f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            content_type: content_type.into(),
            bytes,
        });
    }
    let digest = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for a in &attachments {
            h.update(&a.bytes);
        }
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let lines: Vec<String> = r
        .report
        .blocks
        .iter()
        .filter_map(|b| match b {
            cslake_sinks::report::Block::Cards { cards } => Some(
                cards
                    .iter()
                    .map(|c| format!("{}: {} ({})", c.label, c.value, c.note))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    let subject = r.report.title.clone();
    let text = format!(
        "{}\n\n{}\n\nThe full report is attached.",
        r.report.subtitle,
        lines.join("\n")
    );
    let mut out = Vec::new();
    for channel in &cfg.deliver {
        if !dispatcher.has(channel) {
            return Err(Error::Config(format!(
                "[report] deliver: channel `{channel}` is not one of [[actions.channels]]"
            )));
        }
        let email = dispatcher.is_email(channel);
        if email && cfg.recipients.is_empty() {
            return Err(Error::Config(format!(
                "[report] deliver: `{channel}` is an e-mail channel: list the addresses in [report] recipients"
            )));
        }
        let d = Delivery {
            key: format!("report-{}-{digest}-{channel}", r.as_of),
            kind: "report".into(),
            ref_id: format!("report-{}", r.as_of),
            account_id: None,
            channel: channel.clone(),
            to: if email { cfg.recipients.clone() } else { Vec::new() },
            subject: subject.clone(),
            text: text.clone(),
            data: serde_json::json!({"as_of": r.as_of, "kpis": r.kpis, "pages": r.pages}),
            attachments: attachments.clone(),
        };
        let outcome = dispatcher.send(&d).await;
        out.push(match outcome {
            Outcome::Sent { status, .. } => ReportDelivery {
                channel: channel.clone(),
                sent: true,
                detail: status
                    .map(|s| format!("HTTP {s}"))
                    .unwrap_or_else(|| format!("to {}", d.to.join(", "))),
            },
            Outcome::Failed { error, .. } | Outcome::Unauthorized { error } => ReportDelivery {
                channel: channel.clone(),
                sent: false,
                detail: error,
            },
        });
    }
    Ok(out)
}
