//! `--metrics ADDR`: while the run lasts, `GET /metrics` serves its in-kernel counts and
//! histograms for Prometheus to scrape. The HTTP server (tiny_http) runs on a thread of
//! its own and asks the run loop for each exposition over a channel, so the maps are
//! only read by the loop, and only when scraped: no per-call work.

mod exposition;

use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::Duration,
};

pub use exposition::{Snapshot, own_usage};

/// How long a scrape waits for the run loop.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A scrape waiting for its exposition text.
pub type ScrapeRequest = mpsc::Sender<String>;

/// Why `--metrics` cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics '{addr}' is not an address to listen on (ADDR:PORT, [::1]:PORT or :PORT)")]
    BadAddress { addr: String },
    #[error("--metrics {addr}: cannot listen there: {why}")]
    Listen { addr: String, why: String },
}

/// `127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`; `:9464` is every interface.
pub fn parse_address(text: &str) -> Result<SocketAddr, MetricsError> {
    let bad = || MetricsError::BadAddress {
        addr: text.to_owned(),
    };
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    full.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// The endpoint, serving until dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub address: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr`; each scrape is handed to `scrapes` and answered with what
    /// comes back.
    pub fn start(
        addr: SocketAddr,
        scrapes: tokio::sync::mpsc::UnboundedSender<ScrapeRequest>,
    ) -> Result<MetricsServer, MetricsError> {
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsError::Listen {
            addr: addr.to_string(),
            why: e.to_string(),
        })?;
        let address = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::spawn(move || serve(&serving, &scrapes));
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            address,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, scrapes: &tokio::sync::mpsc::UnboundedSender<ScrapeRequest>) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = if *request.method() != tiny_http::Method::Get {
            tiny_http::Response::from_string("only GET\n").with_status_code(405)
        } else if path != "/metrics" {
            tiny_http::Response::from_string("metrics are at /metrics\n").with_status_code(404)
        } else {
            let (reply, text) = mpsc::channel();
            let answer = scrapes
                .send(reply)
                .ok()
                .and_then(|()| text.recv_timeout(SCRAPE_TIMEOUT).ok());
            match answer {
                Some(text) => tiny_http::Response::from_string(text).with_header(
                    "Content-Type: text/plain; version=0.0.4; charset=utf-8"
                        .parse::<tiny_http::Header>()
                        .expect("a valid header"),
                ),
                None => {
                    tiny_http::Response::from_string("the run is ending\n").with_status_code(503)
                }
            }
        };
        let _ = request.respond(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_users_write_them() {
        assert_eq!(parse_address("127.0.0.1:9464").unwrap().port(), 9464);
        assert!(parse_address("[::1]:9464").unwrap().is_ipv6());
        assert!(parse_address(":9464").unwrap().ip().is_unspecified());
        for bad in ["9464", "host", "1.2.3.4:99999", ""] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }
}
