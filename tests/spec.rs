//! The hand-written spec holds to what Thulium documents (`docs/thulium/API-FACTS.md`), and the Rust
//! types generated from it agree with it.

use std::collections::BTreeSet;

use openapiv3::{
    OpenAPI, Operation, ReferenceOr, Schema, SchemaKind, SecurityScheme, StatusCode, Type,
};
use serde_json::{Value, json};
use thulium::{NewWebhook, Webhook};
use thulium_tests::spec;

const VENDOR_REQUEST: &str =
    r#"{"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https:\/\/example.pl"}"#;

fn operations(spec: &OpenAPI) -> Vec<(String, &str, &Operation)> {
    let mut out = Vec::new();
    for (path, item) in &spec.paths.paths {
        let item = item.as_item().expect("no $ref path items");
        for (method, op) in item.iter() {
            out.push((path.clone(), method, op));
        }
    }
    out
}

fn component<'a>(spec: &'a OpenAPI, name: &str) -> &'a Schema {
    match &spec.components.as_ref().unwrap().schemas[name] {
        ReferenceOr::Item(schema) => schema,
        ReferenceOr::Reference { .. } => panic!("{name} is a reference"),
    }
}

fn object_shape(schema: &Schema) -> (BTreeSet<String>, BTreeSet<String>) {
    match &schema.schema_kind {
        SchemaKind::Type(Type::Object(object)) => (
            object.properties.keys().cloned().collect(),
            object.required.iter().cloned().collect(),
        ),
        other => panic!("not an object: {other:?}"),
    }
}

fn property_format(schema: &Schema, property: &str) -> Option<String> {
    let SchemaKind::Type(Type::Object(object)) = &schema.schema_kind else {
        panic!("not an object")
    };
    let ReferenceOr::Item(prop) = &object.properties[property] else {
        return None;
    };
    match &prop.schema_kind {
        SchemaKind::Type(Type::String(s)) => match &s.format {
            openapiv3::VariantOrUnknownOrEmpty::Item(f) => Some(format!("{f:?}").to_lowercase()),
            openapiv3::VariantOrUnknownOrEmpty::Unknown(f) => Some(f.clone()),
            openapiv3::VariantOrUnknownOrEmpty::Empty => None,
        },
        _ => None,
    }
}

