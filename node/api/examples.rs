//! Examples in the OpenAPI document: one request and one answer per route, and an error body
//! for every error status.
//!
//! The schemas come from the handlers' declarations (utoipa); the examples are added here to
//! the finished document, keyed by method and path, so that the handlers stay short. An
//! example a handler declares itself (`request_body(…, example = json!(…))`,
//! `(status = 200, …, example = json!(…))`) is kept. `tests/it/openapi.rs` checks that every
//! operation has its examples and that each matches its schema, so a new route needs one
//! here (or in its declaration), and an example cannot silently go stale when a type changes.

use serde_json::{Value, json};

const PRODUCT_ID: &str = "0b8c3f6e-6a39-4a8e-9f43-2f1d5c0e7a11";
const SALE_ID: &str = "5d0c2b7a-0f4e-4c55-9a3b-61d2e8f0a9c4";
const PERSON_ID: &str = "9f1e4d2c-3b5a-4e6f-8a7b-0c1d2e3f4a5b";
const ENTRY_ID: &str = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
const SHOP_ID: &str = "3c2b1a09-8f7e-4d6c-b5a4-938271605f4e";
const DEVICE_ID: &str = "0123456789abcdef";
const PUBLIC_KEY: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const PEER_ID: &str = "12D3KooWAbc8nEcuT3RjHMeGkK5r8oG3VHsz5i5zuKkEXgPrxTqN";
const TIME: i64 = 1_795_338_000_000;

fn product() -> Value {
    json!({
        "id": PRODUCT_ID, "sku": "COF", "barcode": "4006381333931", "name": "Coffee",
        "category": "Drinks", "unit": "pcs", "price": 280, "cost": 60, "tax_rate": 1900,
        "reorder_level": 10, "variants": [], "archived": false, "conflicts": {}
    })
}

fn sale_line() -> Value {
    json!({
        "product_id": PRODUCT_ID, "variant_id": null, "sku": "COF", "name": "Coffee", "qty": 2,
        "unit_price": 280, "tax_rate": 1900, "discount": 0, "tax": 89, "total": 560
    })
}

fn sale() -> Value {
    json!({
        "id": SALE_ID, "receipt": "T1-000042", "time": TIME, "day": "2026-11-22",
        "device": DEVICE_ID, "person": PERSON_ID, "lines": [sale_line()], "total": 560,
        "tax": 89, "discount": 0, "rounding": 0,
        "payments": [{"method": "cash", "amount": 1000}], "change_due": 440, "note": null,
        "warnings": [], "voided_by": null, "returned": [0]
    })
}

fn movement(kind: &str, qty: i64) -> Value {
    json!({
        "entry_id": ENTRY_ID, "product_id": PRODUCT_ID, "variant_id": null, "time": TIME,
        "kind": kind, "qty": qty, "unit_cost": if kind == "stock_in" { json!(60) } else { json!(null) },
        "reason": if kind == "removal" { json!("damaged") } else { json!(null) },
        "device": DEVICE_ID, "person": PERSON_ID, "note": null
    })
}

fn person(role: &str) -> Value {
    json!({
        "id": PERSON_ID, "name": "Sam", "username": "sam", "role": role,
        "public_key": if role == "staff" { json!(null) } else { json!(PUBLIC_KEY) },
        "revoked": false
    })
}

fn device() -> Value {
    json!({
        "id": DEVICE_ID, "name": "Till 1", "role": "till", "public_key": PUBLIC_KEY,
        "receipt_prefix": "T1", "revoked": false
    })
}

fn settings() -> Value {
    json!({
        "shop_name": "Corner Shop", "currency": "EUR", "currency_exponent": 2,
        "timezone": "Europe/Paris", "tax_mode": "inclusive", "rounding": "half_up",
        "cash_rounding": 1, "receipt_text": "Thank you!", "low_stock_default": 0,
        "oversell": "warn", "max_staff": 5
    })
}

fn session_person() -> Value {
    json!({"id": PERSON_ID, "name": "Olivia", "username": "olivia", "role": "owner"})
}

fn invite() -> Value {
    json!({
        "code": "K7QF2-M9XWD", "invite": "tillmesh-invite:eyJjb2RlIjoi…", "expires_at": TIME,
        "role": "till", "name": "Till 2", "receipt_prefix": "T2"
    })
}

