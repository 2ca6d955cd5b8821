use std::path::PathBuf;

use serde_json::Value;

use super::*;

/// Where the document is checked in (the gateway embeds this file).
fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/customer.json")
}

/// The checked-in document is the generated one. `RESIDENCY_BLESS_OPENAPI=1` rewrites it.
#[test]
fn openapi_document_is_current() {
    let generated = customer_json();
    let path = checked_in();
    if std::env::var_os("RESIDENCY_BLESS_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/openapi/customer.json is not the document the code generates; regenerate it with \
         `RESIDENCY_BLESS_OPENAPI=1 cargo test -p residency-region-node openapi` and commit it"
    );
}

fn doc() -> Value {
    serde_json::from_str(&customer_json()).unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn openapi_is_3_1_with_only_public_customer_paths_and_unique_operation_ids() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert_eq!(ops.len(), 47, "every /v1 operation of the router");
    let mut ids: Vec<&str> = ops
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ops.len(), "operation ids are unique");
    for (path, _, _) in &ops {
        assert!(path.starts_with("/v1/"), "{path}");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "x-api-key");
}

#[test]
fn openapi_errors_are_problems_and_gateway_refusals_are_everywhere() {
    let doc = doc();
    let problem = &doc["components"]["schemas"]["Problem"];
    let required: Vec<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for member in [
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "request_id",
    ] {
        assert!(required.contains(&member), "{member} is required");
    }
    assert!(!required.contains(&"field"));
    for (path, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        for status in ["400", "401", "403", "404", "429", "502", "503", "504"] {
            assert!(responses.contains_key(status), "{method} {path}: {status}");
        }
        if op.get("requestBody").is_some() {
            assert!(responses.contains_key("413"), "{method} {path}: 413");
        }
        for (status, response) in responses {
            if !status.starts_with(['4', '5']) {
                continue;
            }
            let response = match response["$ref"].as_str() {
                Some(r) => {
                    let name = r.strip_prefix("#/components/responses/").unwrap();
                    &doc["components"]["responses"][name]
                }
                None => response,
            };
            assert_eq!(
                response["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path}: {status}"
            );
        }
    }
}
