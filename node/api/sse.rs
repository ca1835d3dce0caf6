//! `GET /api/v1/events`: what the node applies, as Server-Sent Events.
//!
//! Each [`Event`] is one SSE message whose `event:` is the event's type tag (`sale_recorded`,
//! `stock_changed` …) and whose `data:` is the event as JSON (the tag included). A client too
//! slow to keep up gets `event: lagged` with `{"type":"lagged","skipped":N}` and the stream
//! goes on: it should reload what it shows. A comment line is sent every 15 s to keep proxies
//! and idle timeouts from closing the stream.
//!
//! The stream ends when its session ends (logout, expiry) or its person may no longer act
//! (revoked, demoted): checked before every event is sent, so a revoked person never receives
//! another sale, and every [`SESSION_CHECK`] while the stream is idle, so an ended session does
//! not keep a stream open. It also ends when the server shuts down.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt, future};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::auth::Auth;
use super::error::ErrorBody;
use super::{AppState, ShutdownSignal};
use crate::model::Event;

/// How often an idle stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How often an idle stream checks that its session and person are still valid.
const SESSION_CHECK: Duration = Duration::from_secs(1);

/// Changes as they are applied, local and from peers (Server-Sent Events).
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    responses(
        (status = 200, description = "An endless `text/event-stream`; `event:` is the type tag, `data:` the event as JSON", content_type = "text/event-stream", body = Event),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    auth: Auth,
    shutdown: Option<Extension<ShutdownSignal>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let token = auth.token;
    let principal = auth.principal;
    // Whether the stream may go on: its session is live and its person may still act.
    let valid = {
        let state = state.clone();
        move || state.sessions.is_live(&token) && state.handle.refresh_principal(&principal).is_ok()
    };
    let stopped: Pin<Box<dyn Future<Output = ()> + Send>> = match shutdown {
        Some(Extension(ShutdownSignal(mut rx))) => Box::pin(async move {
            // An error means the server is gone: stop as well.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }),
        None => Box::pin(future::pending()),
    };
    let ended = {
        let valid = valid.clone();
        async move {
            let mut tick = tokio::time::interval(SESSION_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while valid() {
                tick.tick().await;
            }
        }
    };
    let stream = BroadcastStream::new(state.handle.subscribe())
        .take_while(move |_| future::ready(valid()))
        .map(|item| {
            Ok(match item {
                Ok(event) => to_sse(&event),
                Err(BroadcastStreamRecvError::Lagged(skipped)) => SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"type\":\"lagged\",\"skipped\":{skipped}}}")),
            })
        })
        .take_until(future::select(stopped, Box::pin(ended)));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// One event as an SSE message.
fn to_sse(event: &Event) -> SseEvent {
    match serde_json::to_value(event) {
        Ok(value) => {
            let tag = value
                .get("type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("event")
                .to_owned();
            SseEvent::default().event(tag).data(value.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "could not encode an event");
            SseEvent::default().comment("unencodable event skipped")
        }
    }
}
