//! Table tests of the shipped catalog against real endpoints and lookalikes.
#![allow(clippy::unwrap_used)]

use portcullis_classify::{Activity, Catalog, FlowHead};

fn req<'a>(method: &'a str, url_host: &'a str, path: &'a str) -> FlowHead<'a> {
    FlowHead { host: url_host, port: Some(443), ip: None, method: Some(method), path: Some(path) }
}

fn connect(host: &str) -> FlowHead<'_> {
    FlowHead { host, port: Some(443), ip: None, method: Some("CONNECT"), path: None }
}

#[test]
fn builtin_catalog_loads_with_required_ids() {
    let c = Catalog::builtin();
    let required = [
        "gmail", "outlook", "yahoo-mail", "qq-mail", "netease-mail", "proton-mail", "google-drive", "dropbox", "onedrive", "box", "icloud",
        "mega", "wetransfer", "baidu-netdisk", "whatsapp", "wechat", "telegram", "signal", "line",
    ];
    for id in required {
        assert!(c.app(id).is_some(), "missing app {id}");
    }
    assert!(c.apps().count() >= 40, "only {} apps", c.apps().count());
    let cats = c.categories();
    assert_eq!(cats.into_iter().collect::<Vec<_>>(), ["cloud-storage", "instant-messaging", "webmail"]);
    for v in ["google", "microsoft", "dropbox"] {
        assert!(c.tenants().iter().any(|t| t.vendor == v), "tenant {v}");
    }
}

#[test]
fn real_endpoints() {
    let c = Catalog::builtin();
    // (method, host, path, app, activity)
    let table: &[(&str, &str, &str, Option<&str>, Activity)] = &[
        ("GET", "mail.google.com", "/mail/u/0/", Some("gmail"), Activity::Browse),
        ("POST", "mail.google.com", "/mail/u/0/?ui=2&act=upload", Some("gmail"), Activity::Upload),
        ("POST", "mail.google.com", "/sync/u/0/i/s", Some("gmail"), Activity::Send),
        ("POST", "www.googleapis.com", "/upload/gmail/v1/users/me/messages/send?uploadType=multipart", Some("gmail"), Activity::Send),
        ("GET", "mail-attachment.googleusercontent.com", "/attachment/u/0/", Some("gmail"), Activity::Download),
        ("GET", "drive.google.com", "/drive/my-drive", Some("google-drive"), Activity::Browse),
        ("POST", "www.googleapis.com", "/upload/drive/v3/files?uploadType=multipart", Some("google-drive"), Activity::Upload),
        ("PUT", "www.googleapis.com", "/upload/drive/v3/files?uploadType=resumable&upload_id=x", Some("google-drive"), Activity::Upload),
        ("POST", "clients6.google.com", "/upload/drive/v2internal/files?uploadType=multipart", Some("google-drive"), Activity::Upload),
        ("GET", "drive.usercontent.google.com", "/download?id=abc", Some("google-drive"), Activity::Download),
        ("GET", "www.googleapis.com", "/youtube/v3/videos", None, Activity::Browse),
        ("GET", "www.google.com", "/search?q=x", None, Activity::Browse),
        ("GET", "outlook.live.com", "/mail/0/", Some("outlook"), Activity::Browse),
        ("POST", "graph.microsoft.com", "/v1.0/me/sendMail", Some("outlook"), Activity::Send),
        ("PUT", "graph.microsoft.com", "/v1.0/me/drive/items/root:/a.docx:/content", Some("onedrive"), Activity::Upload),
        ("GET", "graph.microsoft.com", "/v1.0/me/calendar", None, Activity::Browse),
        ("GET", "onedrive.live.com", "/", Some("onedrive"), Activity::Browse),
        ("GET", "mail.yahoo.com", "/d/folders/1", Some("yahoo-mail"), Activity::Browse),
        ("GET", "mail.qq.com", "/cgi-bin/frame_html", Some("qq-mail"), Activity::Browse),
        ("POST", "mail.qq.com", "/cgi-bin/compose_send?sid=x", Some("qq-mail"), Activity::Send),
        ("GET", "mail.163.com", "/js6/main.jsp", Some("netease-mail"), Activity::Browse),
        ("GET", "news.163.com", "/", None, Activity::Browse),
        ("GET", "mail.proton.me", "/u/0/inbox", Some("proton-mail"), Activity::Browse),
        ("GET", "www.dropbox.com", "/home", Some("dropbox"), Activity::Browse),
        ("POST", "www.dropbox.com", "/ajax_login", Some("dropbox"), Activity::Login),
        ("POST", "content.dropboxapi.com", "/2/files/upload", Some("dropbox"), Activity::Upload),
        ("POST", "content.dropboxapi.com", "/2/files/download", Some("dropbox"), Activity::Download),
        ("GET", "dl.dropboxusercontent.com", "/s/abc/file.pdf", Some("dropbox"), Activity::Download),
        ("POST", "upload.box.com", "/api/2.0/files/content", Some("box"), Activity::Upload),
        ("GET", "app.box.com", "/folder/0", Some("box"), Activity::Browse),
        ("GET", "www.icloud.com", "/iclouddrive/", Some("icloud"), Activity::Browse),
        ("GET", "mega.nz", "/", Some("mega"), Activity::Browse),
        ("POST", "wetransfer.com", "/api/v4/transfers/link", Some("wetransfer"), Activity::Upload),
        ("GET", "pan.baidu.com", "/disk/home", Some("baidu-netdisk"), Activity::Browse),
        ("POST", "d.pcs.baidu.com", "/rest/2.0/pcs/superfile2?method=upload", Some("baidu-netdisk"), Activity::Upload),
        ("GET", "web.whatsapp.com", "/", Some("whatsapp"), Activity::Browse),
        ("GET", "web.wechat.com", "/", Some("wechat"), Activity::Browse),
        ("GET", "wx.qq.com", "/", Some("wechat"), Activity::Browse),
        ("POST", "file.wx.qq.com", "/cgi-bin/mmwebwx-bin/webwxuploadmedia", Some("wechat"), Activity::Upload),
        ("GET", "szfilehelper.weixin.qq.com", "/", Some("wechat"), Activity::Browse),
        ("GET", "news.qq.com", "/", None, Activity::Browse),
        ("GET", "www.qq.com", "/", None, Activity::Browse),
        ("GET", "web.telegram.org", "/k/", Some("telegram"), Activity::Browse),
        ("GET", "chat.signal.org", "/v1/websocket/", Some("signal"), Activity::Browse),
        ("GET", "line.me", "/en/", Some("line"), Activity::Browse),
        ("POST", "discord.com", "/api/v9/channels/123/messages", Some("discord"), Activity::Send),
        ("POST", "slack.com", "/api/files.upload", Some("slack"), Activity::Upload),
    ];
    for &(method, host, path, app, activity) in table {
        let flow = c.classify(&req(method, host, path));
        assert_eq!(flow.app_id(), app, "{method} {host}{path}: matched {:?}", flow.matched);
        assert_eq!(flow.activity, Some(activity), "{method} {host}{path}");
    }
}

