//! The OpenAPI document against the router: every documented route answers, every route the
//! router has is documented (or listed here as deliberately outside the document), the
//! document is structurally valid (every `$ref` resolves, path parameters are declared,
//! operation ids are unique) and every operation carries examples that match its schemas.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use serde_json::{Value, json};
use tillmesh::Node;
use tillmesh::api::{self, ApiOptions};
use tower::ServiceExt;

/// Routes the router serves outside the OpenAPI document, and why.
const OUTSIDE_THE_DOCUMENT: [(&str, &str); 4] = [
    (
        "/api/v1/documents/{id}/{*rest}",
        "the same as /api/v1/documents/{id}, with the id's slashes left in the path",
    ),
    ("/api/v1/openapi.json", "the document itself"),
    (
        "/health",
        "liveness for load balancers (also /api/v1/health)",
    ),
    ("/metrics", "Prometheus text format, not JSON"),
];

async fn call(router: &Router, req: Request<Body>) -> (u16, Value, Vec<u8>) {
    let res = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router answers");
    let status = res.status().as_u16();
    let raw = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("a body")
        .to_vec();
    (
        status,
        serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    )
}

async fn node_and_router() -> (Node, Router) {
    let node = Node::builder().memory().start().await.expect("a node");
    let router = api::router(node.handle(), ApiOptions::default());
    (node, router)
}

async fn document(router: &Router) -> Value {
    let (status, doc, _) = call(
        router,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    doc
}

/// (method, path) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// `/api/v1/products/{id}` with placeholder values for its parameters.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every documented operation is routed: asked without a login (so nothing changes), it gets
/// an answer from its handler — a 401, a 400 for the empty body … — never the router's own
/// "no such API route" or "method not allowed".
#[tokio::test]
async fn every_documented_route_is_served() {
    let (node, router) = node_and_router().await;
    let doc = document(&router).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 35, "only {} operations documented", ops.len());
    for (method, path, _) in &ops {
        let mut b = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(concrete(path));
        let body = if method == "get" {
            Body::empty()
        } else {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from("{}")
        };
        let (status, body, _) = call(&router, b.body(body).unwrap()).await;
        assert_ne!(status, 405, "{method} {path}: method not allowed");
        assert!(
            !(status == 404 && body["error"]["message"] == "no such API route"),
            "{method} {path} is documented but not routed"
        );
    }
    // The routes outside the document answer too.
    for (path, why) in OUTSIDE_THE_DOCUMENT {
        let uri = path
            .replace("{id}/{*rest}", "ledger/2026-11-22/0123456789abcdef/0")
            .to_string();
        let (status, body, _) = call(&router, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert!(
            status == 200 || status == 401,
            "GET {path} ({why}): {status} {body}"
        );
    }
    let (status, _, page) = call(&router, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("<html"));
    drop(router);
    node.shutdown().await;
}

/// String literals passed to `.route(` in the API's source files.
fn routes_in_source() -> (BTreeSet<String>, Vec<String>, usize) {
    let mut literal = BTreeSet::new();
    let mut dynamic = Vec::new();
    let mut handlers = 0;
    let mut files = vec![std::path::PathBuf::from("node/api.rs")];
    // node/api/ and its subdirectories (an area split in files, as node/api/auth/).
    let mut dirs = vec![std::path::PathBuf::from("node/api")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).expect("node/api") {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Source without whitespace: `.route(\n "/x",` becomes `.route("/x",`.
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for part in squeezed.split(".route(").skip(1) {
            if let Some(rest) = part.strip_prefix('"') {
                literal.insert(rest[..rest.find('"').unwrap()].to_string());
            } else {
                dynamic.push(format!(
                    "{}: {}",
                    file.display(),
                    &part[..part.len().min(40)]
                ));
            }
        }
        for part in squeezed.split(".routes(routes!(").skip(1) {
            let list = &part[..part.find("))").unwrap()];
            handlers += list.split(',').filter(|h| !h.is_empty()).count();
        }
    }
    (literal, dynamic, handlers)
}

/// Every route the router is built with is in the document, or in [`OUTSIDE_THE_DOCUMENT`];
/// every handler registered through utoipa is one documented operation.
#[tokio::test]
async fn every_route_is_documented() {
    let (node, router) = node_and_router().await;
    let doc = document(&router).await;
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let outside: BTreeSet<String> = OUTSIDE_THE_DOCUMENT
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    let (literal, dynamic, handlers) = routes_in_source();
    for path in &literal {
        assert!(
            documented.contains(path) || outside.contains(path),
            "the router serves {path}, which is neither in the OpenAPI document nor in \
             OUTSIDE_THE_DOCUMENT"
        );
    }
    for path in &outside {
        assert!(literal.contains(path), "{path} is no longer routed");
    }
    // Routes built from a variable are the web UI's files (node/api/web.rs), all outside /api.
    for d in &dynamic {
        assert!(
            d.starts_with("node/api/web.rs"),
            "a route from a variable: {d}"
        );
    }
    assert_eq!(
        handlers,
        operations(&doc).len(),
        "handlers registered with routes!(…) vs operations in the document"
    );
    drop(router);
    node.shutdown().await;
}

/// Resolves `#/components/schemas/X`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("$ref {r} does not resolve"));
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Property names a (resolved) object schema knows, `allOf` parts included.
fn known_properties(doc: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    let schema = resolve(doc, schema);
    let mut known: BTreeSet<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let mut any = schema.get("properties").is_some();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        if let Some(k) = known_properties(doc, part) {
            known.extend(k);
            any = true;
        }
    }
    any.then_some(known)
}

