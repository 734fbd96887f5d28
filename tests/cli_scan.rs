//! `portcullis scan` and `portcullis rules` through the real binary: exit codes and JSON lines.
#![allow(clippy::unwrap_used)] // test helpers

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn portcullis(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn clean_file_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(dir.path(), "clean.txt", "Minutes of the meeting. The Secretary read 2024 figures.\n");
    let o = portcullis(&["scan", "--format", "json", &clean], None);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["path"], clean.as_str());
    assert_eq!(lines[0]["verdict"], "clean");
    assert_eq!(lines[0]["findings"], serde_json::json!([]));
    assert!(lines[0]["reason"].is_null());
}

#[test]
fn match_exits_1_with_masked_samples_one_line_per_input() {
    let dir = tempfile::tempdir().unwrap();
    let hit = write(dir.path(), "hit.txt", "HKID A123456(3) and A123456(3); card 4111111111111111\n");
    let clean = write(dir.path(), "clean.txt", "nothing to see\n");
    let o = portcullis(&["scan", "--format", "json", &hit, &clean], None);
    assert_eq!(code(&o), 1);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["verdict"], "match");
    assert_eq!(lines[1]["verdict"], "clean");
    let findings = lines[0]["findings"].as_array().unwrap();
    let hkid = findings.iter().find(|f| f["detector"] == "hkid").unwrap();
    assert_eq!(hkid["count"], 2);
    assert_eq!(hkid["samples"], serde_json::json!(["A12****(3)"]));
    assert_eq!(hkid["confidence"], "high", "HKID keyword is supporting context");
    let card = findings.iter().find(|f| f["detector"] == "payment-card").unwrap();
    assert_eq!(card["samples"], serde_json::json!(["4111********1111"]));
    assert_eq!(card["severity"], "high");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!stdout.contains("4111111111111111") && !stdout.contains("A123456"), "full value leaked: {stdout}");
}

#[test]
fn stdin_dash_and_text_format() {
    let o = portcullis(&["scan", "-"], Some(b"ssn 536-22-8726\n"));
    assert_eq!(code(&o), 1);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("-: MATCH"), "{text}");
    assert!(text.contains("us-ssn") && text.contains("***-**-8726") && !text.contains("536-22"), "{text}");
    let o = portcullis(&["scan", "--format", "json", "-"], Some(b"all quiet"));
    assert_eq!(code(&o), 0);
    assert_eq!(json_lines(&o)[0]["path"], "-");
}

/// A file name is the uploader's (a download, an archive member): printed with control
/// characters escaped, so it cannot clear the officer's screen or fake an output line.
#[test]
fn text_output_escapes_control_characters_in_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "cards\u{1b}[2J\u{202e}txt.exe", "card 4111 1111 1111 1111\n");
    let o = portcullis(&["scan", &path], None);
    assert_eq!(code(&o), 1);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "{text:?}");
    assert!(text.contains(r"cards\u{1b}[2J\u{202e}txt.exe: MATCH"), "{text}");
    // JSON keeps the exact name (JSON escapes it itself).
    let o = portcullis(&["scan", "--format", "json", &path], None);
    assert_eq!(json_lines(&o)[0]["path"], path);
}

#[test]
fn errors_exit_2_and_win_over_matches() {
    let dir = tempfile::tempdir().unwrap();
    let hit = write(dir.path(), "hit.txt", "TOP SECRET\n");
    let missing = dir.path().join("missing.txt").display().to_string();
    let o = portcullis(&["scan", "--format", "json", &hit, &missing], None);
    assert_eq!(code(&o), 2);
    assert_eq!(json_lines(&o).len(), 1, "the readable input is still reported");
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.txt"));
    // Broken rules are an error too.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    write(&rules, "bad.toml", "[[detector]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"low\"\nregex = '''('''\n");
    let o = portcullis(&["scan", "--rules", rules.to_str().unwrap(), &hit], None);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.toml:5:"));
}

#[test]
fn custom_rules_dir_replaces_builtins() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    write(
        &rules,
        "codes.toml",
        "[[detector]]\nid = \"codenames\"\ndescription = \"d\"\nseverity = \"critical\"\nkeywords = [\"NIGHTJAR\"]\n",
    );
    let f = write(dir.path(), "f.txt", "Project NIGHTJAR, card 4111111111111111\n");
    let o = portcullis(&["scan", "--rules", rules.to_str().unwrap(), "--format", "json", &f], None);
    assert_eq!(code(&o), 1);
    let line = &json_lines(&o)[0];
    let ids: Vec<&str> = line["findings"].as_array().unwrap().iter().map(|f| f["detector"].as_str().unwrap()).collect();
    assert_eq!(ids, ["codenames"]);
}

#[test]
fn large_input_is_streamed() {
    // 8 MiB with a value across a 64 KiB read boundary.
    let dir = tempfile::tempdir().unwrap();
    let mut body = vec![b'x'; 65_530];
    body.extend_from_slice(b" 5555 5555 5555 4444 ");
    body.resize(8 << 20, b'y');
    let p = dir.path().join("big.bin");
    std::fs::write(&p, &body).unwrap();
    let o = portcullis(&["scan", "--format", "json", p.to_str().unwrap()], None);
    assert_eq!(code(&o), 1);
    assert_eq!(json_lines(&o)[0]["findings"][0]["offsets"], serde_json::json!([65_531]));
}

#[test]
fn rules_check_and_test() {
    let o = portcullis(&["rules", "check"], None);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("9 detectors"));
    let o = portcullis(&["rules", "test"], None);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 failed"));

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "codes.toml",
        "[[detector]]\nid = \"codenames\"\ndescription = \"d\"\nseverity = \"low\"\nkeywords = [\"NIGHTJAR\"]\n\
         [detector.examples]\nmatch = [\"NIGHTJAR\", \"nightjar\"]\nno_match = [\"NIGHTJARS\"]\n",
    );
    let d = dir.path().to_str().unwrap();
    let o = portcullis(&["rules", "check", d], None);
    assert_eq!(code(&o), 0);
    let o = portcullis(&["rules", "test", d], None);
    assert_eq!(code(&o), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("codes.toml:1: codenames: example should match but found nothing"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("FAIL")).count(), 1, "{err}");

    write(dir.path(), "broken.toml", "[[detector]]\nid = \"y\"\ndescription = \"d\"\nseverity = \"loud\"\nkeywords = [\"a\"]\n");
    let o = portcullis(&["rules", "check", d], None);
    assert_eq!(code(&o), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.toml:4: detector `y`: unknown severity `loud`"), "{err}");
}