#[test]
fn lookalikes_do_not_match() {
    let c = Catalog::builtin();
    for host in [
        "evil-dropbox.com",
        "dropbox.com.evil.example",
        "mydropbox.com",
        "dropbox.co",
        "news.qq.com",
        "qq.com",
        "mail.google.com.evil.example",
        "gmail-login.example",
        "whatsapp.net.evil.example",
        "evilwhatsapp.com",
        "telegram.org.ru",
        "xn--drpbox-vxa.com",
        "google.com",
        "docs.google.com.attacker.net",
        "signal.org-secure.app",
    ] {
        let flow = c.classify(&connect(host));
        assert_eq!(flow.app_id(), None, "{host} matched {:?} via {:?}", flow.app_id(), flow.matched);
    }
}

#[test]
fn normalised_hosts_match() {
    let c = Catalog::builtin();
    for host in ["MAIL.GOOGLE.COM", "mail.google.com.", "mail.google.com:443", "Mail.Google.Com.:8443"] {
        assert_eq!(c.classify(&connect(host)).app_id(), Some("gmail"), "{host}");
    }
}

#[test]
fn connect_activity_depends_on_inspectability() {
    let c = Catalog::builtin();
    let wa = c.classify(&connect("web.whatsapp.com"));
    assert_eq!(wa.app_id(), Some("whatsapp"));
    assert_eq!(wa.activity, Some(Activity::Opaque));
    let gm = c.classify(&connect("mail.google.com"));
    assert_eq!(gm.activity, None, "inspectable: decided per request after interception");
    // A path-scoped endpoint never claims a whole shared host at CONNECT.
    assert_eq!(c.classify(&connect("www.googleapis.com")).app_id(), None);
    assert_eq!(c.classify(&connect("graph.microsoft.com")).app_id(), None);
    // Opaque bytes in a tunnel.
    let raw = c.classify(&FlowHead { host: "mail.google.com", method: None, ..Default::default() });
    assert_eq!(raw.activity, Some(Activity::Opaque));
}

#[test]
fn telegram_by_address() {
    let c = Catalog::builtin();
    for ip in ["149.154.167.51", "91.108.56.130", "2001:67c:4e8:f004::9", "[2001:b28:f23d:f001::a]"] {
        let flow = c.classify(&connect(ip));
        assert_eq!(flow.app_id(), Some("telegram"), "{ip}");
        assert_eq!(flow.activity, Some(Activity::Opaque));
    }
    // A name that resolved into a Telegram range.
    let flow = c.classify(&FlowHead {
        host: "unknown.example",
        ip: Some("149.154.175.50".parse().unwrap()),
        method: Some("CONNECT"),
        ..Default::default()
    });
    assert_eq!(flow.app_id(), Some("telegram"));
    for ip in ["149.154.176.1", "91.108.24.1", "8.8.8.8", "2001:67c:4e9::1"] {
        assert_eq!(c.classify(&connect(ip)).app_id(), None, "{ip}");
    }
}

