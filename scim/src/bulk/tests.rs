use serde_json::json;

use super::*;

fn request(ops: Value) -> BulkRequest {
    parse(json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": ops})).expect("a BulkRequest")
}

fn ids_for(req: &BulkRequest) -> Vec<Option<String>> {
    req.operations
        .iter()
        .enumerate()
        .map(|(i, op)| matches!(op.parsed, Ok((Method::Post, _))).then(|| format!("id{i}")))
        .collect()
}

#[test]
fn a_body_without_the_bulk_request_schema_is_invalid_syntax() {
    let e = parse(json!({"Operations": []})).expect_err("refused");
    assert_eq!(
        (e.status, e.scim_type),
        (400, Some(super::super::ScimType::InvalidSyntax))
    );
    let e = parse(json!({"schemas": [BULK_REQUEST_SCHEMA]})).expect_err("no Operations");
    assert_eq!(e.status, 400);
    let e = parse(json!([1])).expect_err("not an object");
    assert_eq!(e.status, 400);
}

#[test]
fn more_than_max_operations_is_413() {
    let ops: Vec<Value> = (0..=MAX_OPERATIONS)
        .map(|_| json!({"method": "DELETE", "path": "/Users/x"}))
        .collect();
    let e =
        parse(json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": ops})).expect_err("too many");
    assert_eq!(e.status, 413);
    assert!(e.detail.contains("1000"), "{}", e.detail);
}

#[test]
fn fail_on_errors_must_be_a_positive_integer() {
    let ok = parse(json!({"schemas": [BULK_REQUEST_SCHEMA], "failOnErrors": 2, "Operations": []}))
        .expect("valid");
    assert_eq!(ok.fail_on_errors, Some(2));
    for bad in [json!(0), json!(-1), json!("2"), json!(1.5)] {
        let e =
            parse(json!({"schemas": [BULK_REQUEST_SCHEMA], "failOnErrors": bad, "Operations": []}))
                .expect_err("invalid failOnErrors");
        assert_eq!(e.status, 400);
    }
}

#[test]
fn operations_are_parsed_case_insensitively_and_bad_ones_fail_alone() {
    let req = request(json!([
        {"method": "post", "path": "/Users", "bulkId": "a", "data": {"userName": "x"}},
        {"method": "PATCH", "path": "/groups/g1", "version": "W/\"2\"", "data": {}},
        {"method": "GET", "path": "/Users/1"},
        {"method": "POST", "path": "/Users"},
        {"method": "PUT", "path": "/Users"},
        {"method": "DELETE", "path": "/Things/1"},
        {"method": "DELETE", "path": "/Users/1/x"},
        {"method": "POST", "path": "/Users/1", "bulkId": "b"},
        "not an object",
    ]));
    let ops = &req.operations;
    assert_eq!(
        ops[0].parsed.as_ref().ok(),
        Some(&(
            Method::Post,
            OperationTarget {
                rt: ResourceType::User,
                id: None
            }
        ))
    );
    assert_eq!(
        ops[1].parsed.as_ref().ok(),
        Some(&(
            Method::Patch,
            OperationTarget {
                rt: ResourceType::Group,
                id: Some("g1".into())
            }
        ))
    );
    assert_eq!(ops[1].version.as_deref(), Some("W/\"2\""));
    for (i, why) in [
        (2, "not one of"),
        (3, "needs a bulkId"),
        (4, "needs a path with the resource id"),
        (5, "names no resource type"),
        (6, "is not /Users"),
        (7, "without an id"),
        (8, "JSON object"),
    ] {
        let e = ops[i].parsed.as_ref().expect_err("refused");
        assert!(
            e.status == 400 && e.detail.contains(why),
            "op {i}: {}",
            e.detail
        );
    }
    assert_eq!(ops[2].method_text, "GET");
}

#[test]
fn references_order_the_operations_and_otherwise_request_order_is_kept() {
    let req = request(json!([
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"displayName": "G", "members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"userName": "a"}},
        {"method": "PATCH", "path": "/Users/bulkId:u2", "data": {}},
        {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"userName": "b"}},
        {"method": "DELETE", "path": "/Users/other"},
    ]));
    let p = plan(&req.operations, &ids_for(&req));
    assert!(p.refused.iter().all(Option::is_none), "{:?}", p.refused);
    assert_eq!(p.order, vec![1, 3, 0, 2, 4]);
    assert_eq!(p.refers_to[0], vec![1, 3]);
    assert_eq!(p.refers_to[2], vec![3]);
}

#[test]
fn an_unknown_bulk_id_is_invalid_value_for_that_operation_only() {
    let req = request(json!([
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"displayName": "G", "members": [{"value": "bulkId:nobody"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "a"}},
        {"method": "DELETE", "path": "/Users/bulkId:ghost"},
    ]));
    let p = plan(&req.operations, &ids_for(&req));
    let e = p.refused[0].as_ref().expect("unknown bulkId");
    assert_eq!(e.status, 400);
    assert!(e.detail.contains("nobody"), "{}", e.detail);
    assert!(p.refused[1].is_none());
    assert!(
        p.refused[2]
            .as_ref()
            .is_some_and(|e| e.detail.contains("ghost"))
    );
}

#[test]
fn a_bulk_id_of_a_non_post_cannot_be_referenced_and_a_duplicate_is_refused() {
    let req = request(json!([
        {"method": "PUT", "path": "/Users/1", "bulkId": "p", "data": {}},
        {"method": "DELETE", "path": "/Users/bulkId:p"},
        {"method": "POST", "path": "/Users", "bulkId": "d", "data": {"userName": "a"}},
        {"method": "POST", "path": "/Users", "bulkId": "d", "data": {"userName": "b"}},
    ]));
    let p = plan(&req.operations, &ids_for(&req));
    assert!(p.refused[0].is_none());
    assert!(p.refused[1].is_some());
    assert!(p.refused[2].is_none());
    assert!(
        p.refused[3]
            .as_ref()
            .is_some_and(|e| e.detail.contains("earlier POST"))
    );
}

#[test]
fn a_cycle_fails_the_operations_in_it_and_those_waiting_on_it() {
    let req = request(json!([
        {"method": "POST", "path": "/Groups", "bulkId": "a",
         "data": {"displayName": "A", "members": [{"value": "bulkId:b"}]}},
        {"method": "POST", "path": "/Groups", "bulkId": "b",
         "data": {"displayName": "B", "members": [{"value": "bulkId:a"}]}},
        {"method": "PATCH", "path": "/Groups/bulkId:a", "data": {}},
        {"method": "POST", "path": "/Groups", "bulkId": "self",
         "data": {"displayName": "S", "members": [{"value": "bulkId:self"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "free", "data": {"userName": "f"}},
    ]));
    let p = plan(&req.operations, &ids_for(&req));
    for i in [0, 1, 2, 3] {
        assert_eq!(p.refused[i].as_ref().map(|e| e.status), Some(409), "op {i}");
    }
    assert!(p.refused[4].is_none());
    assert_eq!(p.order.len(), 5, "every operation gets an answer");
    assert_eq!(p.order[0], 4);
}

#[test]
fn resolve_replaces_references_anywhere_in_the_data() {
    let ids: HashMap<String, String> = [("u".to_owned(), "1234".to_owned())].into();
    let mut data = json!({
        "members": [{"value": "bulkId:u"}, {"value": "bulkId:unknown"}],
        "manager": {"value": "bulkId:u"},
        "note": "see bulkId:u",
    });
    resolve(&mut data, &ids);
    assert_eq!(data["members"][0]["value"], "1234");
    assert_eq!(data["members"][1]["value"], "bulkId:unknown");
    assert_eq!(data["manager"]["value"], "1234");
    assert_eq!(data["note"], "see bulkId:u");
    assert_eq!(resolve_str("bulkId:u", &ids).as_deref(), Some("1234"));
    assert_eq!(resolve_str("u", &ids), None);
}
