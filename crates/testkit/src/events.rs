//! Event bodies as Thulium sends them.

/// A `TICKET_CREATED` delivery, form-encoded as Thulium sends it: the vendor's own
/// example with `ticket_id` replaced, so that each id is a distinct event.
pub fn ticket_body(ticket_id: usize) -> String {
    thulium::event::examples::event(
        "TICKET_CREATED",
        &[("ticket_id".into(), ticket_id.to_string())],
    )
    .expect("the vendor's example with another id")
    .to_form()
}

/// The `ticket_id` of a form-encoded body, if it has one.
pub fn ticket_id(body: &str) -> Option<usize> {
    body.split('&')
        .find_map(|pair| pair.strip_prefix("ticket_id="))
        .and_then(|id| id.parse().ok())
}
