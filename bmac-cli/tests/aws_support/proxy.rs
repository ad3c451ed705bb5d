//! A slow network between `bmac` and moto: a TCP proxy on 127.0.0.1 that passes TLS through
//! untouched (moto's certificate names 127.0.0.1, so it is valid on the proxy's port too) and
//! holds every chunk the client sends for a fixed delay before forwarding it. moto answers at
//! once; behind this proxy each AWS call takes at least the delay, as over a slow link, so a
//! test can interrupt an apply while some steps are done and others are still calling AWS —
//! without any test-only hook in bmac.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A running proxy; dropping it stops accepting connections.
pub struct SlowProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    /// Listens on a free loopback port and forwards to `upstream`, delaying the client's
    /// chunks by `delay`.
    pub fn start(upstream: SocketAddr, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                thread::spawn(move || pipe(client_read, server, delay));
                thread::spawn(move || pipe(server_read, client, Duration::ZERO));
            }
        });
        SlowProxy { addr, stop }
    }

    /// `https://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to`, each chunk after `delay`, until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !delay.is_zero() {
                    thread::sleep(delay);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
