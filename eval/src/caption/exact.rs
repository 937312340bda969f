//! Caption exact match: the share of candidates equal to one of their references.

use super::item::CaptionItem;

/// Lower case, surrounding whitespace and a final full stop removed, inner whitespace runs
/// collapsed to one space.
pub fn normalize_caption(text: &str) -> String {
    let lower = text.trim().to_lowercase();
    let trimmed = lower.trim_end_matches('.').trim_end();
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Fraction (0–1) of items whose candidate equals one of its references after
/// [`normalize_caption`]; 0 for no items.
pub fn exact_match(items: &[CaptionItem]) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    let hits = items
        .iter()
        .filter(|item| {
            let c = normalize_caption(&item.candidate);
            item.references.iter().any(|r| normalize_caption(r) == c)
        })
        .count();
    hits as f64 / items.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageId;

    fn item(c: &str, refs: &[&str]) -> CaptionItem {
        CaptionItem {
            image_id: ImageId::Int(0),
            candidate: c.into(),
            references: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn counts_equal_captions_up_to_case_spacing_and_final_stop() {
        let items = [
            item("A red circle.", &["a red  circle", "x"]),
            item("a red circle", &["a blue circle"]),
            item("  a Blue square ", &["a blue square."]),
            item("a red", &["a red circle"]),
        ];
        assert_eq!(exact_match(&items), 0.5);
        assert_eq!(exact_match(&[]), 0.0);
    }
}
