//! `portcullis explain` and `portcullis policy check` as a user runs them.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap()
}

fn explain(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    let out = portcullis(&all);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one JSON object on one line: {text}");
    serde_json::from_str(text.trim()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn explain_prints_the_decision_fields() {
    let v = explain(&["https://web.whatsapp.com/"]);
    for key in ["app", "category", "activity", "action", "rule", "exception"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["app"], "whatsapp");
    assert_eq!(v["category"], "instant-messaging");
    assert_eq!(v["activity"], "opaque");
    assert_eq!(v["action"], "block");
    assert_eq!(v["rule"], "block-instant-messaging");
    assert_eq!(v["stage"], "connect");
    assert!(v["exception"].is_null());

    let v = explain(&["--user", "bob", "https://mail.google.com/mail/u/0/"]);
    assert_eq!((v["app"].as_str(), v["action"].as_str(), v["rule"].as_str()), (Some("gmail"), Some("block"), Some("block-webmail")));
    assert_eq!(v["activity"], "browse");

    let v = explain(&["https://news.qq.com/"]);
    assert!(v["app"].is_null() && v["category"].is_null(), "{v}");
    assert_eq!(v["action"], "allow");
    assert!(v["rule"].is_null());
}

#[test]
fn explain_uploads_and_exceptions() {
    let v = explain(&["--method", "POST", "https://www.googleapis.com/upload/drive/v3/files?uploadType=multipart"]);
    assert_eq!((v["app"].as_str(), v["activity"].as_str()), (Some("google-drive"), Some("upload")));
    assert_eq!(v["rule"], "block-cloud-storage");

    let v = explain(&["--user", "chan.taiman", "--at", "2027-06-30", "https://mail.google.com/"]);
    assert_eq!(v["action"], "log");
    assert_eq!(v["exception"]["id"], "EX-2026-0147");
    assert!(v["exception"]["approver"].as_str().unwrap().contains("Head of Finance"));
    let v = explain(&["--user", "chan.taiman", "--at", "2027-07-01", "https://mail.google.com/"]);
    assert_eq!((v["action"].as_str(), v["rule"].as_str()), (Some("block"), Some("block-webmail")));
    assert!(v["exception"].is_null());

    let v = explain(&["--user", "chan.taiman", "--at", "2027-01-01", "--method", "post", "https://mail.google.com/x"]);
    assert_eq!(v["action"], "inspect");
    let v = explain(&[
        "--user",
        "chan.taiman",
        "--at",
        "2027-01-01",
        "--method",
        "POST",
        "--finding",
        "payment-card",
        "https://mail.google.com/x",
    ]);
    assert_eq!((v["action"].as_str(), v["rule"].as_str(), v["stage"].as_str()), (Some("block"), Some("inspect-uploads"), Some("body")));
    let v = explain(&["--method", "POST", "--unscannable", "http://files.example.org/up"]);
    assert_eq!(v["action"], "log");
}

#[test]
fn explain_with_files_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "p.toml", "[[rule]]\nid = \"trial\"\napps = \"dropbox\"\naction = \"block\"\nsimulate = true\n");
    let v = explain(&["--policy", &policy, "https://www.dropbox.com/home"]);
    assert_eq!(v["action"], "log");
    assert_eq!(v["simulated_rule"], "trial");
    assert_eq!(v["would"], "block");

    let out = portcullis(&["explain", "not-a-url"]);
    assert_eq!(out.status.code(), Some(2));
    let out = portcullis(&["explain", "--policy", "/nonexistent/p.toml", "https://x.example/"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn policy_check_exit_codes_and_problems() {
    // Fixed date: the shipped example exception expires on 2027-06-30 and is then reported.
    let out = portcullis(&["policy", "check", "--at", "2026-12-03"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/policy.toml")).unwrap();
    let ok = write(dir.path(), "ok.toml", &shipped);
    assert_eq!(portcullis(&["policy", "check", &ok, "--at", "2026-12-03"]).status.code(), Some(0));
    // The shipped exception has expired by then: reported.
    let out = portcullis(&["policy", "check", &ok, "--at", "2027-07-02"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("EX-2026-0147") && text.contains("expired"), "{text}");

    let bad = write(
        dir.path(),
        "bad.toml",
        "[[rule]]\nid = \"a\"\napps = [\"gmail\",\n  \"hotmail\"]\naction = \"block\"\n[[rule]]\nid = \"b\"\nfindings = \"passport\"\naction = \"block\"\n",
    );
    let out = portcullis(&["policy", "check", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("{bad}:4: rule \"a\": unknown app id \"hotmail\"")), "{text}");
    assert!(text.contains(&format!("{bad}:8:")) && text.contains("unknown detector id \"passport\""), "{text}");

    let broken = write(dir.path(), "broken.toml", "[[rule]]\nid = \"a\"\naction = \"deny\"\n");
    let out = portcullis(&["policy", "check", &broken]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("{broken}:3: unknown action \"deny\"")), "{text}");

    let out = portcullis(&["policy", "check", "/nonexistent/policy.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn policy_check_catalog_dir_and_users() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    write(&apps, "x.toml", "[[app]]\nid = \"wechat\"\nname = \"WeChat\"\ncategory = \"instant-messaging\"\nhosts = [\"*.qq.com\"]\n");
    let out = portcullis(&["policy", "check", "--apps", apps.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("x.toml:5:") && text.contains("qq.com hosts several unrelated services"), "{text}");

    let hash = {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["policy", "hash-password"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let users =
        write(dir.path(), "users.toml", &format!("[[user]]\nname = \"chan.taiman\"\npassword = \"{hash}\"\ngroups = [\"finance\"]\n"));
    assert_eq!(portcullis(&["policy", "check", "--at", "2026-12-03", "--users", &users]).status.code(), Some(0));
    let policy = write(dir.path(), "p.toml", "[[rule]]\nid = \"fin\"\ngroups = \"finance\"\ncategories = \"webmail\"\naction = \"log\"\n");
    let v = explain(&["--users", &users, "--policy", &policy, "--user", "chan.taiman", "https://mail.163.com/"]);
    assert_eq!((v["action"].as_str(), v["rule"].as_str(), v["app"].as_str()), (Some("log"), Some("fin"), Some("netease-mail")));
    let bad_users = write(dir.path(), "bad-users.toml", "[[user]]\nname = \"x\"\npassword = \"hunter2\"\n");
    let out = portcullis(&["policy", "check", "--users", &bad_users]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stdout).unwrap().contains("bad-users.toml:3:"));
}