/// Why `value` does not match `schema` (empty: it matches). Unknown properties count as a
/// mismatch: an example must not show fields the schema does not document.
fn mismatches(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut out = Vec::new();
    if let Some(parts) = schema["oneOf"].as_array() {
        let matching = parts
            .iter()
            .filter(|p| mismatches(doc, p, value, at).is_empty())
            .count();
        if matching != 1 {
            out.push(format!("{at}: matches {matching} of the oneOf schemas"));
        }
    }
    if let Some(parts) = schema["anyOf"].as_array()
        && !parts
            .iter()
            .any(|p| mismatches(doc, p, value, at).is_empty())
    {
        out.push(format!("{at}: matches none of the anyOf schemas"));
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        for m in mismatches(doc, part, value, at) {
            if !m.contains("is not documented") {
                out.push(m);
            }
        }
    }
    if let Some(ty) = schema.get("type") {
        let types: Vec<&str> = match ty {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !ok {
            out.push(format!("{at}: {value} is not of type {ty}"));
            return out;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            out.extend(mismatches(doc, items, v, &format!("{at}[{i}]")));
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema["properties"].as_object();
        for req in schema["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap();
            if !obj.contains_key(req) {
                out.push(format!("{at}: required `{req}` is missing"));
            }
        }
        if let Some(props) = props {
            for (k, v) in obj {
                if let Some(p) = props.get(k) {
                    out.extend(mismatches(doc, p, v, &format!("{at}.{k}")));
                }
            }
        }
        if let Some(known) = known_properties(doc, schema) {
            for k in obj.keys() {
                if !known.contains(k) {
                    out.push(format!("{at}: `{k}` is not documented"));
                }
            }
        }
    }
    out
}

/// Every `$ref` anywhere in the document.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_valid_and_every_operation_has_examples() {
    let (node, router) = node_and_router().await;
    let doc = document(&router).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "tillmesh");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    assert!(!all_refs.is_empty());
    for r in &all_refs {
        assert!(
            r.starts_with("#/") && doc.pointer(&r[1..]).is_some(),
            "$ref {r} does not resolve"
        );
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();

    let mut ids = BTreeMap::new();
    let mut problems = Vec::new();
    for (method, path, op) in operations(&doc) {
        let name = format!("{} {path}", method.to_uppercase());
        if let Some(id) = op["operationId"].as_str()
            && let Some(other) = ids.insert(id.to_string(), name.clone())
        {
            problems.push(format!("{name}: operationId {id} also used by {other}"));
        }
        // Path parameters: each `{x}` declared once, nothing else declared `in: path`.
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(String::from)
            .collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        if in_path != declared {
            problems.push(format!(
                "{name}: path parameters {in_path:?} vs declared {declared:?}"
            ));
        }
        for req in op["security"].as_array().into_iter().flatten() {
            for scheme in req.as_object().unwrap().keys() {
                if !schemes.contains_key(scheme) {
                    problems.push(format!("{name}: unknown security scheme {scheme}"));
                }
            }
        }

        let mut examples = 0;
        if let Some(content) = op["requestBody"]["content"].as_object() {
            for (media_type, media) in content {
                match (&media["schema"], media.get("example")) {
                    (Value::Null, _) => {
                        problems.push(format!("{name}: request {media_type} has no schema"))
                    }
                    (_, None) => {
                        problems.push(format!("{name}: request {media_type} has no example"))
                    }
                    (schema, Some(ex)) => {
                        examples += 1;
                        problems.extend(mismatches(
                            &doc,
                            schema,
                            ex,
                            &format!("{name} request example"),
                        ));
                    }
                }
            }
        }
        let responses = op["responses"].as_object().expect("responses");
        if !responses.keys().any(|s| s.starts_with('2')) {
            problems.push(format!("{name}: no successful response"));
        }
        for (status, response) in responses {
            for (media_type, media) in response["content"].as_object().into_iter().flatten() {
                let what = format!("{name} {status} {media_type}");
                match (&media["schema"], media.get("example")) {
                    (Value::Null, _) => problems.push(format!("{what}: no schema")),
                    (_, None) => problems.push(format!(
                        "{what}: no example (add one in node/api/examples.rs)"
                    )),
                    (schema, Some(ex)) => {
                        examples += 1;
                        if media_type == "application/json" || media_type == "text/event-stream" {
                            problems.extend(mismatches(
                                &doc,
                                schema,
                                ex,
                                &format!("{what} example"),
                            ));
                        }
                        if media_type == "text/csv" {
                            let header = ex.as_str().unwrap_or("").lines().next().unwrap_or("");
                            let columns =
                                response["description"].as_str().unwrap().replace(", ", ",");
                            if header != columns {
                                problems.push(format!("{what}: example header {header:?} vs described columns {columns:?}"));
                            }
                        }
                        if media_type == "application/octet-stream" && schema["format"] != "binary"
                        {
                            problems.push(format!("{what}: binary body not documented as binary"));
                        }
                    }
                }
            }
        }
        if examples == 0 {
            problems.push(format!("{name}: no example at all"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    drop(router);
    node.shutdown().await;
}

/// The checker above is not blind: a wrong type, a missing required field and an undocumented
/// field are all caught.
#[tokio::test]
async fn the_example_checker_catches_mistakes() {
    let (node, router) = node_and_router().await;
    let doc = document(&router).await;
    let schema = json!({"$ref": "#/components/schemas/NewSale"});
    let good = json!({"lines": [{"product_id": "x", "qty": 1}], "payments": []});
    assert!(mismatches(&doc, &schema, &good, "").is_empty());
    let wrong_type = json!({"lines": [{"product_id": "x", "qty": "one"}], "payments": []});
    assert!(!mismatches(&doc, &schema, &wrong_type, "").is_empty());
    let missing = json!({"lines": []});
    assert!(!mismatches(&doc, &schema, &missing, "").is_empty());
    let extra = json!({"lines": [], "payments": [], "customer": "Bob"});
    assert!(!mismatches(&doc, &schema, &extra, "").is_empty());
    let bad_enum = json!({"lines": [], "payments": [{"method": "cheque"}]});
    assert!(!mismatches(&doc, &schema, &bad_enum, "").is_empty());
    drop(router);
    node.shutdown().await;
}
