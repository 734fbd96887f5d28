//! Cost of the per-request policy path: classify + decide, on the shipped catalog and policy,
//! against two floors measured in the same run: host normalisation alone, and one HashMap
//! lookup of the raw host (the least any host-keyed classifier must do).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_classify::{FlowHead, normalize_host};
use portcullis_policy::{BodyFacts, Engine, Stage};

const REQUESTS: &[(&str, &str, &str)] = &[
    ("GET", "mail.google.com", "/mail/u/0/"),
    ("POST", "www.googleapis.com", "/upload/drive/v3/files?uploadType=multipart"),
    ("GET", "news.qq.com", "/a/20261203/012345.htm"),
    ("POST", "upload.example.com", "/files/report.docx"),
    ("GET", "static.whatsapp.net", "/rsrc.php/v3/x.js"),
    ("GET", "cdn.jsdelivr.net", "/npm/react@18/umd/react.production.min.js"),
    ("PUT", "graph.microsoft.com", "/v1.0/me/drive/items/root:/a.xlsx:/content"),
    ("GET", "Dl.DropboxUserContent.com.", "/s/abc/file.pdf"),
];

fn bench(c: &mut Criterion) {
    let engine = Engine::builtin();
    let now = SystemTime::now();
    let mut g = c.benchmark_group("per-request");
    g.throughput(criterion::Throughput::Elements(REQUESTS.len() as u64));
    g.bench_function("classify+decide", |b| {
        b.iter(|| {
            for &(method, host, path) in REQUESTS {
                let flow = engine.classify(&FlowHead { host, port: Some(443), ip: None, method: Some(method), path: Some(path) });
                black_box(engine.decide(None, &flow, Stage::Request, BodyFacts::default(), now));
            }
        })
    });
    g.bench_function("classify", |b| {
        b.iter(|| {
            for &(method, host, path) in REQUESTS {
                black_box(engine.classify(&FlowHead { host, port: Some(443), ip: None, method: Some(method), path: Some(path) }));
            }
        })
    });
    g.bench_function("floor: normalize_host", |b| {
        b.iter(|| {
            for &(_, host, _) in REQUESTS {
                black_box(normalize_host(host).unwrap());
            }
        })
    });
    let map: HashMap<String, usize> = REQUESTS.iter().enumerate().map(|(i, r)| (r.1.to_owned(), i)).collect();
    g.bench_function("floor: hashmap lookup", |b| {
        b.iter(|| {
            for &(_, host, _) in REQUESTS {
                black_box(map.get(host));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
