//! `GET /api/openapi.json`: the OpenAPI document generated from the code covers
//! the app's route table exactly (`minimart::http::api_routes`, the table the
//! 405s' `Allow` header comes from), documents the refusals as problems and the
//! admin's bearer scheme, and real answers match the schemas it gives.
//! `GET /api/docs`: its page for people, served with its assets by the app under
//! the app's Content-Security-Policy (tests/browser renders it).

use std::collections::BTreeSet;

use minimart::http::api_routes;
use reqwest::StatusCode;
use serde_json::{Value, json};

use support::{TestApp, content_type, header, spawn_app};

const PROBLEM_REF: &str = "#/components/schemas/Problem";
/// Pages for people under `/api/`: HTML, not operations of the API, so not in
/// the document. Each must be in the route table (so that this list cannot
/// hide a route that is gone), and nothing else is left out.
const PAGES: [&str; 1] = ["/api/docs"];
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = content_type(&response);
    assert_eq!(content_type, "application/json");
    response.json().await.expect("a JSON document")
}

/// The documented parameters of an operation (none when it lists none).
fn parameters(operation: &Value) -> impl Iterator<Item = &Value> {
    operation["parameters"].as_array().into_iter().flatten()
}

/// The strings of a JSON array (or the keys of an object) as a set.
fn names(value: &Value) -> BTreeSet<&str> {
    match value {
        Value::Object(fields) => fields.keys().map(String::as_str).collect(),
        other => other
            .as_array()
            .expect("an array")
            .iter()
            .filter_map(Value::as_str)
            .collect(),
    }
}

/// Every operation of the document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if HTTP_METHODS.contains(&method.as_str()) {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    found
}

#[actix_rt::test]
async fn the_document_covers_exactly_the_api_route_table() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1."), "OpenAPI 3.1.x, not {version}");

    let mut table = api_routes();
    assert!(
        table.iter().any(|(path, _)| *path == "/api/openapi.json"),
        "the document is itself a route of the table, and so in the document"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for page in PAGES {
        assert!(
            table.iter().any(|(path, _)| *path == page),
            "{page} is not in the route table: take it off PAGES"
        );
        assert!(
            !paths.contains_key(page),
            "{page} is a page, not an operation"
        );
    }
    table.retain(|(path, _)| !PAGES.contains(path));
    let mut documented = BTreeSet::new();
    for (path, methods) in &table {
        documented.insert(path.to_string());
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is served but not in the document"));
        // HEAD is served by each GET's handler; the document says so once, in
        // its description, rather than as an operation of every path.
        let has = |m: &str| methods.iter().any(|method| method.as_str() == m);
        assert_eq!(has("GET"), has("HEAD"), "{path}: HEAD goes with GET");
        let served: BTreeSet<String> = methods
            .iter()
            .filter(|method| method.as_str() != "HEAD")
            .map(|method| method.as_str().to_lowercase())
            .collect();
        let listed: BTreeSet<String> = item
            .as_object()
            .expect("a path item")
            .keys()
            .filter(|key| HTTP_METHODS.contains(&key.as_str()))
            .cloned()
            .collect();
        assert_eq!(listed, served, "{path}: documented methods vs served");
    }
    let extra: Vec<&String> = paths.keys().filter(|p| !documented.contains(*p)).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");

    for (path, method, operation) in operations(&doc) {
        // Each `{name}` of the path is a documented path parameter.
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                parameters(&operation)
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{method} {path}: path parameter {name} is not documented"
            );
        }
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path} has a success"
        );
        for (status, response) in responses {
            let content = response["content"].as_object().unwrap_or_else(|| {
                panic!("{method} {path} {status}: every answer has a body: {response}")
            });
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"], PROBLEM_REF,
                    "{method} {path} {status}"
                );
            }
        }
        if path.starts_with("/api/") && path != "/api/openapi.json" {
            assert!(
                responses.contains_key("503"),
                "{method} {path}: a dependency may be down"
            );
        }
        let has_body = operation.get("requestBody").is_some();
        for status in ["413", "415", "422"] {
            assert_eq!(
                responses.contains_key(status),
                has_body,
                "{method} {path}: {status} goes with a JSON body"
            );
        }
    }
}

