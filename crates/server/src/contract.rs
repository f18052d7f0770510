//! What every operation of the OpenAPI document shares, added in one place
//! after the routes are registered: the bearer security scheme and its
//! requirement on every route that takes a key, and the problem+json
//! answers each operation can give besides its own (a route cannot forget
//! one, and 55 annotations do not repeat them).
//!
//! It also corrects what the derived schemas get wrong about this server:
//! unsigned integers get their real range, parameters are never `null`,
//! text answers are strings, and rules across fields of a request body
//! (which the derive cannot express) are added to their schemas.

use utoipa::PartialSchema;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ArrayItems, Components, KnownFormat, ObjectBuilder,
    Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// The security scheme's name in `components.securitySchemes`.
pub const BEARER: &str = "bearer";

/// Routes a probe or a client reads without a key.
pub const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/openapi.json"];

/// The shared error answers: (status, component name, description).
const ANSWERS: [(&str, &str, &str); 15] = [
    (
        "400",
        "BadRequest",
        "Invalid input: a parameter, a name, an id or a time the server refuses; `detail` says which",
    ),
    (
        "401",
        "Unauthenticated",
        "No key, or a key that is unknown, revoked, expired or malformed (`WWW-Authenticate: Bearer`)",
    ),
    (
        "403",
        "Forbidden",
        "The key's scopes, the actor's grants or its clearance do not allow this",
    ),
    (
        "404",
        "NotFound",
        "No such resource (or one the caller may not read)",
    ),
    (
        "408",
        "RequestTimeout",
        "The request took longer than the server's request timeout",
    ),
    (
        "431",
        "RequestHeaderFieldsTooLarge",
        "More than 64 header fields or 32 KiB of headers",
    ),
    (
        "409",
        "Conflict",
        "The request conflicts with the current state",
    ),
    (
        "412",
        "PreconditionFailed",
        "`If-Match` names a revision that is no longer current",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than the server accepts",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not `application/json`",
    ),
    (
        "422",
        "UnprocessableEntity",
        "The JSON body does not have the documented shape, or the `Idempotency-Key` was used for a different request",
    ),
    (
        "429",
        "TooManyRequests",
        "Over the key's request rate, or too many failed authentications from this address (`Retry-After`: seconds)",
    ),
    (
        "500",
        "Internal",
        "The server failed; quote the correlation id to its operator",
    ),
    (
        "503",
        "Unavailable",
        "The store or the search index is not reachable; retry later",
    ),
    (
        "507",
        "InsufficientStorage",
        "The disk (or the database) is full (`storage_full`): writes fail until space is freed; reads go on",
    ),
];

/// Which shared answers an operation can give.
fn answers_for(path: &str, write: bool, op: &Operation) -> Vec<&'static str> {
    if OPEN_PATHS.contains(&path) {
        return vec!["408", "431", "500", "503"];
    }
    let mut codes = vec![
        "400", "401", "403", "404", "408", "429", "431", "500", "503",
    ];
    let body = op
        .request_body
        .as_ref()
        .and_then(|b| match b {
            RefOr::T(b) => Some(b),
            RefOr::Ref(_) => None,
        })
        .map(|b| b.content.keys().cloned().collect::<Vec<_>>());
    if let Some(types) = body {
        codes.push("413");
        // only a JSON body is refused for its media type or its shape
        if types.iter().any(|t| t == "application/json") {
            codes.extend(["415", "422"]);
        }
    }
    // any write can meet a concurrent one or a state that forbids it, or
    // a full disk
    if write {
        codes.extend(["409", "507"]);
    }
    let takes_if_match = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.name.eq_ignore_ascii_case("If-Match"),
        RefOr::Ref(_) => false,
    });
    if takes_if_match {
        codes.push("412");
    }
    // a key reused for a different request is 422 (idempotency_key_reused)
    let takes_idempotency_key = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.name.eq_ignore_ascii_case("Idempotency-Key"),
        RefOr::Ref(_) => false,
    });
    if takes_idempotency_key && !codes.contains(&"422") {
        codes.push("422");
    }
    codes
}

/// Adds the security scheme, per-operation security and the shared error
/// answers (an operation's own description of a status wins).
pub fn complete(api: &mut OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BEARER.to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("kx_…")
                .description(Some(
                    "An API key (`kontextual key create`). While a store has no key at all, a server bound to loopback lets requests without one act as its local actor.",
                ))
                .build(),
        )),
    );
    for (status, name, description) in ANSWERS {
        let mut answer = ResponseBuilder::new().description(description).content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
        let header = |about: &str, schema: RefOr<Schema>| {
            HeaderBuilder::new()
                .schema(Some(schema))
                .description(Some(about))
                .build()
        };
        answer = match status {
            "401" => answer.header("WWW-Authenticate", header("`Bearer`", String::schema())),
            "429" | "503" => answer.header(
                "Retry-After",
                header("Seconds to wait before trying again", u64::schema()),
            ),
            _ => answer,
        };
        components
            .responses
            .insert(name.to_owned(), RefOr::T(answer.build()));
    }
    cross_field_rules(components);
    for schema in components.schemas.values_mut() {
        unsigned_ranges(schema);
    }
    for (path, item) in api.paths.paths.iter_mut() {
        let ops = [
            (false, item.get.as_mut()),
            (true, item.put.as_mut()),
            (true, item.post.as_mut()),
            (true, item.delete.as_mut()),
            (true, item.patch.as_mut()),
        ];
        for (write, op) in ops {
            let Some(op) = op else { continue };
            if !OPEN_PATHS.contains(&path.as_str()) {
                op.security = Some(vec![SecurityRequirement::new::<_, [&str; 0], &str>(
                    BEARER,
                    [],
                )]);
            }
            for p in op.parameters.iter_mut().flatten() {
                if let RefOr::T(p) = p
                    && let Some(schema) = p.schema.as_mut()
                {
                    unsigned_ranges(schema);
                    not_null(schema);
                }
            }
            // a text answer documented without a schema (the metrics
            // scrape) is a string
            for (status, answer) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(answer)) = (status.starts_with('2'), answer) {
                    for (media, content) in answer.content.iter_mut() {
                        if let RefOr::T(content) = content
                            && content.schema.is_none()
                            && media.starts_with("text/")
                        {
                            content.schema = Some(String::schema());
                        }
                    }
                }
            }
            for code in answers_for(path, write, op) {
                let Some((_, name, _)) = ANSWERS.iter().find(|(s, _, _)| *s == code) else {
                    continue;
                };
                op.responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
            }
        }
    }
}

