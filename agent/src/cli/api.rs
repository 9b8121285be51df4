//! `sgwall api`: serve the EC2 API over the config file until SIGTERM or SIGINT.

use std::{process::ExitCode, sync::Arc};

use sgwall::api::{
    Api,
    credentials::Credentials,
    server::{Server, TlsFiles},
    store::file::FileStore,
};

use super::{args::ApiArgs, output};

pub fn run(args: &ApiArgs) -> anyhow::Result<ExitCode> {
    let credentials = Credentials::load(&args.credentials)?;
    let store = FileStore::open(&args.config)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = Server::bind(args.listen, tls.as_ref()).await?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        let address = server.local_addr().unwrap_or(args.listen);
        tracing::info!(config = %store.path().display(), "serving the EC2 API");
        let api = Arc::new(Api::new(Box::new(store), credentials));
        output::line(&format!("sgwall api: listening on {scheme}://{address}"));
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            () = server.serve(api) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