#[test]
fn only_the_documented_endpoints_exist() {
    let spec = spec();
    assert!(
        spec.openapi.starts_with("3.0."),
        "progenitor needs OpenAPI 3.0"
    );
    let found: BTreeSet<_> = operations(&spec)
        .iter()
        .map(|(path, method, op)| (path.clone(), *method, op.operation_id.clone().unwrap()))
        .collect();
    let expected: BTreeSet<_> = [
        (
            "/api/webhooks".to_string(),
            "get",
            "list_webhooks".to_string(),
        ),
        (
            "/api/webhooks".to_string(),
            "post",
            "create_webhook".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn every_operation_requires_http_basic_and_answers_errors_in_thuliums_shape() {
    let spec = spec();
    let components = spec.components.as_ref().unwrap();
    match &components.security_schemes["basicAuth"] {
        ReferenceOr::Item(SecurityScheme::HTTP { scheme, .. }) => assert_eq!(scheme, "basic"),
        other => panic!("basicAuth is not HTTP basic: {other:?}"),
    }
    for (path, method, op) in operations(&spec) {
        let security = op.security.as_ref().or(spec.security.as_ref()).unwrap();
        assert!(
            security.iter().any(|req| req.contains_key("basicAuth")),
            "{method} {path} lacks basicAuth"
        );
        let responses = &op.responses;
        assert!(
            responses.default.is_none(),
            "{method} {path}: `default` breaks progenitor"
        );
        let codes: BTreeSet<String> = responses.responses.keys().map(|c| c.to_string()).collect();
        assert_eq!(codes, ["200", "4XX", "5XX"].map(String::from).into());
        for range in [4, 5] {
            match &responses.responses[&StatusCode::Range(range)] {
                ReferenceOr::Reference { reference } => {
                    assert_eq!(reference, "#/components/responses/ThuliumError")
                }
                other => panic!("{method} {path} {range}XX: {other:?}"),
            }
        }
    }
    let (props, required) = object_shape(component(&spec, "ErrorBody"));
    assert_eq!(props, ["errors", "request_id"].map(String::from).into());
    assert_eq!(required, ["errors"].map(String::from).into());
    let (props, _) = object_shape(component(&spec, "ErrorItem"));
    assert_eq!(props, ["code", "message"].map(String::from).into());
}

#[test]
fn servers_name_the_account_variable() {
    let spec = spec();
    assert_eq!(spec.servers.len(), 1);
    let server = &spec.servers[0];
    assert_eq!(server.url, "https://{account}.thulium.com");
    assert!(server.variables.as_ref().unwrap().contains_key("account"));
}

#[test]
fn passwords_are_marked_and_required_fields_match_the_facts() {
    let spec = spec();
    let new = component(&spec, "NewWebhook");
    let stored = component(&spec, "Webhook");
    assert_eq!(
        property_format(new, "http_auth_password").as_deref(),
        Some("password")
    );
    assert_eq!(
        property_format(stored, "http_auth_password").as_deref(),
        Some("password")
    );
    let (props, required) = object_shape(new);
    assert_eq!(
        props,
        [
            "actions",
            "http_auth_password",
            "http_auth_user",
            "subscription_url"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        required,
        ["actions", "subscription_url"].map(String::from).into()
    );
    let (props, required) = object_shape(stored);
    assert_eq!(
        required, props,
        "Thulium returns every field, unset ones as \"\""
    );
}

fn example_of(op: &Operation, status: Option<u16>) -> Value {
    let media = match status {
        None => match op.request_body.as_ref().unwrap() {
            ReferenceOr::Item(body) => &body.content["application/json"],
            _ => panic!("request body is a reference"),
        },
        Some(code) => match &op.responses.responses[&StatusCode::Code(code)] {
            ReferenceOr::Item(resp) => &resp.content["application/json"],
            _ => panic!("response is a reference"),
        },
    };
    media.example.clone().expect("an example")
}

#[test]
fn examples_are_the_vendors_and_decode_into_the_generated_types() {
    let spec = spec();
    let ops = operations(&spec);
    let post = ops.iter().find(|(_, m, _)| *m == "post").unwrap().2;
    let get = ops.iter().find(|(_, m, _)| *m == "get").unwrap().2;

    let vendor_request: Value = serde_json::from_str(VENDOR_REQUEST).unwrap();
    assert_eq!(example_of(post, None), vendor_request);
    assert_eq!(
        example_of(post, Some(200)),
        json!({"id": 5, "actions": ["CHAT_CONVERSATION_CREATED"], "subscription_url": "https://example.pl",
               "http_auth_user": "", "http_auth_password": ""})
    );
    assert_eq!(
        example_of(get, Some(200)),
        json!([
            {"id":1,"actions":["CHAT_AGENT_ASSIGNED"],"subscription_url":"https://example.com/","http_auth_user":"","http_auth_password":""},
            {"id":2,"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https://example.com/","http_auth_user":"","http_auth_password":""}
        ])
    );

    let _: NewWebhook = serde_json::from_value(example_of(post, None)).unwrap();
    let created: Webhook = serde_json::from_value(example_of(post, Some(200))).unwrap();
    assert_eq!(created.id, 5);
    let listed: Vec<Webhook> = serde_json::from_value(example_of(get, Some(200))).unwrap();
    assert_eq!(listed.len(), 2);
}

/// `schemars` describes the Rust types; their fields and required sets must be the
/// spec's, so the types users put in their own API docs say what the spec says.
#[test]
fn the_rust_types_json_schemas_agree_with_the_spec() {
    let spec = spec();
    for (name, rust) in [
        ("Webhook", schemars::schema_for!(Webhook)),
        ("NewWebhook", schemars::schema_for!(NewWebhook)),
        (
            "ErrorBody",
            schemars::schema_for!(thulium::types::ErrorBody),
        ),
    ] {
        let rust = rust.as_value();
        let props: BTreeSet<String> = rust["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let required: BTreeSet<String> = rust
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            (props, required),
            object_shape(component(&spec, name)),
            "{name}"
        );
    }
    let webhook = schemars::schema_for!(Webhook);
    let password = &webhook.as_value()["properties"]["http_auth_password"];
    assert_eq!(password["format"], "password", "{password}");
}

/// A property's type as `type[/format]` or `ref:Name`, from the spec.
fn spec_kind(property: &ReferenceOr<Box<Schema>>) -> String {
    match property {
        ReferenceOr::Reference { reference } => {
            format!("ref:{}", reference.rsplit('/').next().unwrap())
        }
        ReferenceOr::Item(schema) => match &schema.schema_kind {
            SchemaKind::Type(Type::Integer(i)) => match &i.format {
                openapiv3::VariantOrUnknownOrEmpty::Item(f) => {
                    format!("integer/{}", format!("{f:?}").to_lowercase())
                }
                _ => "integer".into(),
            },
            SchemaKind::Type(Type::String(s)) => match &s.format {
                openapiv3::VariantOrUnknownOrEmpty::Unknown(f) => format!("string/{f}"),
                openapiv3::VariantOrUnknownOrEmpty::Item(f) => {
                    format!("string/{}", format!("{f:?}").to_lowercase())
                }
                openapiv3::VariantOrUnknownOrEmpty::Empty => "string".into(),
            },
            other => panic!("unexpected property schema {other:?}"),
        },
    }
}

/// The same for a schemars property, with `null` (from `Option`) left out.
fn rust_kind(property: &Value) -> String {
    if let Some(reference) = property.get("$ref").and_then(Value::as_str) {
        return format!("ref:{}", reference.rsplit('/').next().unwrap());
    }
    if let Some(any_of) = property.get("anyOf").and_then(Value::as_array) {
        let non_null: Vec<_> = any_of.iter().filter(|s| s["type"] != "null").collect();
        assert_eq!(non_null.len(), 1, "{property}");
        return rust_kind(non_null[0]);
    }
    let ty = match &property["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap()
            .to_string(),
        other => panic!("no type in {other}"),
    };
    match property.get("format").and_then(Value::as_str) {
        Some(format) => format!("{ty}/{format}"),
        None => ty,
    }
}

/// The hand-written event types have the spec's fields, types and required sets.
#[test]
fn event_types_agree_with_the_event_schemas() {
    use thulium::event::*;
    let spec = spec();
    let rust = [
        (
            "ChatAgentAssigned",
            schemars::schema_for!(ChatAgentAssigned),
        ),
        (
            "ChatConversationClosed",
            schemars::schema_for!(ChatConversationClosed),
        ),
        (
            "ChatConversationCreated",
            schemars::schema_for!(ChatConversationCreated),
        ),
        ("CustomerCreated", schemars::schema_for!(CustomerCreated)),
        ("CustomerUpdated", schemars::schema_for!(CustomerUpdated)),
        ("AgentRinging", schemars::schema_for!(AgentRinging)),
        ("RecordingReady", schemars::schema_for!(RecordingReady)),
        ("TicketCreated", schemars::schema_for!(TicketCreated)),
        (
            "TicketMessageReceived",
            schemars::schema_for!(TicketMessageReceived),
        ),
    ];
    let known: BTreeSet<String> = thulium::Action::KNOWN
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    let covered: BTreeSet<String> = rust.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(known, covered, "one Rust event type per known action");
    let in_spec: BTreeSet<String> = spec
        .components
        .as_ref()
        .unwrap()
        .schemas
        .keys()
        .filter_map(|k| k.strip_suffix("Event").map(str::to_string))
        .collect();
    assert_eq!(in_spec, covered, "one spec schema per known action");

    for (name, schema) in rust {
        let SchemaKind::Type(Type::Object(object)) =
            &component(&spec, &format!("{name}Event")).schema_kind
        else {
            panic!("{name}Event is not an object")
        };
        let action = thulium::Action::KNOWN
            .iter()
            .find(|a| format!("{a:?}") == name)
            .unwrap();
        let ReferenceOr::Item(action_schema) = &object.properties["action"] else {
            panic!()
        };
        let SchemaKind::Type(Type::String(action_type)) = &action_schema.schema_kind else {
            panic!()
        };
        assert_eq!(
            action_type.enumeration,
            vec![Some(action.to_string())],
            "{name}"
        );

        let spec_props: BTreeSet<(String, String)> = object
            .properties
            .iter()
            .filter(|(k, _)| *k != "action")
            .map(|(k, v)| (k.clone(), spec_kind(v)))
            .collect();
        let spec_required: BTreeSet<String> = object
            .required
            .iter()
            .filter(|r| *r != "action")
            .cloned()
            .collect();
        let rust = schema.as_value();
        let rust_props: BTreeSet<(String, String)> = rust["properties"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), rust_kind(v)))
            .collect();
        let rust_required: BTreeSet<String> = rust["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(rust_props, spec_props, "{name}: fields and types");
        assert_eq!(rust_required, spec_required, "{name}: required fields");
    }

    let SchemaKind::Type(Type::String(date)) = &component(&spec, "EventDate").schema_kind else {
        panic!()
    };
    let rust_date = schemars::schema_for!(thulium::event::EventDate);
    assert_eq!(
        date.pattern.as_deref(),
        rust_date.as_value()["pattern"].as_str()
    );
}

/// The vendor's example values in the spec parse into the typed events.
#[test]
fn event_schema_examples_parse_as_events() {
    let spec = spec();
    for action in thulium::Action::KNOWN {
        let SchemaKind::Type(Type::Object(object)) =
            &component(&spec, &format!("{action:?}Event")).schema_kind
        else {
            panic!()
        };
        let mut body = serde_json::Map::new();
        body.insert("action".into(), json!(action.as_str()));
        for (name, property) in &object.properties {
            let example = match property {
                ReferenceOr::Item(schema) => schema.schema_data.example.clone(),
                ReferenceOr::Reference { .. } => {
                    component(&spec, "EventDate").schema_data.example.clone()
                }
            };
            if let Some(example) = example.filter(|_| name != "action") {
                body.insert(name.clone(), example);
            }
        }
        let event = thulium::event::Event::from_json(Value::Object(body).to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(&event.action(), action);
    }
}