/// utoipa describes `u32` and `u64` as `int32` and `int64`, whose ranges
/// stop at half of what the server accepts (and a cursor past `i64::MAX`
/// is meaningful). An unsigned integer without its own bound gets its real
/// one, and no signed format.
fn unsigned_ranges(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else { return };
    match schema {
        Schema::Object(o) => {
            let max = match &o.format {
                Some(SchemaFormat::KnownFormat(KnownFormat::Int32)) => u32::MAX as usize,
                Some(SchemaFormat::KnownFormat(KnownFormat::Int64)) => u64::MAX as usize,
                _ => 0,
            };
            let unsigned = match o.minimum {
                Some(utoipa::Number::Int(n)) => n >= 0,
                Some(utoipa::Number::UInt(_)) => true,
                Some(utoipa::Number::Float(n)) => n >= 0.0,
                None => false,
            };
            if max > 0 && unsigned {
                o.format = None;
                o.maximum.get_or_insert(utoipa::Number::UInt(max));
            }
            for p in o.properties.values_mut() {
                unsigned_ranges(p);
            }
        }
        Schema::Array(a) => {
            if let ArrayItems::RefOrSchema(items) = &mut a.items {
                unsigned_ranges(items);
            }
        }
        Schema::OneOf(o) => o.items.iter_mut().for_each(unsigned_ranges),
        Schema::AllOf(o) => o.items.iter_mut().for_each(unsigned_ranges),
        Schema::AnyOf(o) => o.items.iter_mut().for_each(unsigned_ranges),
        _ => {}
    }
}

/// utoipa makes an optional parameter nullable too, but a parameter is
/// present or absent: there is no `null` to send (a generator sending the
/// text "null" for an `If-Match` is refused, rightly).
fn not_null(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else { return };
    let types = match schema {
        Schema::Object(o) => &mut o.schema_type,
        Schema::Array(a) => &mut a.schema_type,
        _ => return,
    };
    if let SchemaType::Array(list) = types {
        list.retain(|t| *t != Type::Null);
        if let [only] = list.as_slice() {
            *types = SchemaType::Type(only.clone());
        }
    }
}

/// An object in which `field` is present and a non-empty array.
fn has_items(field: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .property(field, ArrayBuilder::new().min_items(Some(1)))
        .required(field)
}

/// An object in which `field` is present and not null.
fn has(field: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .property(
            field,
            ObjectBuilder::new().schema_type(SchemaType::Array(vec![
                Type::String,
                Type::Boolean,
                Type::Integer,
                Type::Number,
                Type::Array,
                Type::Object,
            ])),
        )
        .required(field)
}

/// An object in which `field` is absent or null.
fn lacks(field: &str) -> ObjectBuilder {
    ObjectBuilder::new().property(field, ObjectBuilder::new().schema_type(Type::Null))
}

/// Adds `rule` to the component schema `name` (all of them must hold).
fn constrain(components: &mut Components, name: &str, rule: impl Into<RefOr<Schema>>) {
    if let Some(schema) = components.schemas.remove(name) {
        let both = AllOfBuilder::new().item(schema).item(rule);
        components
            .schemas
            .insert(name.to_owned(), RefOr::T(Schema::AllOf(both.build())));
    }
}

/// What the handlers require across fields, in JSON Schema, so a client (and
/// a generator) knows before sending.
fn cross_field_rules(components: &mut Components) {
    // a package is built from queries, selectors or both
    constrain(
        components,
        "NewContext",
        AnyOfBuilder::new()
            .item(has_items("queries"))
            .item(has_items("selectors")),
    );
    // relations are followed only when there are types to follow
    constrain(
        components,
        "NewContext",
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new().property(
                    "depth",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .enum_values(Some([0])),
                ),
            )
            .item(has_items("expand")),
    );
    // a grant is on the namespace, a collection or an artifact: not both
    constrain(
        components,
        "GrantBody",
        AnyOfBuilder::new()
            .item(lacks("collection"))
            .item(lacks("artifact")),
    );
    // an export says what to export: everything, or at least one filter
    let mut selects = AnyOfBuilder::new().item(
        ObjectBuilder::new()
            .property("all", ObjectBuilder::new().enum_values(Some([true])))
            .required("all"),
    );
    for list in [
        "artifact_ids",
        "collections",
        "source_systems",
        "lifecycles",
        "classifications",
    ] {
        selects = selects.item(has_items(list));
    }
    for one in ["query", "run", "since", "until"] {
        selects = selects.item(has(one));
    }
    constrain(components, "ExportScopeBody", selects);
}
