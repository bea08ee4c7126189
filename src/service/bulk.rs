//! Bulk (RFC 7644 §3.7): a BulkRequest turned into one store write whose operations are applied in
//! order in one transaction (one fsync for the lot), each succeeding or failing on its own.

use std::collections::HashMap;

use serde_json::{Value, json};
use uuid::Uuid;

use super::Service;
use crate::store::{AsyncEcho, BulkWrite, Outcome, Write, WriteContext};
use scim::bulk::{self, BULK_RESPONSE_SCHEMA, Method, OperationResult, OperationTarget};
use scim::{ScimError, patch};

/// What the answer to one operation echoes of it.
struct Echo {
    method: String,
    bulk_id: Option<String>,
    /// The resource's URL path below the base, once known.
    path: Option<String>,
}

/// What a Bulk's answer needs of its request once the writer has run it: each operation's echo,
/// and the order the writer ran them in.
pub(super) struct BulkEchoes {
    echoes: Vec<Echo>,
    /// `order[t]` is the request index of the operation the writer ran `t`-th.
    order: Vec<usize>,
}

impl Service {
    /// Runs a BulkRequest and answers its BulkResponse. Operations referring to others by bulkId
    /// run after them; the answer lists the operations in request order, without those not
    /// attempted once `failOnErrors` was reached. `base` prefixes each `location`.
    pub async fn bulk(
        &self,
        body: Value,
        ctx: WriteContext,
        base: &str,
    ) -> Result<Value, ScimError> {
        let (write, echoes) = self.bulk_write_of(bulk::parse(body)?).await;
        let outcome = self.store.write(write, ctx).await?;
        echoes.answer(outcome, base)
    }

    /// The one store write of a parsed BulkRequest, and what its answer needs.
    pub(super) async fn bulk_write_of(&self, request: bulk::BulkRequest) -> (Write, BulkEchoes) {
        let mut ops = request.operations;
        // Ids are assigned before anything runs, so a reference resolves to the id its POST will
        // create; whether that POST succeeded is checked by the writer, in order.
        let new_ids: Vec<Option<String>> = ops
            .iter()
            .map(|op| {
                matches!(op.parsed, Ok((Method::Post, _))).then(|| Uuid::new_v4().to_string())
            })
            .collect();
        let plan = bulk::plan(&ops, &new_ids);
        let mut ids: HashMap<String, String> = HashMap::new();
        for (op, id) in ops.iter().zip(&new_ids) {
            if let (Some(b), Some(id)) = (&op.bulk_id, id) {
                ids.entry(b.clone()).or_insert_with(|| id.clone());
            }
        }
        let mut turn = vec![0; ops.len()];
        for (t, &i) in plan.order.iter().enumerate() {
            turn[i] = t;
        }
        let mut echoes: Vec<Echo> = Vec::with_capacity(ops.len());
        let mut writes: Vec<BulkWrite> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter_mut().enumerate() {
            let target = op
                .parsed
                .as_ref()
                .ok()
                .map(|(_, t)| resolved(t, &new_ids[i], &ids));
            echoes.push(Echo {
                method: op.method_text.clone(),
                bulk_id: op.bulk_id.clone(),
                path: target
                    .as_ref()
                    .and_then(|(rt, id)| id.as_ref().map(|id| format!("/{}/{id}", rt.endpoint()))),
            });
        }
        // Built concurrently: password hashing is the slow part, and it is bounded per core.
        let built = futures::future::join_all(plan.order.iter().map(|&i| {
            let op = &mut ops[i];
            let (parsed, version, data) = (op.parsed.clone(), op.version.clone(), op.data.take());
            let refused = plan.refused[i].clone();
            let (new_id, ids) = (&new_ids[i], &ids);
            async move {
                match refused {
                    Some(refused) => Err(refused),
                    None => self.bulk_write(parsed, version, data, new_id, ids).await,
                }
            }
        }))
        .await;
        for (&i, write) in plan.order.iter().zip(built) {
            writes.push(BulkWrite {
                write,
                after: plan.refers_to[i].iter().map(|&j| turn[j]).collect(),
            });
        }
        let write = Write::Bulk {
            operations: writes,
            fail_on_errors: request.fail_on_errors,
        };
        (
            write,
            BulkEchoes {
                echoes,
                order: plan.order,
            },
        )
    }
    /// The store write for one operation, its bulkId references replaced by ids.
    async fn bulk_write(
        &self,
        parsed: Result<(Method, OperationTarget), ScimError>,
        if_match: Option<String>,
        mut data: Option<Value>,
        new_id: &Option<String>,
        ids: &HashMap<String, String>,
    ) -> Result<Write, ScimError> {
        let (method, target) = parsed?;
        let (rt, id) = resolved(&target, new_id, ids);
        let id = id.unwrap_or_default();
        if let Some(d) = &mut data {
            bulk::resolve(d, ids);
        }
        let data = || {
            data.ok_or_else(|| {
                ScimError::invalid_value(format!("a {} operation needs data", method.as_str()))
            })
        };
        match method {
            Method::Post => self.create_write(rt, data()?, id).await,
            Method::Put => self.replace_write(rt, &id, data()?, if_match).await,
            Method::Patch => {
                let operations = patch::parse(data()?)?;
                self.patch_write(rt, &id, operations, if_match, false).await
            }
            Method::Delete => Ok(Write::Delete { rt, id, if_match }),
        }
    }
}

