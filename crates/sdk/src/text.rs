//! Text shown to people: the one way the workspace shortens it (error excerpts, the
//! command line's table cells, the console's columns).

use std::borrow::Cow;

/// `text` cut to at most `max` characters (not bytes, so never inside a character),
/// ending with `…` when cut.
///
/// ```
/// use thulium::text::shorten;
///
/// assert_eq!(shorten("short", 10), "short");
/// assert_eq!(shorten("żółw-żółw", 5), "żółw…");
/// ```
pub fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let mut kept: String = text.chars().take(max.saturating_sub(1)).collect();
            kept.push('…');
            Cow::Owned(kept)
        }
    }
}
