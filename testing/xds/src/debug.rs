//! istiod's HTTP debug endpoint (port 15014 in a real istiod): `GET /debug/syncz[?namespace=]`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use super::Hub;

#[derive(Debug, Deserialize)]
struct SynczQuery {
    namespace: Option<String>,
}

async fn syncz(State(hub): State<Arc<Hub>>, Query(q): Query<SynczQuery>) -> impl IntoResponse {
    if let Some(delay) = hub.debug_delay() {
        tokio::time::sleep(delay).await;
    }
    let entries: Vec<serde_json::Value> = hub
        .proxies()
        .iter()
        .filter(|p| q.namespace.as_deref().is_none_or(|ns| p.identity.namespace == ns))
        .map(|p| p.syncz_json())
        .collect();
    axum::Json(entries)
}

/// The debug router.
pub(super) fn router(hub: Arc<Hub>) -> Router {
    Router::new().route("/debug/syncz", get(syncz)).with_state(hub)
}
