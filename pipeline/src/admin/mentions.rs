//! Finding and blanking an erased subject inside text, as two SQL functions the erasure's
//! queries call on every text column: `cslake_mentions(text, own_name)` (does this value mention
//! the subject?) and `cslake_blank(text, own_name)` (the value with every mention replaced by
//! `[erased]`). `own_name` is true for an entity's own `name` column, where the subject's names
//! are not looked for (a namesake there is another person or company).
//!
//! Written as functions rather than SQL `regexp_like`/`strpos` chains because an account with
//! dozens of contacts means dozens of ids, e-mails and names per column: one Aho-Corasick pass
//! per value finds the few values that can hold any of them, and the word-boundary regexes run
//! on those only (the SQL chain cost minutes on a year of events).

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use deltalake::datafusion::prelude::SessionContext;
use regex::Regex;

use crate::{Error, Result};

/// Characters that continue an identifier: an id inside text counts only where none surrounds it
/// (`ACC-000001` is not in `ACC-0000012` nor in its contact `ACC-000001-U001`).
const ID_CHARS: &str = "A-Za-z0-9_-";

/// What the subject is called in text: its ids, e-mails (any case), protected forms and names
/// (any case, as whole words).
pub(crate) struct Mentions {
    /// Every needle, ignoring ASCII case: a value without any cannot mention the subject.
    any: AhoCorasick,
    /// The same without the names, for `own_name` columns.
    any_but_names: Option<AhoCorasick>,
    /// Whether the automata are a complete pre-test: ASCII case folding misses `MÜLLER` for
    /// `Müller`, so with a non-ASCII name or e-mail every value goes to the regexes.
    complete: bool,
    emails: Option<Regex>,
    tokens: Vec<String>,
    ids: Option<Regex>,
    names: Option<Regex>,
}

impl Mentions {
    pub(crate) fn new(
        ids: &[String],
        emails: &[String],
        tokens: &[String],
        names: &[String],
    ) -> Result<Self> {
        let alternation = |v: &[String]| v.iter().map(|s| regex::escape(s)).collect::<Vec<_>>().join("|");
        let build =
            |pattern: String| Regex::new(&pattern).map_err(|e| Error::Job(format!("erasure pattern: {e}")));
        let needles = |with_names: bool| -> Vec<&String> {
            ids.iter()
                .chain(emails)
                .chain(tokens)
                .chain(names.iter().filter(|_| with_names))
                .collect()
        };
        let automaton = |v: Vec<&String>| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(v)
                .map_err(|e| Error::Job(format!("erasure pattern: {e}")))
        };
        let but_names = needles(false);
        let complete = names.iter().chain(emails).all(|s| s.is_ascii());
        Ok(Self {
            complete,
            any: automaton(needles(true))?,
            any_but_names: (!but_names.is_empty())
                .then(|| automaton(but_names))
                .transpose()?,
            emails: (!emails.is_empty())
                .then(|| build(format!("(?i){}", alternation(emails))))
                .transpose()?,
            tokens: tokens.to_vec(),
            ids: (!ids.is_empty())
                .then(|| {
                    build(format!(
                        "(^|[^{ID_CHARS}])({})($|[^{ID_CHARS}])",
                        alternation(ids)
                    ))
                })
                .transpose()?,
            names: (!names.is_empty())
                .then(|| build(format!("(?i)\\b({})\\b", alternation(names))))
                .transpose()?,
        })
    }

    fn may_mention(&self, v: &str, own_name: bool) -> bool {
        if !self.complete {
            return true;
        }
        match (own_name, &self.any_but_names) {
            (false, _) => self.any.is_match(v),
            (true, Some(a)) => a.is_match(v),
            (true, None) => false,
        }
    }

    /// Whether `v` mentions the subject.
    pub(crate) fn mentions(&self, v: &str, own_name: bool) -> bool {
        self.may_mention(v, own_name) && self.blank(v, own_name).is_some()
    }

    /// `v` with every mention replaced by `[erased]` (`None`: it has none).
    pub(crate) fn blank(&self, v: &str, own_name: bool) -> Option<String> {
        if !self.may_mention(v, own_name) {
            return None;
        }
        let mut out: Cow<str> = Cow::Borrowed(v);
        if let Some(re) = &self.emails {
            out = Cow::Owned(re.replace_all(&out, "[erased]").into_owned());
        }
        for t in &self.tokens {
            if out.contains(t.as_str()) {
                out = Cow::Owned(out.replace(t.as_str(), "[erased]"));
            }
        }
        if let Some(re) = &self.ids {
            // twice: two mentions side by side share the character between them
            for _ in 0..2 {
                out = Cow::Owned(re.replace_all(&out, "${1}[erased]${3}").into_owned());
            }
        }
        if let (Some(re), false) = (&self.names, own_name) {
            out = Cow::Owned(re.replace_all(&out, "[erased]").into_owned());
        }
        (out != v).then(|| out.into_owned())
    }

    /// Registers `cslake_mentions` and `cslake_blank` on `ctx`.
    pub(crate) fn register(self, ctx: &SessionContext) {
        let me = Arc::new(self);
        let m = me.clone();
        ctx.register_udf(create_udf(
            "cslake_mentions",
            vec![DataType::Utf8, DataType::Boolean],
            DataType::Boolean,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                let own = own_name(args);
                let (values, n) = text(args)?;
                let out: BooleanArray = (0..n)
                    .map(|i| Some(values.is_valid(i) && m.mentions(values.value(i), own)))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
            }),
        ));
        ctx.register_udf(create_udf(
            "cslake_blank",
            vec![DataType::Utf8, DataType::Boolean],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                let own = own_name(args);
                let (values, n) = text(args)?;
                let out: StringArray = (0..n)
                    .map(|i| {
                        values.is_valid(i).then(|| {
                            let v = values.value(i);
                            me.blank(v, own).unwrap_or_else(|| v.to_string())
                        })
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
            }),
        ));
    }
}

fn own_name(args: &[ColumnarValue]) -> bool {
    matches!(
        args.get(1),
        Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
    )
}

/// The first argument as a string array, and its length.
fn text(args: &[ColumnarValue]) -> deltalake::datafusion::error::Result<(StringArray, usize)> {
    let array = match &args[0] {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array()?,
    };
    let n = array.len();
    Ok((array.as_string::<i32>().clone(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_whole_ids_any_case_e_mails_and_names_as_words() {
        let m = Mentions::new(
            &["ACC-000001".into(), "ACC-000001-U001".into()],
            &["ann@acme.example".into()],
            &[],
            &["Ann Lee".into()],
        )
        .unwrap();
        assert_eq!(
            m.blank(
                "Call ANN LEE (Ann@Acme.example) re ACC-000001,ACC-000001-U001",
                false
            )
            .as_deref(),
            Some("Call [erased] ([erased]) re [erased],[erased]")
        );
        assert!(
            !m.mentions("ACC-0000012 and Joann Leeds", false),
            "not as parts of words"
        );
        assert!(m.mentions("ann lee", false));
        assert!(!m.mentions("Ann Lee", true), "a namesake's own name column");
        assert!(m.mentions("ACC-000001", true), "ids are the subject's anywhere");
        assert_eq!(m.blank("nothing here", false), None);
        let m = Mentions::new(&[], &[], &[], &["Jürgen Müller".into()]).unwrap();
        assert_eq!(
            m.blank("Ask JÜRGEN MÜLLER", false).as_deref(),
            Some("Ask [erased]")
        );
    }
}
