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

/// `text` with every character that would hide or disguise text shown as
/// `\u{…}`: control characters but tab, line feed and carriage return (NUL and ESC
/// among them), and the bidirectional controls that reorder what follows them (a
/// right-to-left override makes `DETAERC_TEKCIT` read `TICKET_CREATED`). What is shown
/// is then what was received, and the text fits any store that refuses NUL.
///
/// ```
/// use thulium::text::visible;
///
/// assert_eq!(visible("plain żółw\n"), "plain żółw\n");
/// assert_eq!(visible("bad\0body\u{1b}[31m"), "bad\\u{0}body\\u{1b}[31m");
/// assert_eq!(visible("\u{202e}DETAERC"), "\\u{202e}DETAERC");
/// ```
pub fn visible(text: &str) -> Cow<'_, str> {
    let hidden = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}
