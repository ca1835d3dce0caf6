//! TEMP compile shim (replaced by the api branch)
use crate::NodeHandle;
#[derive(Default)]
pub struct ApiOptions;
pub fn router(_h: NodeHandle, _o: ApiOptions) -> axum::Router { axum::Router::new() }
pub async fn serve(l: tokio::net::TcpListener, r: axum::Router, s: impl std::future::Future<Output=()> + Send + 'static) -> std::io::Result<()> { axum::serve(l, r).with_graceful_shutdown(s).await }
