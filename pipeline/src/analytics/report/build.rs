//! Builds the executive report from the tables a BI user reads: KPI cards, revenue at risk and
//! pipeline by segment, the risk × ARR heat map, trends, benchmarks, the accounts to act on, the
//! team. Long functions here are page layouts, read top to bottom.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use cslake_sinks::report::chart::{Chart, NumFmt, Series};
use cslake_sinks::report::{Block, Card, Column, Report, Table, Tone, money, percent};
use deltalake::datafusion::prelude::SessionContext;

use crate::analytics::report::write::ReportOutput;
use crate::lake::query::{has_table, text_rows};
use crate::{Error, Lake, Result, Settings};

/// Rows of a query as maps of column → text (nulls absent).
async fn rows(ctx: &SessionContext, q: &str) -> Result<Vec<BTreeMap<String, String>>> {
    Ok(text_rows(ctx, q)
        .await?
        .into_iter()
        .map(|row| row.into_iter().filter_map(|(n, v)| Some((n, v?))).collect())
        .collect())
}

fn num(r: &BTreeMap<String, String>, k: &str) -> f64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn text(r: &BTreeMap<String, String>, k: &str) -> String {
    r.get(k).cloned().unwrap_or_default()
}

fn pts(v: f64) -> String {
    if v.is_finite() {
        format!("{:+.1} pts", v * 100.0)
    } else {
        "–".into()
    }
}

/// An estimate with its 95% interval, `+0.42 [+0.10, +0.74]` (the estimate alone without one).
fn interval(v: f64, lo: f64, hi: f64) -> String {
    match (v.is_finite(), lo.is_finite() && hi.is_finite()) {
        (false, _) => "–".into(),
        (true, false) => format!("{v:+.2}"),
        (true, true) => format!("{v:+.2} [{lo:+.2}, {hi:+.2}]"),
    }
}

fn opt(v: f64, f: impl Fn(f64) -> String) -> String {
    if v.is_finite() { f(v) } else { "–".into() }
}

/// The ARR bands of the heat map: round numbers spanning the accounts' ARR.
fn arr_bands(arrs: &[f64]) -> Vec<(f64, f64, String)> {
    let edges = [
        0.0,
        1e3,
        5e3,
        1e4,
        2.5e4,
        5e4,
        1e5,
        2.5e5,
        5e5,
        1e6,
        5e6,
        f64::INFINITY,
    ];
    let mut v: Vec<f64> = arrs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return vec![(0.0, f64::INFINITY, "all".into())];
    }
    // quartiles snapped to the nearest round edge
    let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    let mut cuts: Vec<f64> = [0.25, 0.5, 0.75]
        .iter()
        .map(|p| {
            let x = q(*p);
            *edges
                .iter()
                .filter(|e| e.is_finite() && **e > 0.0)
                .min_by(|a, b| (*a - x).abs().total_cmp(&(*b - x).abs()))
                .unwrap_or(&1e4)
        })
        .collect();
    cuts.dedup();
    let mut bounds = vec![0.0];
    bounds.extend(cuts);
    bounds.push(f64::INFINITY);
    let label = |x: f64| money(x, "$").replace(".0K", "K");
    bounds
        .windows(2)
        .map(|w| {
            let name = if w[0] == 0.0 {
                format!("< {}", label(w[1]))
            } else if w[1].is_infinite() {
                format!("{}+", label(w[0]))
            } else {
                format!("{}–{}", label(w[0]), label(w[1]))
            };
            (w[0], w[1], name)
        })
        .collect()
}

