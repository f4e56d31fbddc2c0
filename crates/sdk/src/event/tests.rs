use proptest::prelude::*;
use serde_json::json;

use super::*;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const JSON: Option<&str> = Some("application/json");

fn date(text: &str) -> EventDate {
    text.parse().unwrap()
}

fn vendor_chat_created() -> Event {
    Event::ChatConversationCreated(ChatConversationCreated {
        conversation_id: "83a3f676-e831-47d0-bba7-beda6c0bde88".parse().unwrap(),
        client_name: Some("John Smith".into()),
        client_email: Some("john.smith@foo.bar".into()),
        date: date("2016-04-20 09:46:24"),
        chat_queue_id: 1,
        extra: Map::new(),
    })
}

#[test]
fn the_vendors_examples_parse_in_both_encodings() {
    let form = "action=CHAT_CONVERSATION_CREATED&conversation_id=83a3f676-e831-47d0-bba7-beda6c0bde88\
                &client_name=John+Smith&client_email=john.smith%40foo.bar&date=2016-04-20+09%3A46%3A24&chat_queue_id=1";
    assert_eq!(
        Event::parse(form.as_bytes(), FORM).unwrap(),
        vendor_chat_created()
    );
    let json = r#"{"action":"CHAT_CONVERSATION_CREATED","conversation_id":"83a3f676-e831-47d0-bba7-beda6c0bde88",
                   "client_name":"John Smith","client_email":"john.smith@foo.bar","date":"2016-04-20 09:46:24","chat_queue_id":1}"#;
    assert_eq!(
        Event::parse(json.as_bytes(), JSON).unwrap(),
        vendor_chat_created()
    );
    // Numbers as strings in JSON are accepted too.
    let json_strings = json.replace("\"chat_queue_id\":1", "\"chat_queue_id\":\"1\"");
    assert_eq!(
        Event::parse(json_strings.as_bytes(), JSON).unwrap(),
        vendor_chat_created()
    );

    let ringing = "action=AGENT_RINGING&connection_id=1416225570.341&queue_id=155&agent_login=jkowalski\
                   &source_number=523993855&destination_number=162&date=2014-11-17+12%3A59%3A32";
    let expected = Event::AgentRinging(AgentRinging {
        connection_id: "1416225570.341".into(),
        queue_id: 155,
        agent_login: "jkowalski".into(),
        source_number: Some("523993855".into()),
        destination_number: "162".into(),
        date: date("2014-11-17 12:59:32"),
        extra: Map::new(),
    });
    assert_eq!(Event::parse(ringing.as_bytes(), FORM).unwrap(), expected);
    // A JSON sender may type numbers as numbers, even where the field is a string.
    let ringing_json = json!({"action": "AGENT_RINGING", "connection_id": 1416225570.341, "queue_id": 155,
        "agent_login": "jkowalski", "source_number": 523993855, "destination_number": 162,
        "date": "2014-11-17 12:59:32"});
    assert_eq!(
        Event::from_json(ringing_json.to_string().as_bytes()).unwrap(),
        expected
    );

    let ticket = "action=TICKET_CREATED&ticket_id=12&agent_login=jkowalski&direction=in_behalf_of&date=2014-11-17+12%3A59%3A32&customer_id=154";
    let Event::TicketCreated(t) = Event::parse(ticket.as_bytes(), FORM).unwrap() else {
        panic!()
    };
    assert_eq!(
        (t.ticket_id, t.customer_id, t.direction.as_str()),
        (12, 154, "in_behalf_of")
    );
    assert_eq!(t.agent_login.as_deref(), Some("jkowalski"));
    // `examples`, which the rest of the workspace builds its events from, is this same
    // wire text: the vendor's examples exist once as data, and here as the fixture.
    assert_eq!(
        examples::event("TICKET_CREATED", &[]).unwrap().to_form(),
        ticket
    );
    assert_eq!(
        examples::event("AGENT_RINGING", &[]).unwrap(),
        Event::parse(ringing.as_bytes(), FORM).unwrap()
    );
}

