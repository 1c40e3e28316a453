//! Model fitting speed and quality per family on a synthetic churn table: `CSLAKE_BENCH_ROWS`
//! rows (default 50,000) × `CSLAKE_BENCH_FEATURES` features (default 40), split 60/20/20 into
//! train, validation (early stopping) and test rows. Churn depends on two thresholds that only
//! matter together, one linear effect and noise, so the table also shows what each family can
//! learn against the true probabilities. Prints one line per family: fit seconds, trees or
//! epochs, test ROC AUC. `CSLAKE_BENCH_BUDGET` overrides the trees' budget.
//!
//! `cargo bench -p cslake-benches --bench models`. Target: gradient-boosted trees under 10 s.
#![allow(clippy::print_stderr)] // a benchmark reports on stderr

use std::time::Instant;

use cslake_models::{Gbdt, GbdtConfig, LogisticConfig, LogisticRegression, Metrics, Mlp, MlpConfig};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (n, d) = (
        env("CSLAKE_BENCH_ROWS", 50_000usize),
        env("CSLAKE_BENCH_FEATURES", 40usize),
    );
    let mut seed = 17u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut x: Vec<f32> = Vec::with_capacity(n * d);
    let mut y: Vec<f32> = Vec::with_capacity(n);
    let mut truth: Vec<f64> = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..d).map(|_| next()).collect();
        // low seat use AND many open tickets, plus a linear pull of feature 2
        let logit = -3.0 + 3.0 * f64::from(u8::from(row[0] < 0.3 && row[1] > 0.6)) + 1.5 * row[2];
        let p = 1.0 / (1.0 + (-logit).exp());
        y.push(if next() < p { 1.0 } else { 0.0 });
        truth.push(p);
        x.extend(row.iter().map(|v| *v as f32));
    }
    let (a, b) = (n * 6 / 10, n * 8 / 10);
    let train = (&x[..a * d], &y[..a]);
    let valid = (&x[a * d..b * d], &y[a..b]);
    let test = (&x[b * d..], &y[b..]);
    let auc = |z: Vec<f32>| {
        let p: Vec<f64> = z.into_iter().map(f64::from).collect();
        Metrics::compute(&p, test.1, 0.5).roc_auc
    };
    let line = |family: &str, secs: f64, length: String, auc: f64| {
        eprintln!("{family:<26} {secs:>9.2} {length:>14} {auc:>9.3}");
    };
    eprintln!(
        "{n} rows × {d} features ({a} train, {} validation, {} test)",
        b - a,
        n - b
    );
    eprintln!(
        "{:<26} {:>9} {:>14} {:>9}",
        "family", "fit s", "trees/epochs", "ROC AUC"
    );
    let best = Metrics::compute(&truth[b..], test.1, 0.5).roc_auc;
    eprintln!(
        "{:<26} {:>9} {:>14} {best:>9.3}",
        "(the true probabilities)", "", ""
    );

    let t = Instant::now();
    let cfg = LogisticConfig {
        n_features: d,
        ..Default::default()
    };
    let (m, r) = LogisticRegression::fit(&cfg, train.0, train.1, Some(valid)).expect("logistic");
    let secs = t.elapsed().as_secs_f64();
    line(
        "logistic regression",
        secs,
        r.best_epoch.to_string(),
        auc(m.logits(test.0).expect("logits")),
    );

    let t = Instant::now();
    let cfg = GbdtConfig {
        n_features: d,
        budget: env("CSLAKE_BENCH_BUDGET", GbdtConfig::default().budget),
        ..Default::default()
    };
    let (m, r) = Gbdt::fit(&cfg, train.0, train.1, Some(valid)).expect("gbdt");
    let secs = t.elapsed().as_secs_f64();
    line(
        "gradient-boosted trees",
        secs,
        format!("{}/{}", r.best_epoch, r.epochs),
        auc(m.logits(test.0).expect("logits")),
    );

    let t = Instant::now();
    let cfg = MlpConfig {
        n_features: d,
        ..Default::default()
    };
    let (m, r) = Mlp::fit(&cfg, train.0, train.1, Some(valid)).expect("mlp");
    let secs = t.elapsed().as_secs_f64();
    line(
        "mlp",
        secs,
        r.best_epoch.to_string(),
        auc(m.logits(test.0).expect("logits")),
    );
}
