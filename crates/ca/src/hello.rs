//! Reading SNI and ALPN from a ClientHello that is still in the socket.
//!
//! The proxy peeks (`TcpStream::peek`) the first bytes of a CONNECT tunnel and asks this module
//! what they are. Because nothing is consumed, the proxy can still choose to tunnel the bytes
//! untouched (bypass), refuse, or start its own TLS handshake. Parsing is done by rustls'
//! `Acceptor` on a copy of the bytes: a well-fuzzed parser, rather than one written here.

use rustls::server::Acceptor;

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The server name (SNI), if the client sent one (clients never send IP literals here).
    pub sni: Option<String>,
    /// ALPN protocols offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

/// The bytes are not the start of a TLS ClientHello.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a TLS ClientHello: {0}")]
pub struct NotTls(pub String);

/// Parses the start of a connection. `Ok(None)`: looks like TLS so far, need more bytes.
pub fn peek_client_hello(buf: &[u8]) -> Result<Option<ClientHelloInfo>, NotTls> {
    // A TLS handshake record starts 0x16 0x03 (record layer versions are all 3.x).
    match buf {
        [] => return Ok(None),
        [first, ..] if *first != 0x16 => {
            return Err(NotTls(format!("first byte 0x{first:02x} is not a TLS handshake record")));
        }
        [_, major, ..] if *major != 0x03 => {
            return Err(NotTls(format!("record version major 0x{major:02x} is not TLS")));
        }
        _ => {}
    }
    let mut acceptor = Acceptor::default();
    let mut rest = buf;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(NotTls(e.to_string())),
        }
    }
    match acceptor.accept() {
        Ok(None) => Ok(None),
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            Ok(Some(ClientHelloInfo {
                sni: hello.server_name().map(str::to_owned),
                alpn: hello.alpn().map(|protos| protos.map(<[u8]>::to_vec).collect()).unwrap_or_default(),
            }))
        }
        Err((e, _alert)) => Err(NotTls(e.to_string())),
    }
}