#[actix_rt::test]
async fn the_document_describes_problems_auth_and_the_order_contract() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    // RFC 9457, with this API's `code` and `field`.
    let problem = &doc["components"]["schemas"]["Problem"];
    assert!(problem["properties"].is_object(), "Problem's properties");
    assert_eq!(
        names(&problem["properties"]),
        BTreeSet::from(["code", "detail", "field", "status", "title", "type"])
    );
    assert_eq!(
        names(&problem["required"]),
        BTreeSet::from(["code", "detail", "status", "title", "type"]),
        "field is optional"
    );

    // The admin's bearer scheme, required on the product upsert and only there.
    let scheme = &doc["components"]["securitySchemes"]["admin_token"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(
        scheme["scheme"].as_str().map(str::to_lowercase).as_deref(),
        Some("bearer")
    );
    assert!(doc.get("security").is_none(), "no global security");
    for (path, method, operation) in operations(&doc) {
        if path == "/api/products/{product_id}" && method == "post" {
            assert_eq!(operation["security"], json!([{ "admin_token": [] }]));
            assert!(operation["responses"]["401"].is_object());
        } else {
            assert!(
                operation.get("security").is_none(),
                "{method} {path} needs no token"
            );
        }
    }

    // The order contract: an Idempotency-Key header; a 202 with Location and
    // Idempotent-Replayed.
    let place = &doc["paths"]["/api/orders"]["post"];
    let key = parameters(place)
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("the Idempotency-Key parameter");
    assert_eq!(key["in"], "header");
    assert_eq!(key["required"], false);
    let accepted = &place["responses"]["202"];
    assert!(accepted["headers"]["Location"].is_object(), "{accepted}");
    assert!(
        accepted["headers"]["Idempotent-Replayed"].is_object(),
        "{accepted}"
    );

    // The catalog's paging parameters.
    let list = &doc["paths"]["/api/products"]["get"];
    for name in ["after", "limit"] {
        assert!(
            parameters(list).any(|p| p["name"] == name && p["in"] == "query"),
            "{name}: {list}"
        );
    }

    // The domain's rules, as the domain states them.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["ProductId"]["pattern"], "^[A-Za-z0-9_-]{1,64}$");
    assert_eq!(schemas["Quantity"]["minimum"], 1);
    assert_eq!(schemas["Quantity"]["maximum"], 1000);
    assert_eq!(schemas["Price"]["minimum"], 1);
}

/// Checks a value against a schema of the document: types, required and
/// undocumented properties, enums, bounds and lengths, following `$ref`s.
/// Enough of JSON Schema for what this document uses.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{at}: an unknown $ref {reference}"));
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "{at}: no schema {name}");
        return check(doc, target, value, at);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fits = options.iter().any(|option| {
            option["type"] == "null" && value.is_null()
                || (!value.is_null() && option["type"] != "null")
        });
        assert!(fits, "{at}: {value} fits none of {schema}");
        match options.iter().find(|o| o["type"] != "null") {
            Some(option) if !value.is_null() => return check(doc, option, value, at),
            _ => return,
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        assert!(fits, "{at}: {value} is not of type {types:?}");
    }
    if let Some(allowed) = schema["enum"].as_array() {
        assert!(
            allowed.contains(value),
            "{at}: {value} is not one of {allowed:?}"
        );
    }
    if let Some(n) = value.as_i64() {
        if let Some(min) = schema["minimum"].as_i64() {
            assert!(n >= min, "{at}: {n} < {min}");
        }
        if let Some(max) = schema["maximum"].as_i64() {
            assert!(n <= max, "{at}: {n} > {max}");
        }
    }
    if let Some(s) = value.as_str() {
        let chars = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64() {
            assert!(chars >= min, "{at}: {s:?} is shorter than {min}");
        }
        if let Some(max) = schema["maxLength"].as_u64() {
            assert!(chars <= max, "{at}: {s:?} is longer than {max}");
        }
        if schema["format"] == "uuid" {
            assert!(
                s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
                "{at}: {s:?} is not a UUID"
            );
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(doc, &schema["items"], item, &format!("{at}[{i}]"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().expect("a property name");
            assert!(
                object.contains_key(name),
                "{at}: {name} is missing: {value}"
            );
        }
        if let Some(properties) = properties {
            for (name, field) in object {
                let property = properties
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}: {name} is not documented: {value}"));
                check(doc, property, field, &format!("{at}.{name}"));
            }
        }
    }
}

/// Checks an answer against what the document says of its operation and status.
async fn answers_as_documented(
    doc: &Value,
    response: reqwest::Response,
    path: &str,
    method: &str,
) -> Value {
    let status = response.status().as_u16().to_string();
    let documented = &doc["paths"][path][method]["responses"][&status];
    assert!(
        documented.is_object(),
        "{method} {path} answered {status}, which is not documented"
    );
    for header in documented["headers"]
        .as_object()
        .into_iter()
        .flat_map(|headers| headers.keys())
        .filter(|h| *h != "Idempotent-Replayed")
    {
        assert!(
            response.headers().contains_key(header.as_str()),
            "{method} {path} {status}: no {header} header"
        );
    }
    let content_type = content_type(&response);
    let content = &documented["content"][&content_type];
    assert!(
        content.is_object(),
        "{method} {path} {status}: {content_type} is not documented"
    );
    let body: Value = response.json().await.expect("a JSON body");
    check(
        doc,
        &content["schema"],
        &body,
        &format!("{method} {path} {status}"),
    );
    body
}

/// A GET of `path`, checked against what the document says of `documented`.
async fn get_as_documented(app: &TestApp, doc: &Value, path: &str, documented: &str) -> Value {
    answers_as_documented(doc, app.get(path).await, documented, "get").await
}

