//! The security event routes: the feeds a receiver may poll (`/Events/Feeds`) and RFC 8936 poll
//! delivery (`POST /Events/Feeds/{feed}/poll`). RFC 8936 leaves the poll URL to the deployment;
//! RFC 9967 places feeds beside the resources (its example `aud` values are `…/Feeds/{id}`), so
//! they live under the SCIM base URL. Every key may see and poll every feed: a key can read every
//! User and Group anyway, so a feed tells it nothing new; each key's name is a receiver of its own.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::Value;

use super::{Result, Shared, Tag};
use crate::http::auth::ApiKeyAuth;
use crate::http::responses::DocumentResponse;

/// The answer to a poll (RFC 8936 §2.3).
#[derive(ApiResponse)]
enum PollResponse {
    /// `{"sets": {jti: compact SET}, "moreAvailable": bool}`.
    #[oai(status = 200, content_type = "application/json")]
    Ok(Json<Value>),
}

/// The feed routes.
pub struct EventsApi(pub(super) Arc<Shared>);

#[OpenApi(prefix_path = "/Events/Feeds")]
impl EventsApi {
    /// The security event feeds (a ListResponse): `default` (every event) and, with
    /// SET_GROUP_AS_FEED=true, one per Group (`group:{id}`; the events about its direct members,
    /// `feed:add`/`feed:remove` as they join and leave), each with its poll URL and, for a group,
    /// its number of subjects. 404 when security events are off.
    #[oai(path = "/", method = "get", tag = "Tag::Events")]
    async fn list(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        #[oai(name = "startIndex")] start_index: Query<Option<i64>>,
        count: Query<Option<i64>>,
    ) -> Result<DocumentResponse> {
        let base = self.0.base(req);
        let (start, count) = (start_index.0, count.0);
        let doc = self
            .0
            .service
            .read(move |s| s.feeds(&base, start, count))
            .await?;
        Ok(DocumentResponse::Ok(Json(doc)))
    }

    /// One feed, as the list shows it; 404 if there is no such feed.
    #[oai(path = "/:feed", method = "get", tag = "Tag::Events")]
    async fn get(
        &self,
        _auth: ApiKeyAuth,
        req: &Request,
        feed: Path<String>,
    ) -> Result<DocumentResponse> {
        let base = self.0.base(req);
        let doc = self.0.service.read(move |s| s.feed(&base, &feed.0)).await?;
        Ok(DocumentResponse::Ok(Json(doc)))
    }

    /// RFC 8936 poll: `{"maxEvents", "returnImmediately", "ack": [jti], "setErrs": {jti: {"err",
    /// "description"}}}` (all optional; `{}` is a long poll for up to 1,000 SETs). The
    /// acknowledgements are durable before the answer; the answer holds the SETs this key has not
    /// acknowledged, except those sent less than SET_POLL_REDELIVER_SECONDS ago, at most
    /// `maxEvents` (at most 1,000; `0` acknowledges only). Without `returnImmediately: true` and
    /// with nothing to send it waits up to SET_POLL_WAIT_SECONDS for a SET. An invalid poll is
    /// 400 and changes nothing.
    #[oai(path = "/:feed/poll", method = "post", tag = "Tag::Events")]
    async fn poll(
        &self,
        auth: ApiKeyAuth,
        feed: Path<String>,
        body: Json<Value>,
    ) -> Result<PollResponse> {
        let receiver = auth.actor().0.clone();
        let doc = self.0.service.poll(&receiver, &feed.0, &body.0).await?;
        Ok(PollResponse::Ok(Json(doc)))
    }
}
