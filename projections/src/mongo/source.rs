//! Reading the MongoDB layout back: every document of the Users and Groups collections, without
//! the bookkeeping fields (`_id`, `_version`). The id is `_id` when it is a string, else the
//! document's `id` (for collections keyed by ObjectIds).

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;

use super::{BOOKKEEPING_FIELDS, MongoProjection, MongoSettings, unavailable};
use crate::source::{Held, Source, check_document, unreadable};
use crate::{ProjectionError, ResourceKind};

/// The two collections of a database, read.
#[derive(Debug)]
pub struct MongoSource {
    connected: MongoProjection,
}

impl MongoSource {
    /// Connects as the projection does (it writes nothing).
    ///
    /// # Errors
    /// As [`MongoProjection::connect`].
    pub async fn connect(uri: &str, settings: MongoSettings) -> Result<Self, ProjectionError> {
        Ok(MongoSource {
            connected: MongoProjection::connect(uri, settings).await?,
        })
    }
}

#[async_trait]
impl Source for MongoSource {
    async fn read(&mut self, kind: ResourceKind) -> Result<Vec<Held>, ProjectionError> {
        let coll = self.connected.collection(kind);
        let name = coll.name().to_owned();
        let documents: Vec<Document> = coll
            .find(doc! {})
            .await
            .map_err(|e| unavailable(&e, ""))?
            .try_collect()
            .await
            .map_err(|e| unavailable(&e, ""))?;
        Ok(documents.into_iter().map(|d| held(&name, d)).collect())
    }
}

/// One stored document as a resource.
fn held(collection: &str, stored: Document) -> Held {
    let id = match stored.get("_id") {
        Some(Bson::String(id)) => Some(id.clone()),
        _ => stored.get_str("id").ok().map(str::to_owned),
    };
    let Some(id) = id else {
        let location = format!("collection {collection}, _id {:?}", stored.get("_id"));
        return unreadable(location, "neither _id nor id is a string");
    };
    let location = format!("collection {collection}, id {id}");
    let mut document = Bson::Document(stored).into_relaxed_extjson();
    if let Value::Object(map) = &mut document {
        for key in BOOKKEEPING_FIELDS {
            map.remove(key);
        }
    }
    check_document(location, id, document)
}