/// Builds the report for `as_of` (reads only).
pub async fn build(lake: &Lake, settings: &Settings, as_of: NaiveDate) -> Result<ReportOutput> {
    let ctx = lake.session().await?;
    let cfg = &settings.file.report;
    let cur = cfg.currency.clone().unwrap_or_else(|| "$".into());
    let m = |v: f64| money(v, &cur);
    let d = format!("DATE '{as_of}'");
    if !has_table(&ctx, "analytics.financial_impact") {
        return Err(Error::Job(format!(
            "no analytics tables yet: run `cslake analytics --as-of {as_of}` (or `cslake run`) first"
        )));
    }
    let fi = rows(
        &ctx,
        &format!("SELECT * FROM analytics.financial_impact WHERE as_of_date = {d}"),
    )
    .await?;
    let Some(all) = fi.iter().find(|r| text(r, "dimension") == "all").cloned() else {
        return Err(Error::Job(format!(
            "analytics.financial_impact has no rows for {as_of}: run `cslake analytics --as-of {as_of}` first"
        )));
    };
    let bench = if has_table(&ctx, "analytics.benchmarks") {
        rows(
            &ctx,
            &format!("SELECT * FROM analytics.benchmarks WHERE as_of_date = {d}"),
        )
        .await?
    } else {
        Vec::new()
    };
    let b_all = |kpi: &str| {
        bench
            .iter()
            .find(|r| text(r, "dimension") == "all" && text(r, "kpi") == kpi)
            .cloned()
            .unwrap_or_default()
    };
    // CSMs by name where core.csms has them: readers know people, not ids
    let (csm_name, csms) = if has_table(&ctx, "core.csms") {
        ("c.name", "LEFT JOIN core.csms c ON c.csm_id = a.csm_id")
    } else {
        ("NULL", "")
    };
    let risk_rows = rows(
        &ctx,
        &format!(
            "SELECT r.account_id, COALESCE(a.name, r.account_id) AS name, COALESCE(a.segment, 'unknown') AS segment, \
             COALESCE({csm_name}, a.csm_id, 'unassigned') AS csm, r.risk_score, r.risk_band, r.churn_probability, \
             COALESCE(m.mrr, 0) AS mrr, r.top_factors[1]['reason'] AS reason \
             FROM scores.risk_scores r LEFT JOIN core.accounts a ON a.account_id = r.account_id {csms} \
             LEFT JOIN ({mrr}) m ON m.account_id = r.account_id WHERE r.as_of_date = {d}",
            mrr = if has_table(&ctx, "features.subscription") {
                format!("SELECT account_id, mrr FROM features.subscription WHERE as_of_date = {d}")
            } else {
                "SELECT account_id, mrr FROM core.accounts".into()
            }
        ),
    )
    .await?;

    // KPI cards
    let mut cards = Vec::new();
    let mut kpis = BTreeMap::new();
    let mut card = |key: &str, label: &str, value: String, raw: f64, note: String, tone: Tone| {
        kpis.insert(
            key.to_string(),
            serde_json::json!({"label": label, "value": value, "raw": raw.is_finite().then_some(raw)}),
        );
        cards.push(Card {
            key: key.into(),
            label: label.into(),
            value,
            raw: raw.is_finite().then_some(raw),
            note,
            tone,
        });
    };
    let mrr = num(&all, "mrr");
    card(
        "arr",
        "ARR",
        m(mrr * 12.0),
        mrr * 12.0,
        format!("{} scored accounts", text(&all, "accounts")),
        Tone::Neutral,
    );
    let rar = num(&all, "revenue_at_risk_annual");
    let share = b_all("revenue_at_risk_share");
    let ch = num(&share, "change_30d");
    card(
        "revenue_at_risk_annual",
        "Revenue at risk / yr",
        m(rar),
        rar,
        if ch.is_finite() {
            format!(
                "{} of MRR, {} in 30 days",
                percent(num(&share, "kpi_value")),
                pts(ch)
            )
        } else {
            format!("{} of MRR (MRR × churn probability)", percent(rar / (mrr * 12.0)))
        },
        if ch > 0.0 { Tone::Bad } else { Tone::Neutral },
    );
    let pipe = num(&all, "expansion_pipeline_mrr") * 12.0;
    card(
        "expansion_pipeline_annual",
        "Expansion pipeline / yr",
        m(pipe),
        pipe,
        "probability × MRR uplift of open opportunities, × 12".into(),
        Tone::Good,
    );
    let high: Vec<&BTreeMap<String, String>> = risk_rows
        .iter()
        .filter(|r| matches!(text(r, "risk_band").as_str(), "high" | "critical"))
        .collect();
    let high_mrr: f64 = high.iter().map(|r| num(r, "mrr")).sum();
    card(
        "high_risk_accounts",
        "High or critical risk",
        format!("{}", high.len()),
        high.len() as f64,
        format!(
            "{} of accounts, {} ARR",
            percent(high.len() as f64 / risk_rows.len().max(1) as f64),
            m(high_mrr * 12.0)
        ),
        if high.is_empty() { Tone::Good } else { Tone::Bad },
    );
    for (key, label) in [("grr_12m", "GRR, 12 months"), ("nrr_12m", "NRR, 12 months")] {
        let v = num(&all, key);
        let b = b_all(key);
        let ind = num(&b, "industry_median");
        let note = if ind.is_finite() {
            format!("industry median {} ({})", percent(ind), text(&b, "industry_band"))
        } else {
            "no subscription history a year back".into()
        };
        let tone = if !v.is_finite() || !ind.is_finite() {
            Tone::Neutral
        } else if v >= ind {
            Tone::Good
        } else {
            Tone::Bad
        };
        card(key, label, percent(v), v, note, tone);
    }
    let logo = num(&all, "logo_churn_12m");
    card(
        "logo_churn_12m",
        "Logo churn, 12 months",
        percent(logo),
        logo,
        format!(
            "of {} accounts paying a year ago",
            opt(num(&all, "cohort_accounts"), |v| format!("{v:.0}"))
        ),
        Tone::Neutral,
    );
    let roi = num(&all, "intervention_roi_mrr");
    card(
        "intervention_roi_mrr",
        "Intervention ROI / month",
        opt(roi, m),
        roi,
        if roi.is_finite() {
            format!(
                "retention lift {} on {} treated vs {} control",
                pts(num(&all, "retention_lift")),
                text(&all, "treated_accounts"),
                text(&all, "control_accounts")
            )
        } else {
            "no campaign with a control group yet".into()
        },
        if roi > 0.0 {
            Tone::Good
        } else if roi < 0.0 {
            Tone::Bad
        } else {
            Tone::Neutral
        },
    );

    let mut blocks = vec![Block::Cards { cards }];

    // revenue impact by segment
    let segs: Vec<&BTreeMap<String, String>> =
        fi.iter().filter(|r| text(r, "dimension") == "segment").collect();
    blocks.push(Block::Chart {
        title: "Revenue at risk and expansion pipeline by segment (annualised)".into(),
        description: format!(
            "Revenue at risk is MRR × churn probability × 12; the pipeline is the expected MRR of open opportunities × 12. Total at risk {}, pipeline {}.",
            m(rar),
            m(pipe)
        ),
        chart: Chart::Bars {
            categories: segs.iter().map(|r| text(r, "value")).collect(),
            series: vec![
                Series {
                    name: "Revenue at risk".into(),
                    values: segs.iter().map(|r| num(r, "revenue_at_risk_annual")).collect(),
                },
                Series {
                    name: "Expansion pipeline".into(),
                    values: segs.iter().map(|r| num(r, "expansion_pipeline_mrr") * 12.0).collect(),
                },
            ],
            format: NumFmt::Money(cur.clone()),
        },
        height: 170.0,
    });

    // risk heat map: risk band × ARR band
    let bands_order = ["critical", "high", "medium", "low"];
    let present: Vec<&str> = bands_order
        .iter()
        .copied()
        .filter(|b| risk_rows.iter().any(|r| text(r, "risk_band") == *b))
        .collect();
    let arr_of: Vec<f64> = risk_rows.iter().map(|r| num(r, "mrr") * 12.0).collect();
    let cols = arr_bands(&arr_of);
    let mut values = vec![vec![0.0; cols.len()]; present.len()];
    let mut counts = vec![vec![0usize; cols.len()]; present.len()];
    for (r, arr) in risk_rows.iter().zip(&arr_of) {
        let Some(i) = present.iter().position(|b| *b == text(r, "risk_band")) else {
            continue;
        };
        let j = cols
            .iter()
            .position(|(lo, hi, _)| *arr >= *lo && *arr < *hi)
            .unwrap_or(cols.len() - 1);
        values[i][j] += arr * num(r, "churn_probability");
        counts[i][j] += 1;
    }
    let labels: Vec<Vec<String>> = values
        .iter()
        .zip(&counts)
        .map(|(vr, cr)| {
            vr.iter()
                .zip(cr)
                .map(|(v, c)| {
                    if *c == 0 {
                        "–".into()
                    } else {
                        format!("{c} · {}", m(*v))
                    }
                })
                .collect()
        })
        .collect();
    blocks.push(Block::Chart {
        title: "Where the risk is: risk band × ARR band".into(),
        description: "Each cell: accounts and their annualised revenue at risk; darker cells hold more revenue at risk.".into(),
        chart: Chart::Heatmap {
            rows: present.iter().map(|s| s.to_string()).collect(),
            cols: cols.iter().map(|c| c.2.clone()).collect(),
            values,
            labels,
            row_title: "Risk band".into(),
            col_title: "ARR per account".into(),
        },
        height: 24.0 + 26.0 * present.len().max(1) as f32,
    });

    // trends
    blocks.push(Block::Heading {
        text: "Trends".into(),
        new_page: true,
    });
    let since = as_of - Duration::days(90);
    if has_table(&ctx, "scores.health_scores") {
        let h = rows(
            &ctx,
            &format!(
                "SELECT h.as_of_date AS day, COALESCE(a.segment, 'unknown') AS segment, AVG(h.health_score) AS health \
                 FROM scores.health_scores h LEFT JOIN core.accounts a ON a.account_id = h.account_id \
                 WHERE h.as_of_date > DATE '{since}' AND h.as_of_date <= {d} GROUP BY ROLLUP(h.as_of_date, COALESCE(a.segment, 'unknown')) ORDER BY 1"
            ),
        )
        .await?;
        let days: Vec<String> = {
            let mut v: Vec<String> = h.iter().filter_map(|r| r.get("day").cloned()).collect();
            v.sort();
            v.dedup();
            v
        };
        let mut series: Vec<Series> = Vec::new();
        let mut names = vec!["All accounts".to_string()];
        let mut seg_names: Vec<String> = h.iter().filter_map(|r| r.get("segment").cloned()).collect();
        seg_names.sort();
        seg_names.dedup();
        names.extend(seg_names.iter().take(6).cloned());
        for (k, name) in names.iter().enumerate() {
            let values = days
                .iter()
                .map(|day| {
                    h.iter()
                        .find(|r| {
                            r.get("day") == Some(day)
                                && if k == 0 {
                                    !r.contains_key("segment")
                                } else {
                                    r.get("segment") == Some(name)
                                }
                        })
                        .map(|r| num(r, "health"))
                        .unwrap_or(f64::NAN)
                })
                .collect();
            series.push(Series {
                name: name.clone(),
                values,
            });
        }
        let last = series
            .first()
            .and_then(|s| s.values.last().copied())
            .unwrap_or(f64::NAN);
        blocks.push(Block::Chart {
            title: "Average health score, last 90 days".into(),
            description: format!(
                "Mean health score (0–100) of scored accounts per day, overall and per segment; {} scored day(s), latest {}.",
                days.len(),
                opt(last, |v| format!("{v:.1}"))
            ),
            chart: Chart::Lines {
                x: days,
                series,
                format: NumFmt::Number,
            },
            height: 170.0,
        });
    }
    let hist = rows(
        &ctx,
        &format!(
            "SELECT as_of_date AS day, revenue_at_risk_annual, expansion_pipeline_mrr * 12 AS pipeline FROM analytics.financial_impact \
             WHERE dimension = 'all' AND as_of_date > DATE '{since}' AND as_of_date <= {d} ORDER BY as_of_date"
        ),
    )
    .await?;
    blocks.push(Block::Chart {
        title: "Revenue at risk and pipeline over time (annualised)".into(),
        description: format!(
            "From analytics.financial_impact, one point per day analysed in the last 90 days ({} day(s)).",
            hist.len()
        ),
        chart: Chart::Lines {
            x: hist.iter().map(|r| text(r, "day")).collect(),
            series: vec![
                Series {
                    name: "Revenue at risk".into(),
                    values: hist.iter().map(|r| num(r, "revenue_at_risk_annual")).collect(),
                },
                Series {
                    name: "Expansion pipeline".into(),
                    values: hist.iter().map(|r| num(r, "pipeline")).collect(),
                },
            ],
            format: NumFmt::Money(cur.clone()),
        },
        height: 150.0,
    });

    // benchmarks
    if !bench.is_empty() {
        let label = |k: &str| match k {
            "grr_12m" => "Gross revenue retention (12 m)",
            "nrr_12m" => "Net revenue retention (12 m)",
            "logo_churn_12m" => "Logo churn (12 m)",
            "revenue_at_risk_share" => "Revenue at risk (share of MRR)",
            "high_risk_share" => "High/critical risk accounts (share)",
            "mean_health_score" => "Mean health score",
            _ => "",
        };
        let f = |k: &str, v: f64| {
            if k == "mean_health_score" {
                opt(v, |x| format!("{x:.1}"))
            } else {
                percent(v)
            }
        };
        let fd = |k: &str, v: f64| {
            if k == "mean_health_score" {
                opt(v, |x| format!("{x:+.1}"))
            } else {
                pts(v)
            }
        };
        let mut table_rows = Vec::new();
        let mut sources = Vec::new();
        for (kpi, _) in crate::analytics::benchmarks::KPIS {
            let r = b_all(kpi);
            if r.is_empty() {
                continue;
            }
            let best = bench
                .iter()
                .filter(|x| text(x, "kpi") == *kpi && text(x, "peer_rank") == "1")
                .map(|x| text(x, "value"))
                .collect::<Vec<_>>()
                .join(", ");
            table_rows.push(vec![
                label(kpi).to_string(),
                f(kpi, num(&r, "kpi_value")),
                fd(kpi, num(&r, "change_30d")),
                fd(kpi, num(&r, "change_90d")),
                f(kpi, num(&r, "peer_median")),
                best,
                f(kpi, num(&r, "industry_median")),
                text(&r, "industry_band"),
            ]);
            if let Some(s) = r.get("industry_source") {
                let s = format!(
                    "{s}{}",
                    r.get("industry_url")
                        .map(|u| format!(", {u}"))
                        .unwrap_or_default()
                );
                if !sources.contains(&s) {
                    sources.push(s);
                }
            }
        }
        blocks.push(Block::Table(Table {
            key: "benchmarks".into(),
            title: "Benchmarks: own history, segments, industry".into(),
            columns: vec![
                Column::text("KPI", 3.2),
                Column::num("Now", 1.1),
                Column::num("30 days", 1.1),
                Column::num("90 days", 1.1),
                Column::num("Segment median", 1.4),
                Column::text("Best segment", 1.5),
                Column::num("Industry median", 1.4),
                Column::text("Industry band (ACV)", 1.7),
            ],
            rows: table_rows,
        }));
        let src = if sources.is_empty() {
            "Industry benchmarks: none match these KPIs.".to_string()
        } else {
            format!("Industry benchmarks: {}.", sources.join("; "))
        };
        blocks.push(Block::Text {
            text: format!(
                "30/90 days: change against the same KPI computed for that earlier date. Segment median: median over the segments. {src} Replace the table with [analytics] industry_benchmarks."
            ),
            small: true,
        });
    }
    if !segs.is_empty() {
        blocks.push(Block::Table(Table {
            key: "segments".into(),
            title: "By segment".into(),
            columns: vec![
                Column::text("Segment", 2.0),
                Column::num("Accounts", 1.0),
                Column::num("ARR", 1.2),
                Column::num("At risk / yr", 1.3),
                Column::num("Pipeline / yr", 1.3),
                Column::num("GRR 12 m", 1.0),
                Column::num("NRR 12 m", 1.0),
                Column::num("Logo churn", 1.0),
            ],
            rows: segs
                .iter()
                .map(|r| {
                    vec![
                        text(r, "value"),
                        text(r, "accounts"),
                        m(num(r, "mrr") * 12.0),
                        m(num(r, "revenue_at_risk_annual")),
                        m(num(r, "expansion_pipeline_mrr") * 12.0),
                        percent(num(r, "grr_12m")),
                        percent(num(r, "nrr_12m")),
                        percent(num(r, "logo_churn_12m")),
                    ]
                })
                .collect(),
        }));
    }

    // accounts
    blocks.push(Block::Heading {
        text: "Accounts to act on".into(),
        new_page: true,
    });
    let mut top: Vec<&BTreeMap<String, String>> = risk_rows.iter().collect();
    top.sort_by(|a, b| {
        (num(b, "mrr") * num(b, "churn_probability"))
            .total_cmp(&(num(a, "mrr") * num(a, "churn_probability")))
    });
    let n_top = cfg.top_accounts.unwrap_or(15);
    let (chosen, critical_left) = to_act_on(&top, n_top);
    let critical = top.iter().filter(|r| text(r, "risk_band") == "critical").count();
    blocks.push(Block::Table(Table {
        key: "top_at_risk".into(),
        title: if critical > 0 {
            format!("Top {n_top} accounts by revenue at risk, and every critical one")
        } else {
            format!("Top {n_top} accounts by revenue at risk")
        },
        columns: vec![
            Column::text("Account", 2.2),
            Column::text("Segment", 1.1),
            Column::text("CSM", 1.2),
            Column::num("MRR", 0.9),
            Column::num("Risk", 0.6),
            Column::num("At risk / yr", 1.0),
            Column::text("Main reason", 4.3),
        ],
        rows: chosen
            .iter()
            .map(|r| {
                vec![
                    text(r, "name"),
                    text(r, "segment"),
                    text(r, "csm"),
                    m(num(r, "mrr")),
                    text(r, "risk_score"),
                    m(num(r, "mrr") * num(r, "churn_probability") * 12.0),
                    text(r, "reason"),
                ]
            })
            .collect(),
    }));
    if critical_left > 0 {
        blocks.push(Block::Text {
            text: format!(
                "{critical_left} more critical accounts are not listed: `cslake query \"SELECT * FROM risk_scores WHERE as_of_date = DATE '{as_of}' AND risk_band = 'critical'\"` lists them all."
            ),
            small: true,
        });
    }
    if has_table(&ctx, "scores.opportunities") {
        let opps = rows(
            &ctx,
            &format!(
                "SELECT COALESCE(a.name, o.account_id) AS name, o.kind, o.probability, o.expected_mrr, o.reason \
                 FROM scores.opportunities o LEFT JOIN core.accounts a ON a.account_id = o.account_id \
                 WHERE o.as_of_date = {d} ORDER BY o.expected_mrr DESC, o.opportunity_id LIMIT {n_top}"
            ),
        )
        .await?;
        blocks.push(Block::Table(Table {
            key: "expansion".into(),
            title: format!("Expansion pipeline: top {n_top} opportunities"),
            columns: vec![
                Column::text("Account", 2.2),
                Column::text("Kind", 1.3),
                Column::num("Probability", 1.0),
                Column::num("Expected MRR", 1.1),
                Column::text("Why", 5.6),
            ],
            rows: opps
                .iter()
                .map(|r| {
                    vec![
                        text(r, "name"),
                        text(r, "kind").replace('_', " "),
                        percent(num(r, "probability")),
                        m(num(r, "expected_mrr")),
                        text(r, "reason"),
                    ]
                })
                .collect(),
        }));
    }

    // team
    if has_table(&ctx, "analytics.team_performance") {
        blocks.push(Block::Heading {
            text: "What the team did".into(),
            new_page: true,
        });
        if has_table(&ctx, "analytics.team_summary") {
            let teams = rows(
                &ctx,
                &format!(
                    "SELECT * FROM analytics.team_summary WHERE as_of_date = {d} ORDER BY arr DESC, team"
                ),
            )
            .await?;
            blocks.push(Block::Table(Table {
                key: "teams".into(),
                title: "Teams".into(),
                columns: vec![
                    Column::text("Team", 1.6),
                    Column::num("CSMs", 0.7),
                    Column::num("Accounts", 0.9),
                    Column::num("ARR", 1.0),
                    Column::num("Risk", 0.7),
                    Column::num("Health", 0.8),
                    Column::num("High risk", 0.9),
                    Column::num("Tasks done", 0.9),
                    Column::num("Overdue", 0.8),
                    Column::num("Alerts ack.", 0.9),
                    Column::num("GRR 12 m", 0.9),
                    Column::num("NRR 12 m", 0.9),
                    Column::num("Load", 0.8),
                ],
                rows: teams
                    .iter()
                    .map(|r| {
                        vec![
                            text(r, "team"),
                            text(r, "csms"),
                            text(r, "accounts"),
                            m(num(r, "arr")),
                            opt(num(r, "mean_risk_score"), |v| format!("{v:.0}")),
                            opt(num(r, "mean_health_score"), |v| format!("{v:.0}")),
                            text(r, "high_risk_accounts"),
                            text(r, "tasks_completed"),
                            text(r, "tasks_overdue"),
                            format!("{}/{}", text(r, "alerts_acknowledged"), text(r, "alerts")),
                            percent(num(r, "grr_12m")),
                            percent(num(r, "nrr_12m")),
                            percent(num(r, "load_vs_capacity")),
                        ]
                    })
                    .collect(),
            }));
        }
        let goals = if has_table(&ctx, "analytics.team_goals") {
            rows(
                &ctx,
                &format!(
                    "SELECT csm_id, SUM(CASE WHEN met THEN 1 ELSE 0 END) AS met, COUNT(*) AS goals FROM analytics.team_goals \
                     WHERE as_of_date = {d} GROUP BY csm_id"
                ),
            )
            .await?
        } else {
            Vec::new()
        };
        let team = rows(
            &ctx,
            &format!(
                "SELECT * FROM analytics.team_performance WHERE as_of_date = {d} ORDER BY arr DESC, csm_id"
            ),
        )
        .await?;
        let mut columns = vec![
            Column::text("CSM", 1.8),
            Column::text("Team", 1.1),
            Column::num("Accounts", 0.9),
            Column::num("ARR", 1.0),
            Column::num("Risk", 0.7),
            Column::num("Health", 0.8),
            Column::num("High risk", 0.9),
            Column::num("Tasks done", 0.9),
            Column::num("Overdue", 0.8),
            Column::num("Alerts ack.", 0.9),
            Column::num("GRR 12 m", 0.9),
            Column::num("Load", 0.8),
        ];
        if !goals.is_empty() {
            columns.push(Column::num("Goals met", 0.9));
        }
        blocks.push(Block::Table(Table {
            key: "team".into(),
            title: "Team performance".into(),
            columns,
            rows: team
                .iter()
                .map(|r| {
                    let mut row = vec![
                        r.get("name").cloned().unwrap_or_else(|| text(r, "csm_id")),
                        text(r, "team"),
                        text(r, "accounts"),
                        m(num(r, "arr")),
                        opt(num(r, "mean_risk_score"), |v| format!("{v:.0}")),
                        opt(num(r, "mean_health_score"), |v| format!("{v:.0}")),
                        text(r, "high_risk_accounts"),
                        text(r, "tasks_completed"),
                        text(r, "tasks_overdue"),
                        format!("{}/{}", text(r, "alerts_acknowledged"), text(r, "alerts")),
                        percent(num(r, "grr_12m")),
                        percent(num(r, "load_vs_capacity")),
                    ];
                    if !goals.is_empty() {
                        row.push(
                            goals
                                .iter()
                                .find(|g| g.get("csm_id") == r.get("csm_id"))
                                .map(|g| format!("{}/{}", text(g, "met"), text(g, "goals")))
                                .unwrap_or_else(|| "–".into()),
                        );
                    }
                    row
                })
                .collect(),
        }));
        blocks.push(Block::Text {
            text: "Risk and health: means over the CSM's book. Load: accounts against the CSM's capacity in core.csms. Alerts ack.: acknowledged of all alerts on the book."
                .into(),
            small: true,
        });
    }

    // what the training content changed, by kind
    if has_table(&ctx, "analytics.content_effectiveness") {
        let kinds = rows(
            &ctx,
            &format!(
                "SELECT * FROM analytics.content_effectiveness WHERE as_of_date = {d} AND dimension = 'kind' \
                 ORDER BY people_completed DESC, value"
            ),
        )
        .await?;
        if !kinds.is_empty() {
            blocks.push(Block::Table(Table {
                key: "content".into(),
                title: "What the training content changed".into(),
                columns: vec![
                    Column::text("Kind", 1.4),
                    Column::num("People trained", 1.0),
                    Column::num("Completion", 1.0),
                    Column::num("Accounts measured", 1.1),
                    Column::text("Usage change per seat, 30 days (95%)", 2.6),
                    Column::text("Churn: completers vs others", 2.0),
                ],
                rows: kinds
                    .iter()
                    .map(|r| {
                        vec![
                            text(r, "value").replace('_', " "),
                            text(r, "people_completed"),
                            percent(num(r, "completion_rate")),
                            text(r, "accounts_measured"),
                            interval(
                                num(r, "usage_change_per_seat_30d"),
                                num(r, "usage_change_ci_low"),
                                num(r, "usage_change_ci_high"),
                            ),
                            format!(
                                "{} vs {}",
                                percent(num(r, "completer_churn_rate")),
                                percent(num(r, "other_churn_rate"))
                            ),
                        ]
                    })
                    .collect(),
            }));
            blocks.push(Block::Text {
                text: "Usage change: events per seat of what the content teaches, 30 days after each account's first completion against the 30 days before, minus the same change over the same days of the segment's accounts that did not train. Churn compares accounts that completed with the others: observational, as accounts that train differ. Per item: analytics.content_effectiveness."
                    .into(),
                small: true,
            });
        }
    }

    let title = cfg
        .title
        .clone()
        .unwrap_or_else(|| "Customer success report".into());
    let report = Report {
        title: format!("{title} — {as_of}"),
        subtitle: format!(
            "As of {as_of}: figures from analytics.* and scores.* of the cslake lake; money in {cur}, annualised where marked."
        ),
        footer: format!("cslake · {title} · as of {as_of}"),
        blocks,
    };
    Ok(ReportOutput {
        as_of: as_of.to_string(),
        files: Vec::new(),
        pages: 0,
        layout_problems: Vec::new(),
        kpis,
        report,
        pdf: None,
        html: None,
    })
}