impl BulkEchoes {
    /// The BulkResponse of the writer's `outcome`, in request order.
    pub(super) fn answer(&self, outcome: Outcome, base: &str) -> Result<Value, ScimError> {
        let Outcome::Bulk(results) = outcome else {
            return Err(ScimError::unavailable(
                "the store gave an unexpected answer; retry the request",
            ));
        };
        let mut answers: Vec<Option<Value>> = vec![None; self.echoes.len()];
        for (t, result) in results.into_iter().enumerate() {
            let i = self.order[t];
            if let (Some(result), Some(echo)) = (result, self.echoes.get(i)) {
                answers[i] = Some(answer(echo, result, base));
            }
        }
        Ok(json!({
            "schemas": [BULK_RESPONSE_SCHEMA],
            "Operations": answers.into_iter().flatten().collect::<Vec<_>>(),
        }))
    }

    /// What each operation's asynchronous outcome echoes (no bulkId: RFC 9967 §2.5.1.2 names an
    /// operation by its index), in the order the writer runs them.
    pub(super) fn async_echoes(&self, base: &str) -> Vec<AsyncEcho> {
        self.order
            .iter()
            .filter_map(|&i| {
                self.echoes.get(i).map(|echo| AsyncEcho {
                    index: Some(i),
                    method: echo.method.clone(),
                    location: echo.path.as_ref().map(|path| format!("{base}{path}")),
                })
            })
            .collect()
    }
}

/// The resource type and id an operation acts on: the new id for a POST, the id a `bulkId:` path
/// stands for, or the path's id.
fn resolved(
    target: &OperationTarget,
    new_id: &Option<String>,
    ids: &HashMap<String, String>,
) -> (scim::ResourceType, Option<String>) {
    let id = match &target.id {
        Some(id) => Some(bulk::resolve_str(id, ids).unwrap_or_else(|| id.clone())),
        None => new_id.clone(),
    };
    (target.rt, id)
}

/// One entry of the BulkResponse (RFC 7644 §3.7.3).
fn answer(echo: &Echo, result: Result<Outcome, ScimError>, base: &str) -> Value {
    let location = echo.path.as_ref().map(|path| format!("{base}{path}"));
    let result = match &result {
        Ok(outcome) => {
            let (status, version) = outcome.bulk_status(&echo.method);
            OperationResult::Done { status, version }
        }
        Err(e) => OperationResult::Failed(e),
    };
    bulk::response_operation(
        &echo.method,
        echo.bulk_id.as_deref(),
        location.as_deref(),
        result,
    )
}