#[test]
fn null_and_empty_mean_absent_for_optional_fields_only() {
    let body =
        b"action=CUSTOMER_CREATED&customer_id=682&company_id=null&date=2026-09-04+12%3A19%3A43";
    let Event::CustomerCreated(c) = Event::parse(body, FORM).unwrap() else {
        panic!()
    };
    assert_eq!((c.customer_id, c.company_id), (682, None));
    let body = b"action=CUSTOMER_CREATED&customer_id=682&company_id=&date=2026-09-04+12%3A19%3A43";
    assert!(matches!(
        Event::parse(body, FORM).unwrap(),
        Event::CustomerCreated(CustomerCreated {
            company_id: None,
            ..
        })
    ));
    let json = br#"{"action":"CUSTOMER_CREATED","customer_id":682,"company_id":null,"date":"2026-09-04 12:19:43"}"#;
    assert!(matches!(
        Event::parse(json, JSON).unwrap(),
        Event::CustomerCreated(CustomerCreated {
            company_id: None,
            ..
        })
    ));

    for body in [
        &b"action=CUSTOMER_CREATED&customer_id=null&date=2026-09-04+12%3A19%3A43"[..],
        b"action=CUSTOMER_CREATED&customer_id=&date=2026-09-04+12%3A19%3A43",
        b"action=CUSTOMER_CREATED&date=2026-09-04+12%3A19%3A43",
    ] {
        let err = Event::parse(body, FORM).unwrap_err();
        assert_eq!(
            err,
            ParseError::MissingField {
                action: Action::CustomerCreated,
                field: "customer_id"
            }
        );
        assert_eq!(
            err.to_string(),
            "CUSTOMER_CREATED: required field `customer_id` is missing or empty"
        );
    }
}

#[test]
fn bad_values_name_the_action_the_field_and_the_problem() {
    let cases: &[(&[u8], &str)] = &[
        (b"action=CUSTOMER_UPDATED&customer_id=abc&date=2026-09-04+12%3A19%3A43",
         "CUSTOMER_UPDATED: field `customer_id` must be an integer, got \"abc\""),
        (b"action=CUSTOMER_UPDATED&customer_id=1&company_id=1.5&date=2026-09-04+12%3A19%3A43",
         "CUSTOMER_UPDATED: field `company_id` must be an integer, got \"1.5\""),
        (b"action=CUSTOMER_UPDATED&customer_id=99999999999999999999&date=2026-09-04+12%3A19%3A43",
         "CUSTOMER_UPDATED: field `customer_id` must be an integer, got \"99999999999999999999\""),
        (b"action=CUSTOMER_UPDATED&customer_id=1&date=2026-13-04+12%3A19%3A43",
         "CUSTOMER_UPDATED: field `date` must be a date as YYYY-MM-DD HH:MM:SS, got \"2026-13-04 12:19:43\""),
        (b"action=CHAT_CONVERSATION_CLOSED&conversation_id=not-a-uuid&date=2026-09-04+12%3A19%3A43&chat_queue_id=1",
         "CHAT_CONVERSATION_CLOSED: field `conversation_id` must be a UUID, got \"not-a-uuid\""),
    ];
    for (body, message) in cases {
        assert_eq!(Event::parse(body, FORM).unwrap_err().to_string(), *message);
    }
    let json = br#"{"action":"TICKET_MESSAGE_RECEIVED","ticket_id":true}"#;
    assert_eq!(
        Event::parse(json, JSON).unwrap_err().to_string(),
        "TICKET_MESSAGE_RECEIVED: field `ticket_id` must be an integer, got true"
    );
}

#[test]
fn malformed_bodies_are_errors_with_a_reason() {
    let cases: &[(&[u8], Option<&str>, &str)] = &[
        (b"", FORM, "the body has no `action` field naming the event"),
        (
            b"action=",
            FORM,
            "the body has no `action` field naming the event (got \"\")",
        ),
        (
            b"action=null",
            FORM,
            "the body has no `action` field naming the event (got \"null\")",
        ),
        (
            br#"{"action":5}"#,
            JSON,
            "the body has no `action` field naming the event (got 5)",
        ),
        (
            b"{\"action\":\"TICKET_CREATED\"",
            JSON,
            "the body is not valid JSON: EOF while parsing an object at line 1 column 26",
        ),
        (
            b"[1,2]",
            JSON,
            "the body is not valid JSON: invalid type: sequence, expected an object",
        ),
        (
            br#"{"a":1,"a":2}"#,
            JSON,
            "the body is not valid JSON: field `a` appears twice",
        ),
        (
            b"action=A&action=B",
            FORM,
            "the body is not valid form data: field `action` appears twice",
        ),
        (
            b"action=%FF%FE",
            FORM,
            "the body is not valid form data: a value is not UTF-8",
        ),
    ];
    for (body, content_type, message) in cases {
        let err = Event::parse(body, *content_type).unwrap_err().to_string();
        assert!(
            err.starts_with(message),
            "{err:?} should start with {message:?}"
        );
    }
}