#[test]
fn longest_match_wins() {
    let src = r#"
[[app]]
id = "suite"
name = "Suite"
category = "webmail"
hosts = ["*.example.com"]
[[app]]
id = "drive"
name = "Drive"
category = "cloud-storage"
hosts = ["*.drive.example.com", "files.example.com"]
[[app.endpoint]]
host = "api.example.com"
paths = ["/drive/*"]
"#;
    let c = Catalog::from_sources(&[("t.toml".into(), src.into())]).unwrap();
    let id = |h: &str, p: &str| c.classify(&req("GET", h, p)).app_id().map(str::to_owned);
    assert_eq!(id("www.example.com", "/").as_deref(), Some("suite"));
    assert_eq!(id("x.drive.example.com", "/").as_deref(), Some("drive"));
    assert_eq!(id("files.example.com", "/").as_deref(), Some("drive"));
    assert_eq!(id("api.example.com", "/drive/v3").as_deref(), Some("drive"));
    assert_eq!(id("api.example.com", "/mail/v1").as_deref(), Some("suite"));
    assert_eq!(id("example.com", "/"), None);
}

#[test]
fn tenant_vendor_for_flows() {
    let c = Catalog::builtin();
    let t = |h: &str| c.tenant_for(&c.classify(&connect(h))).map(|t| t.vendor.clone());
    assert_eq!(t("mail.google.com").as_deref(), Some("google"));
    assert_eq!(t("accounts.google.com").as_deref(), Some("google"));
    assert_eq!(t("login.microsoftonline.com").as_deref(), Some("microsoft"));
    assert_eq!(t("outlook.office.com").as_deref(), Some("microsoft"));
    assert_eq!(t("www.dropbox.com").as_deref(), Some("dropbox"));
    assert_eq!(t("web.whatsapp.com"), None);
}

#[test]
fn path_spellings_do_not_evade_endpoints() {
    let c = Catalog::builtin();
    for path in ["/%75pload/drive/v3/files", "/upload//drive/v3/files", "/x/../upload/drive/v3/files?uploadType=media"] {
        let flow = c.classify(&req("POST", "www.googleapis.com", path));
        assert_eq!(flow.app_id(), Some("google-drive"), "{path}");
        assert_eq!(flow.activity, Some(Activity::Upload), "{path}");
    }
    let flow = c.classify(&req("POST", "www.googleapis.com", "/upload%2Fdrive/v3/files"));
    assert_eq!(flow.app_id(), None, "an encoded slash is not a path separator");
}

#[test]
fn unicode_lookalike_hosts_do_not_match() {
    let c = Catalog::builtin();
    // Greek omicron and Cyrillic a: different IDNA A-labels, not the real services.
    for host in ["dr\u{3bf}pbox.com", "m\u{430}il.google.com", "web.wh\u{430}tsapp.com"] {
        let flow = c.classify(&connect(host));
        assert_eq!(flow.app_id(), None, "{host} -> {}", flow.host);
        assert!(flow.host.contains("xn--"), "{}", flow.host);
    }
}

/// Catalog-wide lookalikes: for every host pattern of every app, a host that merely contains the
/// domain (appended to another domain, or prefixed without a dot) must not be classified as that
/// app, unless a suffix pattern legitimately covers it (`evil-web.whatsapp.com` is under
/// `*.whatsapp.com`); and the genuine host must classify as the app that claims it.
#[test]
fn every_pattern_resists_lookalikes() {
    let c = Catalog::builtin();
    let mut checked = 0;
    for (pattern, app, with_paths) in c.host_patterns() {
        let d = pattern.domain();
        let genuine = match pattern {
            portcullis_classify::HostPattern::Exact(_) => d.to_owned(),
            portcullis_classify::HostPattern::Suffix(_) => format!("portcullis-test.{d}"),
        };
        let path = if with_paths { None } else { Some("/") };
        if let Some(path) = path {
            let flow = c.classify(&req("GET", &genuine, path));
            assert!(flow.app.is_some(), "{genuine} ({pattern} of {}) classified as nothing", app.id);
            if let portcullis_classify::HostPattern::Exact(_) = pattern {
                assert_eq!(flow.app_id(), Some(app.id.as_str()), "{genuine}");
            }
        }
        for fake in [format!("{d}.evil.example"), format!("{d}-evil.example"), format!("{d}evil.example")] {
            let flow = c.classify(&connect(&fake));
            assert_eq!(flow.app_id(), None, "{fake} matched {:?} via {:?}", flow.app_id(), flow.matched);
        }
        let prefixed = format!("evil-{d}");
        let flow = c.classify(&connect(&prefixed));
        if let Some(m) = &flow.matched {
            let parent = m.strip_prefix("*.").unwrap_or_else(|| panic!("{prefixed} matched exact {m}"));
            assert!(prefixed.ends_with(&format!(".{parent}")) && d.ends_with(&format!(".{parent}")), "{prefixed} via {m}");
        }
        checked += 1;
    }
    assert!(checked > 150, "only {checked} patterns");
}