/// `(request body, successful answer)` examples of a route.
const SUPPLIER_ID: &str = "2e4f6a8c-1b3d-4f5e-8a7c-9b0d1e2f3a4b";
const PO_ID: &str = "f76977aa-5b1c-4d2e-8f3a-4b5c6d7e8f90";
const DELIVERY_ID: &str = "b59883c5-a38b-5f2c-8fd1-ec37bf8a1c2d";
const SHIFT_ID: &str = "e5f1e200-b309-47b8-a1d9-9f82ec71d4c6";
const TICKET_ID: &str = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f";

fn supplier() -> Value {
    json!({
        "id": SUPPLIER_ID, "name": "Bean Co", "contact": "Sam", "phone": "+33 1 23 45 67 89",
        "email": "orders@bean.example", "note": null
    })
}

fn delivery() -> Value {
    json!({
        "id": DELIVERY_ID, "entry_id": ENTRY_ID, "duplicates": [], "po_id": PO_ID,
        "note_number": "DN-1", "time": TIME, "device": DEVICE_ID, "person": PERSON_ID,
        "lines": [{
            "product_id": PRODUCT_ID, "variant_id": null, "sku": "COF", "name": "Coffee",
            "qty": 4, "unit_cost": 65, "expected_cost": 60, "variance": 20
        }],
        "total_cost": 260, "variance": 20, "note": null
    })
}

fn purchase_order() -> Value {
    json!({
        "id": PO_ID, "number": "PO-F76977AA", "supplier_id": SUPPLIER_ID,
        "supplier_name": "Bean Co", "status": "sent",
        "lines": [{
            "product_id": PRODUCT_ID, "variant_id": null, "sku": "COF", "name": "Coffee",
            "qty": 10, "unit_cost": 60, "received": 4, "outstanding": 6
        }],
        "expected_on": "2026-11-28", "note": null, "created_at": TIME, "ordered_value": 600,
        "received_value": 260, "deliveries": [delivery()]
    })
}

fn shift(closed: bool) -> Value {
    json!({
        "id": SHIFT_ID, "device": DEVICE_ID, "opened_at": TIME, "opened_by": PERSON_ID,
        "float": 10000, "sales": 2, "cash_sales": 1200, "card_sales": 3000, "other_sales": 0,
        "cash_refunds": 300, "pay_ins": 500, "pay_outs": 2000, "expected": 9400,
        "counted": if closed { json!(9350) } else { json!(null) },
        "difference": if closed { json!(-50) } else { json!(null) },
        "expected_at_close": if closed { json!(9400) } else { json!(null) },
        "closed_at": if closed { json!(TIME + 8 * 3_600_000) } else { json!(null) },
        "closed_by": if closed { json!(PERSON_ID) } else { json!(null) },
        "note": null,
        "moves": [
            {"id": ENTRY_ID, "time": TIME, "amount": -2000, "reason": "window cleaner", "person": PERSON_ID}
        ]
    })
}

fn refund() -> Value {
    json!({
        "id": ENTRY_ID, "time": TIME, "lines": [sale_line()], "refund": 560, "tax": 89,
        "refund_method": "card", "reason": "no receipt", "restock": true
    })
}

fn ticket() -> Value {
    json!({
        "id": TICKET_ID, "name": "Table 4",
        "lines": [{"product_id": PRODUCT_ID, "variant_id": null, "qty": 2, "discount": null}],
        "status": "open", "updated_at": TIME, "updated_on": DEVICE_ID, "updated_by": PERSON_ID,
        "closed_by": null, "double_closed_by": []
    })
}

fn day_profit() -> Value {
    json!({
        "day": "2026-11-22", "revenue": 15664, "cost": 6120, "profit": 9544, "shrinkage": 0,
        "closed": false, "adjustment_revenue": 0, "adjustment_cost": 0
    })
}

fn period() -> Value {
    json!({
        "through": "2026-10-31", "closed_at": TIME, "closed_by": PERSON_ID,
        "days": [{
            "day": "2026-10-31", "revenue": 15664, "cost": 6120, "profit": 9544,
            "shrinkage": 0, "closed": true, "adjustment_revenue": 0, "adjustment_cost": 0
        }]
    })
}

