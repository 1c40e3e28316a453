//! Free text as words that can be an id or an e-mail: how ingest finds erased subjects inside a
//! quarantined record, a custom field or a ticket's subject.

/// The words of `text` that can hold an id or an e-mail, with their byte ranges.
pub(crate) fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let word = |c: char| c.is_alphanumeric() || "@._+-".contains(c);
    let mut start = None;
    text.char_indices()
        .chain(std::iter::once((text.len(), ' ')))
        .filter_map(move |(i, c)| match (word(c), start) {
            (true, None) => {
                start = Some(i);
                None
            }
            (false, Some(s)) => {
                start = None;
                // a sentence's full stop or a dash is not part of the word
                let w = text[s..i].trim_end_matches(['.', '-']);
                let lead = w.len() - w.trim_start_matches(['.', '-']).len();
                (s + lead < s + w.len()).then_some((s + lead, s + w.len()))
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn free_text_splits_into_the_words_an_id_or_an_e_mail_can_be() {
        let text = "Call ann@x.io re ACC-000001-U003, then ACC-000001. -- ok";
        let found: Vec<&str> = words(text).map(|(a, b)| &text[a..b]).collect();
        assert_eq!(
            found,
            [
                "Call",
                "ann@x.io",
                "re",
                "ACC-000001-U003",
                "then",
                "ACC-000001",
                "ok"
            ]
        );
        assert_eq!(words("").count(), 0);
        assert_eq!(words("é—ü").map(|(a, b)| b - a).collect::<Vec<_>>(), [2, 2]);
    }
}
