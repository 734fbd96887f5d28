//! What the proxy knows about a flow (`FlowHead`) and what the catalog makes of it (`Flow`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// The facts the proxy has when it asks: at CONNECT (host from the authority or SNI, no path),
/// for each HTTP request after interception, or for non-TLS bytes in a tunnel (`method: None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowHead<'a> {
    /// Host as received (`Host:` header, CONNECT authority or SNI); normalised by the catalog.
    pub host: &'a str,
    /// Destination port, when known.
    pub port: Option<u16>,
    /// Destination address, when known (IP-literal CONNECTs, resolved addresses).
    pub ip: Option<IpAddr>,
    /// HTTP method; `Some("CONNECT")` for a tunnel being opened; `None` for opaque tunnel bytes.
    pub method: Option<&'a str>,
    /// Request path with optional query; `None` at CONNECT.
    pub path: Option<&'a str>,
}

/// What a flow is doing. Serialised lowercase; these names are used by policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    /// Signing in.
    Login,
    /// Reading pages and mail.
    Browse,
    /// Fetching files.
    Download,
    /// Sending data out: file uploads and any other request body not known to be a message.
    Upload,
    /// Sending a message or mail.
    Send,
    /// Traffic whose content cannot be seen (non-HTTP tunnels, end-to-end encrypted clients).
    Opaque,
}

impl Activity {
    /// All activities.
    pub const ALL: [Activity; 6] =
        [Activity::Login, Activity::Browse, Activity::Download, Activity::Upload, Activity::Send, Activity::Opaque];

    /// The public name.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Login => "login",
            Activity::Browse => "browse",
            Activity::Download => "download",
            Activity::Upload => "upload",
            Activity::Send => "send",
            Activity::Opaque => "opaque",
        }
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Activity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Activity::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown activity {s:?} (expected login, browse, download, upload, send or opaque)"))
    }
}

/// A catalog app, as attached to classified flows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AppInfo {
    /// Public id (`gmail`, `wechat`...).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Category id (`webmail`, `cloud-storage`, `instant-messaging`...).
    pub category: String,
    /// Whether content can be seen after TLS interception (false: end-to-end encrypted or
    /// non-HTTP protocols; policy must decide at CONNECT).
    pub inspectable: bool,
    /// Vendor whose tenant-restriction headers apply (`google`, `microsoft`, `dropbox`).
    pub tenant: Option<String>,
}

/// The classification of one flow.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Flow {
    /// The normalised host (or the IP address as text).
    pub host: String,
    /// The app, when the catalog knows the destination.
    pub app: Option<Arc<AppInfo>>,
    /// The activity; `None` while it is not known yet (a CONNECT to an inspectable or unknown
    /// destination: requests inside will be classified one by one).
    pub activity: Option<Activity>,
    /// The catalog pattern that matched (`*.whatsapp.net`, `www.googleapis.com/upload/drive/*`,
    /// `91.108.4.0/22`), for explanations.
    pub matched: Option<String>,
}

impl Flow {
    /// The app id, if any.
    pub fn app_id(&self) -> Option<&str> {
        self.app.as_deref().map(|a| a.id.as_str())
    }

    /// The category, if any.
    pub fn category(&self) -> Option<&str> {
        self.app.as_deref().map(|a| a.category.as_str())
    }
}