fn examples(method: &str, path: &str) -> Option<(Option<Value>, Option<Value>)> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let ex = match (method, path) {
        ("get", "/health") => (None, json!({"status": "ok", "has_shop": true})),
        ("get", "/status") => (
            None,
            json!({
                "has_shop": true, "shop_id": SHOP_ID, "shop_name": "Corner Shop",
                "device": device(), "version": env!("CARGO_PKG_VERSION"), "envelopes": 1234,
                "documents": 9, "update_needed": null
            }),
        ),
        ("get", "/setup") => (None, json!({"open": true, "token_required": false})),
        ("post", "/setup") => (
            Some(json!({
                "shop_name": "Corner Shop", "owner_name": "Olivia", "username": "olivia",
                "password": "a long password", "currency": "EUR", "timezone": "Europe/Paris",
                "tax_mode": "inclusive", "device_name": "Till 1"
            })),
            json!({"shop_id": SHOP_ID, "recovery_key": "tmrk1-…"}),
        ),
        ("post", "/join") => (
            Some(json!({"invite": "K7QF2-M9XWD"})),
            json!({
                "shop_id": SHOP_ID, "shop_name": "Corner Shop", "device_id": DEVICE_ID,
                "device_name": "Till 2", "receipt_prefix": "T2"
            }),
        ),
        ("post", "/login") => (
            Some(json!({"username": "olivia", "password": "a long password"})),
            json!({
                "token": "2f8b0c…", "csrf_token": "a91d3e…", "expires_in": 43200,
                "person": session_person()
            }),
        ),
        ("get", "/server") => (None, json!({"kind": "relay"})),
        ("get", "/login/people") => (
            None,
            json!([{"id": PERSON_ID, "name": "Sam", "username": "sam", "role": "staff"}]),
        ),
        ("post", "/logout") => (None, Value::Null),
        ("get", "/me") => (
            None,
            json!({"csrf_token": "a91d3e…", "expires_in": 43200, "person": session_person()}),
        ),
        ("get", "/people") => (None, json!([person("staff")])),
        ("post", "/people") => (
            Some(json!({"name": "Sam", "username": "sam", "role": "staff", "pin": "4821"})),
            person("staff"),
        ),
        ("post", "/members/{id}/revoke") => (None, Value::Null),
        ("get", "/devices") => (None, json!([device()])),
        ("get", "/revoked-sales") => (
            None,
            json!([{
                "device_id": DEVICE_ID, "device_name": "Till 2", "revoked_at": TIME,
                "revoked_by": "Olivia", "count": 1, "total": 560,
                "sales": [{
                    "id": SALE_ID, "receipt": "T2-000042", "time": TIME, "person": PERSON_ID,
                    "person_name": "Sam", "lines": [sale_line()], "total": 560, "tax": 89,
                    "payments": [{"method": "cash", "amount": 1000}], "change_due": 440
                }]
            }]),
        ),
        ("post", "/revoked-sales/accept") => (
            Some(json!({"device": DEVICE_ID})),
            json!({"accepted": [sale()], "already_recorded": []}),
        ),
        ("post", "/revoked-sales/dismiss") => (
            Some(json!({"sales": [SALE_ID]})),
            json!({"dismissed": 1}),
        ),
        ("get", "/settings") => (None, settings()),
        ("patch", "/settings") => (
            Some(json!({"receipt_text": "Thank you!", "oversell": "warn"})),
            settings(),
        ),
        ("get", "/products") => (None, json!([product()])),
        ("post", "/products") => (
            Some(json!({
                "sku": "COF", "name": "Coffee", "price": 280, "barcode": "4006381333931",
                "category": "Drinks", "cost": 60, "tax_rate": 1900, "reorder_level": 10
            })),
            product(),
        ),
        ("get", "/products/{id}") => (None, product()),
        ("patch", "/products/{id}") => (Some(json!({"price": 300})), {
            let mut p = product();
            p["price"] = json!(300);
            p
        }),
        ("get", "/stock") => (
            None,
            json!([{
                "product_id": PRODUCT_ID, "variant_id": null, "sku": "COF", "name": "Coffee",
                "on_hand": 48, "reorder_level": 10, "low": false, "value_at_cost": 2880
            }]),
        ),
        ("get", "/stock/{product_id}/movements") => (
            None,
            json!([movement("stock_in", 50), movement("sale", -2)]),
        ),
        ("post", "/stock/in") => (
            Some(json!({"product_id": PRODUCT_ID, "qty": 50, "unit_cost": 60})),
            movement("stock_in", 50),
        ),
        ("post", "/stock/remove") => (
            Some(json!({"product_id": PRODUCT_ID, "qty": 1, "reason": "damaged"})),
            movement("removal", -1),
        ),
        ("post", "/stock/adjust") => (
            Some(json!({"product_id": PRODUCT_ID, "counted": 47, "note": "Monday count"})),
            movement("adjustment", -1),
        ),
        ("get", "/sales") => (None, json!([sale()])),
        ("post", "/sales") => (
            Some(json!({
                "lines": [{"product_id": PRODUCT_ID, "qty": 2}],
                "payments": [{"method": "cash", "amount": 1000}]
            })),
            sale(),
        ),
        ("get", "/sales/{id}") => (None, sale()),
        ("post", "/sales/{id}/void") => (Some(json!({"reason": "wrong item"})), {
            let mut s = sale();
            s["voided_by"] = json!(ENTRY_ID);
            s
        }),
        ("post", "/sales/{id}/return") => (
            Some(json!({"lines": [{"line": 0, "qty": 1}], "refund_method": "cash"})),
            json!({
                "id": ENTRY_ID, "sale_id": SALE_ID, "time": TIME,
                "lines": [{
                    "product_id": PRODUCT_ID, "variant_id": null, "sku": "COF", "name": "Coffee",
                    "qty": 1, "unit_price": 280, "tax_rate": 1900, "discount": 0, "tax": 45,
                    "total": 280
                }],
                "refund": 280, "tax": 45, "refund_method": "cash"
            }),
        ),
        ("get", "/reports/daily") => (
            None,
            json!([{"day": "2026-11-22", "count": 31, "total": 18640, "tax": 2980, "refunds": 280}]),
        ),
        ("get", "/documents") => (
            None,
            json!([
                {"id": "catalog", "kind": "catalog", "heads": ["6b1f…"], "changes": 12, "size": 2210},
                {
                    "id": format!("ledger/2026-11-22/{DEVICE_ID}/0"), "kind": "ledger",
                    "heads": ["c04e…"], "changes": 31, "size": 9120
                }
            ]),
        ),
        ("get", "/documents/{id}") => (None, json!("<Automerge document bytes>")),
        ("get", "/backup") => (None, json!("<encrypted backup file bytes: tillmesh-seal header (recipients), 64 KiB chunks, checksum>")),
        ("get", "/export/sales.csv") => (
            None,
            json!(
                "sale_id,receipt,time,day,device,person,line,sku,name,qty,unit_price,discount,tax,line_total,line_total_formatted,returned_qty,voided\n\
                 5d0c2b7a-…,T1-000042,2026-11-22T09:00:00+01:00,2026-11-22,0123456789abcdef,Olivia,0,COF,Coffee,2,280,0,89,560,5.60,0,false\n"
            ),
        ),
        ("get", "/export/movements.csv") => (
            None,
            json!(
                "entry_id,time,product_id,variant_id,sku,name,kind,qty,unit_cost,unit_cost_formatted,reason,note,device,person\n\
                 7a6b5c4d-…,2026-11-22T08:00:00+01:00,0b8c3f6e-…,,COF,Coffee,stock_in,50,60,0.60,,,0123456789abcdef,Olivia\n"
            ),
        ),
        ("get", "/export/stock.csv") => (
            None,
            json!(
                "product_id,variant_id,sku,name,on_hand,reorder_level,low,value_at_cost,value_at_cost_formatted\n\
                 0b8c3f6e-…,,COF,Coffee,48,10,false,2880,28.80\n"
            ),
        ),
        ("get", "/reports/sales") => (
            None,
            serde_json::from_str::<Value>(r#"{"from": "2026-11-20", "to": "2026-11-21", "group": "day", "periods": [{"period": "2026-11-20", "from": "2026-11-20", "to": "2026-11-20", "count": 9, "gross": 21902, "discounts": 0, "refunds": 0, "returns": 0, "tax": 3248, "net": 18654, "rounding": 0}], "totals": {"count": 17, "gross": 34435, "discounts": 0, "refunds": 0, "returns": 0, "tax": 4918, "net": 29517, "rounding": 0}}"#).unwrap_or(Value::Null),
        ),
        ("get", "/reports/top-sellers") => (
            None,
            serde_json::from_str::<Value>(r#"{"from": "2026-10-24", "to": "2026-11-22", "by_qty": [{"product_id": "428d86a8-8a9c-45c1-9fe2-97964aa5a8fb", "variant_id": null, "sku": "CAN-SOY", "name": "Soy candle", "qty": 19, "revenue": 35150}], "by_revenue": [{"product_id": "428d86a8-8a9c-45c1-9fe2-97964aa5a8fb", "variant_id": null, "sku": "CAN-SOY", "name": "Soy candle", "qty": 19, "revenue": 35150}]}"#).unwrap_or(Value::Null),
        ),
        ("get", "/reports/staff") => (
            None,
            serde_json::from_str::<Value>(r#"{"from": "2026-11-21", "to": "2026-11-21", "people": [{"person_id": "3dd91b66-e197-4512-896f-cd790f19d442", "name": "Demo Owner", "count": 8, "total": 12533, "refunds": 0}], "tills": [{"device": "3936cfa3a45fe36c", "name": "Till 1", "count": 8, "total": 12533, "refunds": 0}]}"#).unwrap_or(Value::Null),
        ),
        ("get", "/reports/tax") => (
            None,
            serde_json::from_str::<Value>(r#"{"from": "2026-11-21", "to": "2026-11-21", "rates": [{"tax_rate": 550, "net": 3463, "tax": 190, "gross": 3653}, {"tax_rate": 2000, "net": 7400, "tax": 1480, "gross": 8880}], "totals": {"tax_rate": 0, "net": 10863, "tax": 1670, "gross": 12533}}"#).unwrap_or(Value::Null),
        ),
        ("get", "/reports/payments") => (
            None,
            serde_json::from_str::<Value>(r#"{"from": "2026-11-21", "to": "2026-11-21", "methods": [{"method": "cash", "received": 6956, "refunded": 0, "net": 6956}, {"method": "card", "received": 5577, "refunded": 0, "net": 5577}, {"method": "other", "received": 0, "refunded": 0, "net": 0}], "received": 12533, "refunded": 0, "net": 12533}"#).unwrap_or(Value::Null),
        ),
        ("get", "/reports/inventory") => (
            None,
            serde_json::from_str::<Value>(r#"{"at_cost": 157405, "at_retail": 410493, "on_hand": 673, "items": 10, "negative": 0, "categories": [{"category": "Grocery", "on_hand": 287, "at_cost": 64280, "at_retail": 128443}, {"category": "Home", "on_hand": 125, "at_cost": 62200, "at_retail": 189650}]}"#).unwrap_or(Value::Null),
        ),
        ("get", "/reports/movements") => (
            None,
            serde_json::from_str::<Value>(r#"{"from": "2026-11-21", "to": "2026-11-22", "kinds": ["delivery", "sale", "stock_in"], "days": [{"day": "2026-11-21", "qty_in": 0, "qty_out": 22, "kinds": [{"kind": "delivery", "qty_in": 0, "qty_out": 0}, {"kind": "sale", "qty_in": 0, "qty_out": 22}, {"kind": "stock_in", "qty_in": 0, "qty_out": 0}]}, {"day": "2026-11-22", "qty_in": 824, "qty_out": 5, "kinds": [{"kind": "delivery", "qty_in": 24, "qty_out": 0}, {"kind": "sale", "qty_in": 0, "qty_out": 5}, {"kind": "stock_in", "qty_in": 800, "qty_out": 0}]}]}"#).unwrap_or(Value::Null),
        ),
        ("get", "/alerts") => (
            None,
            serde_json::from_str::<Value>(r#"[{"id": "oversold:0b8c3f6e-6a39-4a8e-9f43-2f1d5c0e7a11:-:3", "kind": "oversold", "severity": "critical", "time": 1795338000000, "title": "Coffee is oversold: 2 below zero", "detail": "Two tills sold the last units while cut off from each other.", "refs": {"entries": ["5d0c2b7a-0f4e-4c55-9a3b-61d2e8f0a9c4"], "products": ["0b8c3f6e-6a39-4a8e-9f43-2f1d5c0e7a11"], "devices": []}, "dismissed": false}]"#).unwrap_or(Value::Null),
        ),
        ("post", "/alerts/{id}/dismiss") => (
            None,
            serde_json::from_str::<Value>(r#"{"id": "oversold:0b8c3f6e-6a39-4a8e-9f43-2f1d5c0e7a11:-:3", "kind": "oversold", "severity": "critical", "time": 1795338000000, "title": "Coffee is oversold: 2 below zero", "detail": "Two tills sold the last units while cut off from each other.", "refs": {"entries": ["5d0c2b7a-0f4e-4c55-9a3b-61d2e8f0a9c4"], "products": ["0b8c3f6e-6a39-4a8e-9f43-2f1d5c0e7a11"], "devices": []}, "dismissed": true}"#).unwrap_or(Value::Null),
        ),
        ("get", "/audit") => (
            None,
            serde_json::from_str::<Value>(r#"{"entries": [{"time": 1795345162826, "doc": "ledger/2026-11-22/f7b48f364b477c9d/0", "kind": "cash_move", "summary": "cash_move", "device": "f7b48f364b477c9d", "device_name": "Till 1", "person": "cdc784cd-95d4-4ef0-aece-0ae2a4127d72", "person_name": "Demo Owner", "hash": "bc5addbcaa77fd17c4098fca663b5249ad7ff390de5e0d1c73fd5ed7c15240b1", "signer": "f7b48f364b477c9d135351bb4a4c014cbc43c4d398a0a7b236793f6c8846d6e9", "signer_role": "device", "signature": "61fcf6e172a0248ff745a33e44225668f43bf769344dc7043fbe2545e41e87d1c43595b5f7d9793cfcffba63c9e0623c20af6d2b70d81a9dc7b2e7afa7300e09", "entries": ["85071687-2623-4d9c-82c3-ed0bfeda6ada"]}], "next_cursor": "1795345162826:bc5addbcaa77fd17c4098fca663b5249ad7ff390de5e0d1c73fd5ed7c15240b1"}"#).unwrap_or(Value::Null),
        ),
        ("get", "/audit/export") => (None, json!("{\"type\":\"header\",\"format\":\"tillmesh-audit/1\",\"shop_id\":\"30a574f8-b416-4770-960c-ab221bbeb940\",\"shop_name\":\"Demo Corner Shop\",\"exported_at\":1795345164050,\"exported_by\":\"f7b48f364b477c9d\"}\n")),
        ("get", "/export/products.csv") => (None, json!("sku,name,price,barcode,category,unit,cost,tax_rate,reorder_level,archived,currency\nBRD-SD,Sourdough loaf,4.50,,Bakery,pcs,1.80,5.5,5,false,EUR\nCAN-SOY,Soy candle,18.50,,Home,pcs,6.00,20,5,false,EUR\n")),
        ("get", "/export/sale-lines.csv") => (None, json!("sale_id,receipt,time,day,device,person,line,product_id,variant_id,sku,name,qty,unit_price,discount,tax_rate,tax,total,currency,returned_qty,voided\n5199b703-803f-49e1-9af2-c1eb9041a006,T1-000001,2026-11-15T19:59:22.313Z,2026-11-15,f7b48f364b477c9d,cdc784cd-95d4-4ef0-aece-0ae2a4127d72,0,4e73bbf2-220f-4507-97e1-5d7222eff006,,TEA-GRN,Green tea 20 bags,1,3.49,0.00,5.5,0.18,3.49,EUR,0,false\n")),
        ("get", "/suppliers") => (None, json!([supplier()])),
        ("post", "/suppliers") => (
            Some(json!({"name": "Bean Co", "contact": "Sam", "email": "orders@bean.example"})),
            supplier(),
        ),
        ("put", "/suppliers/{id}") => (
            Some(json!({"name": "Bean Co", "phone": "+33 1 23 45 67 89"})),
            supplier(),
        ),
        ("get", "/purchase-orders") => (None, json!([purchase_order()])),
        ("post", "/purchase-orders") => (
            Some(json!({
                "supplier_id": SUPPLIER_ID, "expected_on": "2026-11-28",
                "lines": [{"product_id": PRODUCT_ID, "qty": 10, "unit_cost": 60}]
            })),
            {
                let mut po = purchase_order();
                po["status"] = json!("draft");
                po["deliveries"] = json!([]);
                po["received_value"] = json!(0);
                po["lines"][0]["received"] = json!(0);
                po["lines"][0]["outstanding"] = json!(0);
                po
            },
        ),
        ("get", "/purchase-orders/{id}") => (None, purchase_order()),
        ("patch", "/purchase-orders/{id}") => (Some(json!({"status": "sent"})), purchase_order()),
        ("post", "/purchase-orders/{id}/deliveries") => (
            Some(json!({
                "note_number": "DN-1",
                "lines": [{"product_id": PRODUCT_ID, "qty": 4, "unit_cost": 65}]
            })),
            delivery(),
        ),
        ("get", "/shifts") => (None, json!([shift(true)])),
        ("post", "/shifts") => (Some(json!({"float": 10000})), {
            let mut s = shift(false);
            for k in [
                "sales",
                "cash_sales",
                "card_sales",
                "cash_refunds",
                "pay_ins",
                "pay_outs",
            ] {
                s[k] = json!(0);
            }
            s["expected"] = json!(10000);
            s["moves"] = json!([]);
            s
        }),
        ("get", "/shifts/current") => (None, shift(false)),
        ("post", "/shifts/current/cash") => (
            Some(json!({"kind": "pay_out", "amount": 2000, "reason": "window cleaner"})),
            shift(false),
        ),
        ("post", "/shifts/current/close") => (
            Some(json!({"counted": 9350, "note": "short 50 cents"})),
            shift(true),
        ),
        ("get", "/shifts/{id}") => (None, shift(true)),
        ("get", "/refunds") => (None, json!([refund()])),
        ("post", "/refunds") => (
            Some(json!({
                "lines": [{"product_id": PRODUCT_ID, "qty": 2}], "refund_method": "card",
                "reason": "no receipt"
            })),
            refund(),
        ),
        ("get", "/tickets") => (None, json!([ticket()])),
        ("post", "/tickets") => (
            Some(json!({"name": "Table 4", "lines": [{"product_id": PRODUCT_ID, "qty": 2}]})),
            ticket(),
        ),
        ("get", "/tickets/{id}") => (None, ticket()),
        ("put", "/tickets/{id}") => (
            Some(json!({"name": "Table 4", "lines": [{"product_id": PRODUCT_ID, "qty": 3}]})),
            ticket(),
        ),
        ("post", "/tickets/{id}/discard") => (None, {
            let mut t = ticket();
            t["status"] = json!("discarded");
            t
        }),
        ("get", "/reports/profit") => (None, json!([day_profit()])),
        ("get", "/reports/profit/products") => (
            None,
            json!([{
                "product_id": PRODUCT_ID, "sku": "COF", "name": "Coffee", "qty": 31,
                "revenue": 7294, "cost": 1860, "profit": 5434
            }]),
        ),
        ("get", "/sales/{id}/profit") => (
            None,
            json!({
                "sale_id": SALE_ID, "receipt": "T1-000042", "revenue": 471, "cost": 120,
                "profit": 351, "line_costs": [120]
            }),
        ),
        ("get", "/reports/low-stock") => (
            None,
            json!([{
                "product_id": PRODUCT_ID, "variant_id": null, "sku": "COF", "name": "Coffee",
                "on_hand": 4, "on_order": 6, "reorder_level": 10, "covered": false
            }]),
        ),
        ("get", "/periods") => (None, json!([period()])),
        ("post", "/periods") => (Some(json!({"through": "2026-10-31"})), period()),
        ("get", "/export/profit.csv") => (
            None,
            json!(
                "day,currency,revenue,cost,profit,shrinkage,closed,adjustment_revenue,adjustment_cost,revenue_formatted,cost_formatted,profit_formatted\n\
                 2026-11-22,EUR,15664,6120,9544,0,false,0,0,156.64,61.20,95.44\n"
            ),
        ),
        ("get", "/export/shifts.csv") => (
            None,
            json!(
                "shift_id,device,opened_at,closed_at,currency,float,sales,cash_sales,card_sales,other_sales,cash_refunds,pay_ins,pay_outs,expected,counted,difference,expected_formatted,counted_formatted,difference_formatted,note\n\
                 e5f1e200-…,0123456789abcdef,2026-11-22T08:00:00Z,2026-11-22T16:00:00Z,EUR,10000,2,1200,3000,0,300,500,2000,9400,9350,-50,94.00,93.50,-0.50,\n"
            ),
        ),
        ("post", "/invites") => (Some(json!({"role": "till", "name": "Till 2"})), {
            let mut i = invite();
            i["qr_svg"] = json!("<svg xmlns=\"http://www.w3.org/2000/svg\" …</svg>");
            i
        }),
        ("get", "/peers") => (
            None,
            json!([{
                "peer_id": PEER_ID, "name": "Till 2", "role": "till", "device_id": "fedcba9876543210",
                "found_by": "mdns", "connected": true, "rtt_ms": 1.8, "last_contact": TIME,
                "addrs": [format!("/ip4/192.168.1.23/tcp/7879/p2p/{PEER_ID}")], "we_lacked": 0,
                "rejected": 0, "last_pull": TIME, "pull_error": null,
                "last_push": null, "push_error": null, "last_snapshot": null, "via_relay": false
            }, {
                "peer_id": "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo", "name": "Owner's laptop",
                "role": "till", "device_id": "5e6f708192a3b4c5", "found_by": "inbound", "connected": true,
                "rtt_ms": 51.2, "last_contact": TIME,
                "addrs": ["/dns4/relay.example.com/tcp/7879/p2p/12D3KooWJbYtRZrjEgFZHyAV2gDVQHdNvpCUnPnpG2fWbcRWvnth/p2p-circuit/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"],
                "we_lacked": 0, "rejected": 0, "last_pull": TIME, "pull_error": null,
                "last_push": null, "push_error": null, "last_snapshot": null, "via_relay": true
            }, {
                "peer_id": "12D3KooWJbYtRZrjEgFZHyAV2gDVQHdNvpCUnPnpG2fWbcRWvnth", "name": "Cloud relay",
                "role": "relay", "device_id": "0a1b2c3d4e5f6071", "found_by": "static", "connected": true,
                "rtt_ms": 24.5, "last_contact": TIME,
                "addrs": ["/dns4/relay.example.com/tcp/7879/p2p/12D3KooWJbYtRZrjEgFZHyAV2gDVQHdNvpCUnPnpG2fWbcRWvnth"],
                "we_lacked": 0, "rejected": 0, "last_pull": TIME, "pull_error": null,
                "last_push": TIME, "push_error": null, "last_snapshot": TIME, "via_relay": false
            }]),
        ),
        ("post", "/peers") => (
            Some(json!({"addr": format!("/ip4/192.168.1.23/tcp/7879/p2p/{PEER_ID}")})),
            Value::Null,
        ),
        ("get", "/mesh") => (
            None,
            json!({
                "running": true, "mdns": true, "peer_id": PEER_ID,
                "addrs": [
                    format!("/ip4/192.168.1.20/tcp/7879/p2p/{PEER_ID}"),
                    format!("/dns4/relay.example.com/tcp/7879/p2p/12D3KooWJbYtRZrjEgFZHyAV2gDVQHdNvpCUnPnpG2fWbcRWvnth/p2p-circuit/p2p/{PEER_ID}")
                ]
            }),
        ),
        ("get", "/events") => (
            None,
            json!({"type": "sale_recorded", "sale_id": SALE_ID, "receipt": "T1-000042", "total": 560}),
        ),
        _ => return None,
    };
    Some((ex.0, Some(ex.1).filter(|v| !v.is_null())))
}

/// The error code an error status carries in the examples.
fn error_example(status: &str) -> Option<Value> {
    let (code, message, field) = match status {
        "400" => ("invalid", "must be at least 1", Some("lines[0].qty")),
        "401" => ("unauthorized", "not logged in", None),
        "403" => ("forbidden", "only managers and owners may do this", None),
        "404" => ("not_found", "no such product", None),
        "409" => ("conflict", "the SKU COF is already used", None),
        "413" => ("too_large", "the request body is too large", None),
        "429" => ("rate_limited", "too many attempts; try again in 60 s", None),
        "502" => ("unreachable", "the inviting device did not answer", None),
        _ => return None,
    };
    Some(json!({"error": {"code": code, "message": message, "field": field}}))
}

/// Adds the examples to a generated OpenAPI document (as JSON).
pub(crate) fn add_examples(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let found = examples(method, path);
            if let Some(contents) = op
                .pointer_mut("/requestBody/content")
                .and_then(Value::as_object_mut)
                && let Some((Some(request), _)) = &found
            {
                for media in contents.values_mut() {
                    if media.get("example").is_none() {
                        media["example"] = request.clone();
                    }
                }
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let example = if status.starts_with('2') {
                    found.as_ref().and_then(|(_, answer)| answer.clone())
                } else {
                    error_example(status)
                };
                let (Some(example), Some(contents)) = (
                    example,
                    response.get_mut("content").and_then(Value::as_object_mut),
                ) else {
                    continue;
                };
                for (media_type, media) in contents.iter_mut() {
                    if media_type == "application/octet-stream" {
                        // `Vec<u8>` is documented as a list of integers; the bytes are raw.
                        media["schema"] = json!({"type": "string", "format": "binary"});
                    }
                    if media.get("example").is_none() {
                        media["example"] = example.clone();
                    }
                }
            }
        }
    }
}