/// A POST of `body` to `path`, with no token.
async fn post_json(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    let post = app.client.post(app.url(path)).json(&body).send();
    post.await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

#[actix_rt::test]
async fn real_answers_match_the_document() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let product_path = "/api/products/{product_id}";

    let upserted = app.put_product("beans", "Beans", 1250, 40).await;
    answers_as_documented(&doc, upserted, product_path, "post").await;
    get_as_documented(&app, &doc, "/api/products/beans", product_path).await;
    get_as_documented(&app, &doc, "/api/products?limit=1", "/api/products").await;

    let placed = app.place_order("beans", 2).await;
    let accepted = answers_as_documented(&doc, placed, "/api/orders", "post").await;
    let order_id = accepted["order_id"].as_str().expect("an order id");
    app.until_terminal(order_id).await;
    let order_path = format!("/api/orders/{order_id}");
    get_as_documented(&app, &doc, &order_path, "/api/orders/{order_id}").await;
    let payments_path = format!("/api/payments?order_id={order_id}");
    let payments = get_as_documented(&app, &doc, &payments_path, "/api/payments").await;
    let payment_id = payments["payments"][0]["payment_id"]
        .as_str()
        .expect("the order's payment");
    let payment_path = format!("/api/payments/{payment_id}");
    get_as_documented(&app, &doc, &payment_path, "/api/payments/{payment_id}").await;

    // Refusals: each a documented status with a body of the Problem schema.
    let refused = app.place_order("beans", 0).await;
    let problem = answers_as_documented(&doc, refused, "/api/orders", "post").await;
    assert_eq!(problem["status"], 422);
    assert_eq!(problem["field"], "quantity");
    get_as_documented(&app, &doc, "/api/products/nothing-here", product_path).await;
    let product = json!({ "product_name": "Beans", "price": 1, "stock": 1 });
    let no_token = post_json(&app, "/api/products/beans", product).await;
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    answers_as_documented(&doc, no_token, product_path, "post").await;
    get_as_documented(&app, &doc, "/api/products?limit=0", "/api/products").await;
    let payment = json!({ "order_id": order_id, "total_amount": 2500 });
    let not_payable = post_json(&app, "/api/payments", payment).await;
    answers_as_documented(&doc, not_payable, "/api/payments", "post").await;
}

/// The value of every `attribute="..."` in `html` on a tag starting `<tag`.
fn attributes<'a>(html: &'a str, tag: &str, attribute: &str) -> Vec<&'a str> {
    let marker = format!("{attribute}=\"");
    html.split(&format!("<{tag}"))
        .skip(1)
        .filter_map(|element| {
            let element = element.split('>').next()?;
            let start = element.find(&marker)? + marker.len();
            element[start..].split('"').next()
        })
        .collect()
}

#[actix_rt::test]
async fn the_docs_page_is_served_with_its_own_assets_under_the_csp() {
    let app = spawn_app().await;

    let response = app.get("/api/docs").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "text/html; charset=utf-8");
    // The app's one policy: scripts and styles from this origin only, none
    // inline and none evaluated, which Swagger UI must live with.
    let csp = header(&response, "content-security-policy").unwrap_or_default();
    assert!(!csp.contains("unsafe-"), "{csp}");
    for directive in ["script-src", "style-src"] {
        let sources = csp
            .split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(directive))
            .unwrap_or_else(|| panic!("no {directive} in {csp}"));
        assert_eq!(sources.trim(), "'self'", "{directive} in {csp}");
    }
    let html = response.text().await.expect("a page");
    assert!(
        html.contains(r#"data-openapi="/api/openapi.json""#),
        "the page renders this API's document: {html}"
    );
    // Nothing inline: every script has a source, no style element or attribute.
    assert_eq!(
        html.matches("<script").count(),
        attributes(&html, "script", "src").len(),
        "an inline script: {html}"
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "{html}"
    );

    // Every script and stylesheet is the app's own, content-hashed, and served
    // with its type; Swagger UI and what starts it among them.
    let scripts = attributes(&html, "script", "src");
    let stylesheets = attributes(&html, "link", "href");
    for (name, among) in [
        ("swagger-ui", &scripts),
        ("api-docs", &scripts),
        ("swagger-ui", &stylesheets),
        ("api-docs", &stylesheets),
    ] {
        assert!(
            among
                .iter()
                .any(|url| url.starts_with(&format!("/static/{name}."))),
            "{name} is not linked: {among:?}"
        );
    }
    for (urls, content_type) in [
        (&scripts, "text/javascript; charset=utf-8"),
        (&stylesheets, "text/css; charset=utf-8"),
    ] {
        for url in urls.iter() {
            assert!(url.starts_with("/static/"), "not from the app: {url}");
            let asset = app.get(url).await;
            assert_eq!(asset.status(), StatusCode::OK, "{url}");
            assert_eq!(support::content_type(&asset), content_type, "{url}");
            let cache = header(&asset, "cache-control").unwrap_or_default();
            assert!(cache.contains("immutable"), "{url}: {cache}");
            let body = asset.text().await.expect("an asset");
            if url.starts_with("/static/swagger-ui.") && url.ends_with(".js") {
                assert!(body.contains("SwaggerUIBundle"), "{url} is Swagger UI");
            }
        }
    }
}
