//! The relay's HTTPS server: the web UI and API of every shop it serves, over TLS only.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Shops, Web, tls};
use crate::error::{Error, Result};

/// Starts the HTTPS server of the web UI and API on `addr`.
pub(super) fn serve_web(
    addr: SocketAddr,
    tls: tls::TlsIdentity,
    shops: Shops,
    opts: crate::api::ApiOptions,
) -> Result<Web> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::Unreachable(format!("cannot listen on {addr} for HTTPS: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("the HTTPS listener has no address: {e}")))?;
    let list: crate::api::ShopList = Arc::new(move || {
        shops
            .read()
            .expect("shops lock")
            .iter()
            .map(|(id, r)| (*id, r.handle.clone()))
            .collect()
    });
    let (router, stop) = crate::api::with_shutdown_signal(crate::api::relay_router(list, opts));
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls.config.clone()),
    )
    .map_err(|e| Error::Internal(format!("HTTPS: {e}")))?
    .handle(handle.clone());
    let task = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = server.serve(service).await {
            tracing::error!("the relay's HTTPS server stopped: {e}");
        }
    });
    Ok(Web {
        addr,
        tls,
        handle,
        stop,
        task,
    })
}
