//! A minimal consumer of scimd's AMQP messages: prints each message as one JSON line (its
//! properties, headers and body) and acknowledges it after printing.
//!
//! ```text
//! cargo run --example consume -- amqp://guest:guest@127.0.0.1:5672/%2f SCIM
//! ```
//!
//! Delivery is at-least-once: after a broker outage or a scimd crash a message can arrive twice,
//! with the same `message_id`. Keep the highest `scim-version` seen per `scim-id` and ignore
//! anything not newer.

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Map, Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let queue = args.next().unwrap_or_else(|| "SCIM".into());
    let limit: Option<usize> = args.next().and_then(|n| n.parse().ok());

    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, FieldTable::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "scimd-example".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut seen = 0usize;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let props = &delivery.properties;
        let mut headers = Map::new();
        if let Some(table) = props.headers() {
            for (k, v) in table.inner() {
                headers.insert(k.to_string(), header_json(v));
            }
        }
        let body: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
        let line = json!({
            "message_id": props.message_id().as_ref().map(|m| m.to_string()),
            "content_type": props.content_type().as_ref().map(|m| m.to_string()),
            "delivery_mode": props.delivery_mode(),
            "timestamp": props.timestamp(),
            "routing_key": delivery.routing_key.to_string(),
            "headers": headers,
            "body": body,
        });
        println!("{line}");
        delivery.ack(BasicAckOptions::default()).await?;
        seen += 1;
        if limit.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(())
}

fn header_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::LongString(s) => json!(s.to_string()),
        AMQPValue::ShortString(s) => json!(s.to_string()),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::Boolean(b) => json!(b),
        other => json!(format!("{other:?}")),
    }
}
