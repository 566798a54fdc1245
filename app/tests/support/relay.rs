//! A TCP relay in front of PostgreSQL that a test can cut and restore: cut closes every relayed
//! connection and stops listening (clients get "connection refused", as from a stopped server);
//! restore listens again on the same port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Relay {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    /// `true` while relaying; connections watch it and close when it turns `false`.
    up: Arc<watch::Sender<bool>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay bind");
        let addr = listener.local_addr().expect("relay addr");
        let (up, _) = watch::channel(true);
        let mut relay = Self { addr, upstream, up: Arc::new(up), acceptor: None };
        relay.acceptor = Some(relay.accept(listener));
        relay
    }

    fn accept(&self, listener: TcpListener) -> JoinHandle<()> {
        let (upstream, up) = (self.upstream, Arc::clone(&self.up));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut stopped = up.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stopped.wait_for(|up| !up) => {}
                    }
                });
            }
        })
    }

    /// PostgreSQL "stops": every connection closes, new ones are refused.
    pub fn cut(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
        }
        self.up.send_replace(false);
    }

    /// PostgreSQL is back on the same address.
    pub async fn restore(&mut self) {
        self.up.send_replace(true);
        // The aborted acceptor drops its listener on its next turn: the port may take a moment.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error) if tries < 100 => {
                    tries += 1;
                    drop(error);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(error) => panic!("the relay's port stayed taken: {error}"),
            }
        };
        self.acceptor = Some(self.accept(listener));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