#[test]
fn content_type_is_optional_and_parameters_are_ignored() {
    let form = vendor_chat_created().to_form();
    let json = vendor_chat_created().to_json();
    for content_type in [None, Some("text/plain"), Some("application/octet-stream")] {
        assert_eq!(
            Event::parse(form.as_bytes(), content_type).unwrap(),
            vendor_chat_created()
        );
        assert_eq!(
            Event::parse(json.as_bytes(), content_type).unwrap(),
            vendor_chat_created()
        );
    }
    let ct = Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8");
    assert_eq!(
        Event::parse(form.as_bytes(), ct).unwrap(),
        vendor_chat_created()
    );
    let ct = Some("application/vnd.thulium+json; charset=utf-8");
    assert_eq!(
        Event::parse(json.as_bytes(), ct).unwrap(),
        vendor_chat_created()
    );
}

#[test]
fn unknown_actions_and_fields_are_kept_as_received() {
    let body = b"action=CALL_ANSWERED&connection_id=1416225570.341&agent_login=jkowalski&note=null";
    let event = Event::parse(body, FORM).unwrap();
    assert_eq!(event.action(), Action::Other("CALL_ANSWERED".into()));
    let Event::Other(other) = &event else {
        panic!()
    };
    assert_eq!(other.action.as_str(), "CALL_ANSWERED");
    assert_eq!(
        Value::Object(other.fields.clone()),
        json!({"connection_id": "1416225570.341", "agent_login": "jkowalski", "note": "null"})
    );
    assert_eq!(event.occurred_at(), None);

    let body = b"action=TICKET_MESSAGE_RECEIVED&ticket_id=12&channel=email";
    let event = Event::parse(body, FORM).unwrap();
    assert_eq!(event.extra().get("channel"), Some(&json!("email")));
    assert_eq!(
        event.to_form(),
        "action=TICKET_MESSAGE_RECEIVED&ticket_id=12&date=null&channel=email"
    );
}

#[test]
fn encodes_as_thulium_sends() {
    assert_eq!(
        vendor_chat_created().to_form(),
        "action=CHAT_CONVERSATION_CREATED&conversation_id=83a3f676-e831-47d0-bba7-beda6c0bde88\
         &client_name=John+Smith&client_email=john.smith%40foo.bar&date=2016-04-20+09%3A46%3A24&chat_queue_id=1"
    );
    assert_eq!(
        vendor_chat_created().to_json_value(),
        json!({"action":"CHAT_CONVERSATION_CREATED","conversation_id":"83a3f676-e831-47d0-bba7-beda6c0bde88",
               "client_name":"John Smith","client_email":"john.smith@foo.bar","date":"2016-04-20 09:46:24","chat_queue_id":1})
    );
}

#[test]
fn dedup_key_is_stable_across_encodings_and_redeliveries() {
    let event = vendor_chat_created();
    let from_form = Event::from_form(event.to_form().as_bytes()).unwrap();
    let from_json = Event::from_json(event.to_json().as_bytes()).unwrap();
    assert_eq!(from_form.dedup_key(), from_json.dedup_key());
    assert_eq!(
        event.dedup_key(),
        "CHAT_CONVERSATION_CREATED|conversation_id=83a3f676-e831-47d0-bba7-beda6c0bde88|date=2016-04-20 09:46:24"
    );
    // A different conversation is a different event.
    let mut other = vendor_chat_created();
    if let Event::ChatConversationCreated(c) = &mut other {
        c.conversation_id = Uuid::nil();
    }
    assert_ne!(event.dedup_key(), other.dedup_key());

    // An unknown action: every field counts, in any order, whatever the encoding.
    let form = Event::from_form(b"action=CALL_ANSWERED&queue_id=155&connection_id=1.2").unwrap();
    let json =
        Event::from_json(br#"{"connection_id":"1.2","queue_id":155,"action":"CALL_ANSWERED"}"#)
            .unwrap();
    assert_eq!(form.dedup_key(), json.dedup_key());
    assert_eq!(
        form.dedup_key(),
        "CALL_ANSWERED|connection_id=1.2|queue_id=155"
    );
}

// ---- property tests ----

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .@_/+%&=:ąęłśżź-]{1,24}".prop_filter("\"null\" means absent", |s| s != "null")
}

