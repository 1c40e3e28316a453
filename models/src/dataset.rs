use crate::{Error, Result};

/// A dense, row-major feature matrix with binary labels. Missing values are `NaN`.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    /// `rows × feature_names.len()` values, row-major.
    pub x: Vec<f32>,
    /// One label per row, 0.0 or 1.0 (empty when scoring).
    pub y: Vec<f32>,
    /// Optional: which entity (account) each row describes, as a stable hash. With it the
    /// trainer validates on other accounts than it fits on (see `train_out_of_time`).
    pub groups: Vec<u64>,
}

impl Dataset {
    pub fn new(feature_names: Vec<String>, x: Vec<f32>, y: Vec<f32>) -> Result<Self> {
        let d = feature_names.len();
        if d == 0 {
            return Err(Error::Data("no feature columns".into()));
        }
        if !x.len().is_multiple_of(d) {
            return Err(Error::Data(format!(
                "{} values do not fill rows of {d} features",
                x.len()
            )));
        }
        if !y.is_empty() && y.len() != x.len() / d {
            return Err(Error::Data(format!(
                "{} labels for {} rows",
                y.len(),
                x.len() / d
            )));
        }
        Ok(Self {
            feature_names,
            x,
            y,
            groups: Vec::new(),
        })
    }

    /// Tags every row with its entity's stable hash.
    pub fn with_groups(mut self, groups: Vec<u64>) -> Result<Self> {
        if groups.len() != self.n_rows() {
            return Err(Error::Data(format!(
                "{} groups for {} rows",
                groups.len(),
                self.n_rows()
            )));
        }
        self.groups = groups;
        Ok(self)
    }

    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn n_rows(&self) -> usize {
        self.x.len() / self.n_features().max(1)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.n_features();
        &self.x[i * d..(i + 1) * d]
    }

    pub fn column(&self, j: usize) -> impl Iterator<Item = f32> + '_ {
        let d = self.n_features();
        self.x.iter().skip(j).step_by(d).copied()
    }

    /// The rows whose index satisfies `keep`, in order.
    pub fn select(&self, keep: impl Fn(usize) -> bool) -> Dataset {
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut groups = Vec::new();
        for i in 0..self.n_rows() {
            if keep(i) {
                x.extend_from_slice(self.row(i));
                if !self.y.is_empty() {
                    y.push(self.y[i]);
                }
                if !self.groups.is_empty() {
                    groups.push(self.groups[i]);
                }
            }
        }
        Dataset {
            feature_names: self.feature_names.clone(),
            x,
            y,
            groups,
        }
    }

    pub fn positives(&self) -> usize {
        self.y.iter().filter(|v| **v > 0.5).count()
    }
}