/// The accounts to act on, from `ranked` (by expected loss, largest first): the top `n`, and
/// every critical account besides (a small account at risk 96 is as urgent as a large one at
/// risk 40), up to `3 n` rows in all; also how many critical accounts did not fit.
fn to_act_on<'a>(
    ranked: &[&'a BTreeMap<String, String>],
    n: usize,
) -> (Vec<&'a BTreeMap<String, String>>, usize) {
    let cap = 3 * n.max(1);
    let mut left = 0;
    let mut chosen = Vec::new();
    for (i, r) in ranked.iter().enumerate() {
        let critical = text(r, "risk_band") == "critical";
        if i < n || (critical && chosen.len() < cap) {
            chosen.push(*r);
        } else if critical {
            left += 1;
        }
    }
    (chosen, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_accounts_are_always_among_those_to_act_on() {
        let row = |id: &str, band: &str| -> BTreeMap<String, String> {
            [("name", id), ("risk_band", band)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // ranked by expected loss: big low-risk accounts first, small critical ones last
        let rows: Vec<BTreeMap<String, String>> = (0..10)
            .map(|i| row(&format!("big{i}"), "low"))
            .chain((0..5).map(|i| row(&format!("crit{i}"), "critical")))
            .collect();
        let ranked: Vec<&BTreeMap<String, String>> = rows.iter().collect();
        let names = |v: &[&BTreeMap<String, String>]| v.iter().map(|r| text(r, "name")).collect::<Vec<_>>();
        let (chosen, left) = to_act_on(&ranked, 3);
        assert_eq!(
            names(&chosen),
            [
                "big0", "big1", "big2", "crit0", "crit1", "crit2", "crit3", "crit4"
            ]
        );
        assert_eq!(left, 0);
        // at most 3 n rows in all: the rest is counted, not silently dropped
        let (chosen, left) = to_act_on(&ranked, 2);
        assert_eq!(chosen.len(), 6);
        assert_eq!(left, 1);
    }

    #[test]
    fn arr_bands_are_round_and_cover_everything() {
        let arrs: Vec<f64> = (1..=100).map(|i| i as f64 * 1_000.0).collect();
        let b = arr_bands(&arrs);
        assert_eq!(b.first().unwrap().0, 0.0);
        assert!(b.last().unwrap().1.is_infinite());
        assert!(b.len() >= 3, "{b:?}");
        assert_eq!(b[0].2, "< $25K");
        assert_eq!(arr_bands(&[]).len(), 1);
    }
}