fn date_strategy() -> impl Strategy<Value = EventDate> {
    (1970i32..2100, 1u8..=12, 1u8..=28, 0u8..24, 0u8..60, 0u8..60).prop_map(
        |(y, mo, d, h, mi, s)| {
            let month = time::Month::try_from(mo).unwrap();
            let date = time::Date::from_calendar_date(y, month, d).unwrap();
            EventDate::new(PrimitiveDateTime::new(
                date,
                time::Time::from_hms(h, mi, s).unwrap(),
            ))
        },
    )
}

fn uuid_strategy() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Unknown fields: names that no known event uses, string values (form makes every
/// value a string, so only strings survive a form round trip).
fn extra_strategy() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map("x_[a-z]{1,8}", text(), 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            uuid_strategy(),
            text(),
            date_strategy(),
            any::<i64>(),
            extra_strategy()
        )
            .prop_map(
                |(conversation_id, agent_login, date, chat_queue_id, extra)| Event::from(
                    ChatAgentAssigned {
                        conversation_id,
                        agent_login,
                        date,
                        chat_queue_id,
                        extra
                    }
                )
            ),
        (
            uuid_strategy(),
            date_strategy(),
            any::<i64>(),
            extra_strategy()
        )
            .prop_map(|(conversation_id, date, chat_queue_id, extra)| Event::from(
                ChatConversationClosed {
                    conversation_id,
                    date,
                    chat_queue_id,
                    extra
                }
            )),
        (
            uuid_strategy(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            date_strategy(),
            any::<i64>(),
            extra_strategy()
        )
            .prop_map(
                |(conversation_id, client_name, client_email, date, chat_queue_id, extra)| {
                    Event::from(ChatConversationCreated {
                        conversation_id,
                        client_name,
                        client_email,
                        date,
                        chat_queue_id,
                        extra,
                    })
                }
            ),
        (
            any::<i64>(),
            proptest::option::of(any::<i64>()),
            date_strategy(),
            extra_strategy()
        )
            .prop_map(|(customer_id, company_id, date, extra)| Event::from(
                CustomerCreated {
                    customer_id,
                    company_id,
                    date,
                    extra
                }
            )),
        (
            any::<i64>(),
            proptest::option::of(any::<i64>()),
            date_strategy(),
            extra_strategy()
        )
            .prop_map(|(customer_id, company_id, date, extra)| Event::from(
                CustomerUpdated {
                    customer_id,
                    company_id,
                    date,
                    extra
                }
            )),
        (
            text(),
            any::<i64>(),
            text(),
            proptest::option::of(text()),
            text(),
            date_strategy(),
            extra_strategy()
        )
            .prop_map(
                |(
                    connection_id,
                    queue_id,
                    agent_login,
                    source_number,
                    destination_number,
                    date,
                    extra,
                )| Event::from(AgentRinging {
                    connection_id,
                    queue_id,
                    agent_login,
                    source_number,
                    destination_number,
                    date,
                    extra
                })
            ),
        (text(), text(), date_strategy(), extra_strategy()).prop_map(
            |(connection_id, filename, date, extra)| Event::from(RecordingReady {
                connection_id,
                filename,
                date,
                extra
            })
        ),
        (
            any::<i64>(),
            proptest::option::of(text()),
            text(),
            date_strategy(),
            any::<i64>(),
            extra_strategy()
        )
            .prop_map(
                |(ticket_id, agent_login, direction, date, customer_id, extra)| Event::from(
                    TicketCreated {
                        ticket_id,
                        agent_login,
                        direction,
                        date,
                        customer_id,
                        extra
                    }
                )
            ),
        (
            any::<i64>(),
            proptest::option::of(date_strategy()),
            extra_strategy()
        )
            .prop_map(
                |(ticket_id, date, extra)| Event::from(TicketMessageReceived {
                    ticket_id,
                    date,
                    extra
                })
            ),
        ("[A-Z_]{1,20}", extra_strategy())
            .prop_filter("unknown actions only", |(name, _)| !Action::from(
                name.as_str()
            )
            .is_known())
            .prop_map(|(action, fields)| Event::Other(OtherEvent::new(action, fields))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn form_encoding_then_parsing_is_the_identity(event in event_strategy()) {
        let form = event.to_form();
        prop_assert_eq!(&Event::parse(form.as_bytes(), FORM).unwrap(), &event);
        prop_assert_eq!(&Event::parse(form.as_bytes(), None).unwrap(), &event);
    }

    #[test]
    fn json_encoding_then_parsing_is_the_identity(event in event_strategy()) {
        let json = event.to_json();
        prop_assert_eq!(&Event::parse(json.as_bytes(), JSON).unwrap(), &event);
        prop_assert_eq!(&Event::parse(json.as_bytes(), None).unwrap(), &event);
        prop_assert_eq!(Event::from_json(json.as_bytes()).unwrap().dedup_key(), event.dedup_key());
        // Through serde as well, as an application storing events would.
        let stored = serde_json::to_value(&event).unwrap();
        prop_assert_eq!(&serde_json::from_value::<Event>(stored).unwrap(), &event);
    }
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    proptest::sample::select(vec![
        None,
        FORM,
        JSON,
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
        Some(""),
    ])
}

/// Bodies built from the pieces real ones are made of, so that random inputs reach
/// the field readers rather than stopping at the first byte.
fn body_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("action=".to_string()),
        proptest::sample::select(Action::KNOWN.to_vec()).prop_map(|a| a.to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just("%".to_string()),
        Just("+".to_string()),
        Just("null".to_string()),
        Just("{\"action\":".to_string()),
        Just("\"".to_string()),
        Just(",".to_string()),
        Just("}".to_string()),
        Just(":".to_string()),
        proptest::sample::select(vec![
            "customer_id=",
            "company_id=",
            "date=",
            "ticket_id=",
            "conversation_id=",
            "queue_id=",
            "chat_queue_id=",
            "agent_login=",
            "\"date\":",
            "\"ticket_id\":",
        ])
        .prop_map(str::to_string),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        date_strategy().prop_map(|d| d.to_string().replace(' ', "+").replace(':', "%3A")),
        any::<u8>().prop_map(|b| format!("%{b:02X}")),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat().into_bytes())
}

proptest! {
    // 60,000 + 60,000 inputs: no input, however malformed, makes parsing panic.
    #![proptest_config(ProptestConfig::with_cases(60_000))]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), ct in content_type()) {
        let _ = Event::parse(&body, ct);
    }

    #[test]
    fn random_event_like_bodies_never_panic(body in body_like(), ct in content_type()) {
        if let Ok(event) = Event::parse(&body, ct) {
            // Whatever parses can be written back and read again as the same event:
            // the inbox may hand a handler either the event its receiver parsed or
            // the one it reads back from the stored JSON.
            let again = Event::parse(event.to_json().as_bytes(), JSON).unwrap();
            prop_assert_eq!(again.dedup_key(), event.dedup_key());
            prop_assert_eq!(again, event);
        }
    }
}

/// `to_json` writes the event straight from its fields: the same text as
/// `to_json_value`, for every known action and for an unknown one with extra fields.
#[test]
fn to_json_is_the_json_value_as_text() {
    let mut events: Vec<Event> = crate::action::Action::KNOWN
        .iter()
        .map(|action| examples::event(action.as_str(), &[]).unwrap())
        .collect();
    events.push(
        Event::parse(
            br#"{"action":"SOMETHING_NEW","b":[1,{"x":null}],"a":"\u0000\"","n":1.5}"#,
            None,
        )
        .unwrap(),
    );
    events
        .push(examples::event("TICKET_CREATED", &[("extra".into(), "żółw \"q\"".into())]).unwrap());
    for event in events {
        assert_eq!(
            event.to_json(),
            event.to_json_value().to_string(),
            "{event:?}"
        );
    }
}
