//! Cost of converting a tool schema to OpenAPI form, against a plain deep clone of the same
//! schema measured in the same run: conversion necessarily builds a new tree, so the clone is
//! its floor and the report reads as a ratio (`convert_schema` time / `clone_baseline` time).
//!
//! The schema is shaped like what pydantic emits for a non-trivial tool: a dozen `$defs`
//! referring to each other, `Optional[...]` as `anyOf` with `null`, enums, a discriminated
//! union (`oneOf` + `discriminator.mapping` pointing into `$defs`), bounds, formats,
//! defaults and descriptions.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpo::openapi::schema::convert_schema;
use serde_json::{Map, Value, json};

fn optional(reference: &str) -> Value {
    json!({"anyOf": [{"$ref": reference}, {"type": "null"}], "default": null})
}

fn large_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CreateOrderArgs",
        "description": "Arguments of the create_order tool.",
        "type": "object",
        "properties": {
            "customer": {"$ref": "#/$defs/Customer"},
            "items": {
                "type": "array",
                "items": {"$ref": "#/$defs/LineItem"},
                "minItems": 1,
                "maxItems": 200,
                "description": "What is ordered."
            },
            "shipping": optional("#/$defs/Shipment"),
            "payment": {"$ref": "#/$defs/PaymentMethod"},
            "discounts": {"type": "array", "items": {"$ref": "#/$defs/Discount"}, "default": []},
            "status": {"$ref": "#/$defs/Status", "default": "draft"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "uniqueItems": true},
            "metadata": optional("#/$defs/Metadata"),
            "notes": {"anyOf": [{"type": "string", "maxLength": 2000}, {"type": "null"}], "default": null, "title": "Notes"}
        },
        "required": ["customer", "items", "payment"],
        "additionalProperties": false,
        "$defs": {
            "Address": {
                "title": "Address",
                "type": "object",
                "properties": {
                    "line1": {"type": "string", "minLength": 1, "maxLength": 200},
                    "line2": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                    "city": {"type": "string"},
                    "postal_code": {"type": "string", "pattern": "^[A-Z0-9 -]{3,10}$"},
                    "country": {"type": "string", "enum": ["FR", "DE", "US", "GB", "JP", "BR", "IN", "CN"], "description": "ISO 3166-1 alpha-2"}
                },
                "required": ["line1", "city", "postal_code", "country"]
            },
            "Contact": {
                "title": "Contact",
                "type": "object",
                "properties": {
                    "email": {"type": "string", "format": "email"},
                    "phone": {"anyOf": [{"type": "string", "pattern": "^\\+?[0-9 ]{6,20}$"}, {"type": "null"}], "default": null}
                },
                "required": ["email"]
            },
            "Customer": {
                "title": "Customer",
                "type": "object",
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "name": {"type": "string", "examples": ["Ada Lovelace"]},
                    "contact": {"$ref": "#/$defs/Contact"},
                    "billing_address": {"$ref": "#/$defs/Address"},
                    "addresses": {"type": "array", "items": {"$ref": "#/$defs/Address"}, "maxItems": 10},
                    "referred_by": optional("#/$defs/Customer")
                },
                "required": ["id", "name", "contact", "billing_address"]
            },
            "Currency": {"title": "Currency", "type": "string", "enum": ["EUR", "USD", "GBP", "JPY", "BRL", "INR", "CNY"]},
            "Money": {
                "title": "Money",
                "type": "object",
                "properties": {
                    "amount": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                    "currency": {"$ref": "#/$defs/Currency"}
                },
                "required": ["amount", "currency"]
            },
            "LineItem": {
                "title": "LineItem",
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1},
                    "unit_price": {"$ref": "#/$defs/Money"},
                    "discount": optional("#/$defs/Discount"),
                    "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}}
                },
                "required": ["sku", "unit_price"]
            },
            "Discount": {
                "title": "Discount",
                "oneOf": [
                    {"type": "object", "properties": {"kind": {"const": "percent"}, "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}}, "required": ["kind", "percent"]},
                    {"type": "object", "properties": {"kind": {"const": "amount"}, "amount": {"$ref": "#/$defs/Money"}}, "required": ["kind", "amount"]}
                ]
            },
            "Shipment": {
                "title": "Shipment",
                "type": "object",
                "properties": {
                    "address": {"$ref": "#/$defs/Address"},
                    "method": {"type": "string", "enum": ["standard", "express", "pickup"], "default": "standard"},
                    "requested_date": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}], "default": null},
                    "cost": {"$ref": "#/$defs/Money"}
                },
                "required": ["address"]
            },
            "Status": {"title": "Status", "type": "string", "enum": ["draft", "submitted", "paid", "shipped", "cancelled"]},
            "Tag": {"title": "Tag", "type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[a-z0-9-]+$"},
            "Metadata": {
                "title": "Metadata",
                "type": "object",
                "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]},
                "maxProperties": 50
            },
            "Card": {
                "title": "Card",
                "type": "object",
                "properties": {
                    "type": {"const": "card"},
                    "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                    "expiry": {"type": "string", "pattern": "^[0-9]{2}/[0-9]{2}$"},
                    "billing_address": optional("#/$defs/Address")
                },
                "required": ["type", "last4", "expiry"]
            },
            "BankTransfer": {
                "title": "BankTransfer",
                "type": "object",
                "properties": {"type": {"const": "bank_transfer"}, "iban": {"type": "string", "minLength": 15, "maxLength": 34}},
                "required": ["type", "iban"]
            },
            "Wallet": {
                "title": "Wallet",
                "type": "object",
                "properties": {"type": {"const": "wallet"}, "provider": {"type": "string", "enum": ["apple", "google", "paypal"]}, "balance": {"$ref": "#/$defs/Money"}},
                "required": ["type", "provider"]
            },
            "PaymentMethod": {
                "title": "PaymentMethod",
                "oneOf": [{"$ref": "#/$defs/Card"}, {"$ref": "#/$defs/BankTransfer"}, {"$ref": "#/$defs/Wallet"}],
                "discriminator": {
                    "propertyName": "type",
                    "mapping": {"card": "#/$defs/Card", "bank_transfer": "#/$defs/BankTransfer", "wallet": "#/$defs/Wallet"}
                }
            }
        }
    })
}

fn bench(c: &mut Criterion) {
    let schema = large_schema();
    let mut group = c.benchmark_group("schema_conversion");
    group.bench_function("convert_schema", |b| {
        b.iter(|| {
            let mut components = Map::new();
            let converted = convert_schema(
                black_box(&schema),
                black_box("create_order_input"),
                &mut components,
            );
            black_box((converted, components))
        });
    });
    group.bench_function("clone_baseline", |b| {
        b.iter(|| black_box(black_box(&schema).clone()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
