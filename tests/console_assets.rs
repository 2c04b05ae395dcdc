//! The web console without a browser: every file under `src/console/ui` is embedded byte for
//! byte (and nothing else is), vendored libraries match the digests in `src/console/vendor.toml`,
//! no asset names an outside origin, every module import resolves to an embedded file, and the
//! collector serves the shell, deep links and assets with the right status, MIME type, cache
//! headers and Content-Security-Policy (whose hash pins the inline import map).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use agent_console::console::assets;
use sha2::{Digest, Sha256};

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console/ui")
}

fn files_under(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("read ui dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, root, out);
        } else {
            let rel = path.strip_prefix(root).expect("prefix").to_string_lossy().replace('\\', "/");
            out.insert(rel, std::fs::read(&path).expect("read file"));
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn every_file_is_embedded_byte_for_byte_and_nothing_else() {
    let mut on_disk = BTreeMap::new();
    files_under(&ui_dir(), &ui_dir(), &mut on_disk);
    let embedded: BTreeMap<String, &[u8]> = assets::all().map(|a| (a.path.to_string(), a.bytes)).collect();
    let disk_names: BTreeSet<&String> = on_disk.keys().collect();
    let embedded_names: BTreeSet<&String> = embedded.keys().collect();
    assert_eq!(
        disk_names, embedded_names,
        "src/console/ui and the table in src/console/assets.rs must list the same files"
    );
    for (name, bytes) in &on_disk {
        assert_eq!(embedded[name], bytes.as_slice(), "{name}: embedded copy differs from the file");
        assert_eq!(assets::get(name).map(|a| a.sha256.to_string()), Some(sha256_hex(bytes)), "{name}: digest");
    }
    assert_eq!(assets::ASSETS.len(), on_disk.len(), "a file is listed twice in the table");
}

#[derive(serde::Deserialize)]
struct Manifest {
    file: Vec<VendoredFile>,
}

#[derive(serde::Deserialize)]
struct VendoredFile {
    path: String,
    package: String,
    version: String,
    sha256: String,
    license: String,
    npm_integrity: String,
}

#[test]
fn vendored_libraries_match_the_manifest() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console/vendor.toml"))
        .expect("vendor.toml");
    let manifest: Manifest = toml::from_str(&text).expect("vendor.toml parses");
    let listed: BTreeSet<&str> = manifest.file.iter().map(|f| f.path.as_str()).collect();
    let vendored: BTreeSet<&str> = assets::all().map(|a| a.path).filter(|p| p.starts_with("vendor/")).collect();
    assert_eq!(listed, vendored, "every vendored file is in the manifest and the other way round");
    for f in &manifest.file {
        let a = assets::get(&f.path).unwrap_or_else(|| panic!("{} is not embedded", f.path));
        assert_eq!(
            sha256_hex(a.bytes),
            f.sha256,
            "{} ({} {}): digest differs from vendor.toml",
            f.path,
            f.package,
            f.version
        );
        assert!(!f.version.is_empty() && !f.license.is_empty() && f.npm_integrity.starts_with("sha512-"), "{}", f.path);
    }
    let versions: BTreeMap<&str, &str> =
        manifest.file.iter().map(|f| (f.package.as_str(), f.version.as_str())).collect();
    assert_eq!(versions.get("preact"), Some(&"11.2.0"));
    assert_eq!(versions.get("htm"), Some(&"3.1.1"));
    assert_eq!(versions.get("uplot"), Some(&"1.6.32"));
}

/// `http(s)://` strings that are identifiers, never fetched: XML namespaces (Preact creates SVG
/// and MathML elements in them, the favicon declares one) and uPlot's licence comment.
const NOT_FETCHED: &[&str] = &[
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1998/Math/MathML",
    "http://www.w3.org/1999/xhtml",
    "http://www.w3.org/1999/xlink",
    "https://github.com/leeoniya/uPlot",
];

#[test]
fn no_asset_names_an_outside_origin() {
    for a in assets::all() {
        let text = String::from_utf8_lossy(a.bytes);
        let mut rest: &str = &text;
        while let Some(i) = rest.find("://") {
            let start = rest[..i].rfind(|c: char| !c.is_ascii_alphanumeric()).map(|j| j + 1).unwrap_or(0);
            let tail = &rest[start..];
            let end = tail.find(|c: char| c.is_whitespace() || "\"'`)<>,;".contains(c)).unwrap_or(tail.len());
            let url = &tail[..end];
            assert!(
                NOT_FETCHED.iter().any(|ok| url == *ok || url.starts_with(&format!("{ok}/"))),
                "{}: names an outside URL {url:?}",
                a.path
            );
            rest = &rest[i + 3..];
        }
        if !a.path.starts_with("vendor/") {
            for bad in ["src=\"//", "href=\"//", "url(//", "url(http", "@import", "fetch('http", "fetch(\"http"] {
                assert!(!text.contains(bad), "{}: contains {bad:?}", a.path);
            }
        }
    }
}

fn resolve(from: &str, spec: &str) -> Option<String> {
    match spec {
        "preact" => return Some("vendor/preact.mjs".into()),
        "preact/hooks" => return Some("vendor/preact-hooks.mjs".into()),
        "htm" => return Some("vendor/htm.mjs".into()),
        _ => {}
    }
    let mut parts: Vec<&str> = if let Some(abs) = spec.strip_prefix('/') {
        return Some(abs.to_string());
    } else {
        from.split('/').collect()
    };
    parts.pop();
    for seg in spec.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[test]
fn every_import_and_reference_resolves_to_an_embedded_file() {
    let mut checked = 0;
    for a in assets::all().filter(|a| a.path.ends_with(".js") && !a.path.starts_with("vendor/")) {
        let text = String::from_utf8_lossy(a.bytes);
        for line in text.lines() {
            let l = line.trim_start();
            if !(l.starts_with("import ")
                || l.starts_with("} from ")
                || l.starts_with("export ") && l.contains(" from "))
            {
                continue;
            }
            let Some(q) = l.rfind(" from ").map(|i| &l[i + 6..]).or_else(|| l.strip_prefix("import ")) else {
                continue;
            };
            let spec = q.trim().trim_end_matches(';').trim_matches(|c| c == '\'' || c == '"');
            if spec.contains(' ') || spec.is_empty() {
                continue;
            }
            let target = resolve(a.path, spec).unwrap_or_else(|| panic!("{}: bad import {spec:?}", a.path));
            assert!(assets::get(&target).is_some(), "{}: imports {spec:?} ({target}), which is not embedded", a.path);
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} imports found: the scan is broken");
    let index = String::from_utf8_lossy(assets::get("index.html").expect("index").bytes).into_owned();
    let mut refs = BTreeSet::new();
    for attr in ["src=\"/", "href=\"/"] {
        for (i, _) in index.match_indices(attr) {
            let rest = &index[i + attr.len()..];
            let path = &rest[..rest.find('"').expect("closing quote")];
            assert!(assets::get(path).is_some(), "index.html references /{path}, which is not embedded");
            refs.insert(path.to_string());
        }
    }
    for must in ["favicon.svg", "style.css", "vendor/uplot.min.css", "vendor/uplot.iife.min.js", "app.js"] {
        assert!(refs.contains(must), "index.html does not load /{must}");
    }
    // Every module is preloaded, so the browser fetches them at once rather than import by import.
    let preloaded: BTreeSet<String> = index
        .match_indices("<link rel=\"modulepreload\" href=\"/")
        .map(|(i, m)| {
            let rest = &index[i + m.len()..];
            rest[..rest.find('"').expect("closing quote")].to_string()
        })
        .collect();
    let modules: BTreeSet<String> = assets::all()
        .map(|a| a.path.to_string())
        .filter(|p| p.ends_with(".mjs") || (p.ends_with(".js") && !p.starts_with("vendor/")))
        .collect();
    assert_eq!(preloaded, modules, "index.html preloads every module");
    let map = assets::inline_scripts(&index);
    assert_eq!(map.len(), 1, "one inline script: the import map");
    let v: serde_json::Value = serde_json::from_str(map[0]).expect("import map is JSON");
    for (name, target) in v["imports"].as_object().expect("imports") {
        let t = target.as_str().expect("string").trim_start_matches('/');
        assert!(assets::get(t).is_some(), "import map {name} -> {t} is not embedded");
    }
}

async fn get(app: &common::TestApp, path: &str) -> reqwest::Response {
    app.client.get(format!("{}{path}", app.http)).send().await.expect("get")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn serves_the_shell_deep_links_and_assets_with_a_strict_csp() {
    let app = common::spawn().await;
    let index = assets::get("index.html").expect("index");
    let map = assets::inline_scripts(std::str::from_utf8(index.bytes).expect("utf8"))[0].to_string();
    let map_hash = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map.as_bytes()))
    };

    for path in [
        "/",
        "/sessions",
        "/sessions/sess-1.2",
        "/sessions/a%2Fb",
        "/cost?group=agent&range=30d",
        "/tasks/T-1",
        "/alerts",
    ] {
        let r = get(&app, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8", "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        let csp = header(&r, "content-security-policy").to_string();
        assert!(csp.starts_with("default-src 'none'; "), "{path}: {csp}");
        assert!(csp.contains(&format!("script-src 'self' 'sha256-{map_hash}';")), "{path}: {csp}");
        for d in [
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(d), "{path}: {csp} lacks {d}");
        }
        assert!(!csp.contains("http") && !csp.contains("unsafe-") && !csp.contains('*'), "{path}: {csp}");
        assert_eq!(r.bytes().await.expect("body").as_ref(), index.bytes, "{path} answers the embedded shell");
    }

    let mut seen = 0;
    for a in assets::all() {
        let r = get(&app, &format!("/{}", a.path)).await;
        assert_eq!(r.status(), 200, "{}", a.path);
        assert_eq!(header(&r, "content-type"), assets::mime(a.path), "{}", a.path);
        let etag = header(&r, "etag").to_string();
        assert_eq!(etag, format!("\"{}\"", &a.sha256[..32]), "{}", a.path);
        assert_eq!(r.bytes().await.expect("body").as_ref(), a.bytes, "{} served byte for byte", a.path);
        let again = app
            .client
            .get(format!("{}/{}", app.http, a.path))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("conditional get");
        assert_eq!(again.status(), 304, "{}", a.path);
        seen += 1;
    }
    assert_eq!(seen, assets::ASSETS.len());
    for (path, mime) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/vendor/preact.mjs", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        assert_eq!(header(&get(&app, path).await, "content-type"), mime, "{path}");
    }

    // A missing file is a 404, never the shell (a missing script must not be parsed as HTML).
    for path in [
        "/nope.js",
        "/lib/nope.js",
        "/vendor/react.mjs",
        "/api/nope",
        "/api/sessions/x/nope",
        "/v1/nope",
        "/favicon.ico",
    ] {
        let r = get(&app, path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(!header(&r, "content-type").starts_with("text/html"), "{path}");
    }
    // The API and OTLP routes are untouched: POST / is still OTLP/HTTP, /api/* still JSON.
    let r = app.post("/", "application/json", br#"{"resourceLogs":[]}"#.to_vec()).await;
    assert_eq!(r.status(), 200, "POST / is OTLP");
    let r = get(&app, "/api/agents").await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/json"));
    let r = get(&app, "/healthz").await;
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn the_shell_is_public_and_the_data_needs_the_read_token() {
    let app = common::spawn_with(|a| a.read_token = Some("r3ad".into())).await;
    let r = get(&app, "/sessions").await;
    assert_eq!(r.status(), 200, "the shell holds no data: the page asks for the token");
    assert_eq!(get(&app, "/app.js").await.status(), 200);
    assert_eq!(get(&app, "/api/agents").await.status(), 401, "data stays behind the read token");
    assert_eq!(get(&app, "/api/live").await.status(), 401);
    let r = app.client.get(format!("{}/api/agents", app.http)).bearer_auth("r3ad").send().await.expect("get");
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn console_dir_serves_files_from_disk_without_leaving_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let html = "<!doctype html><script type=\"importmap\">{\"imports\":{}}</script><p>from disk</p>";
    std::fs::write(dir.path().join("index.html"), html).expect("write");
    std::fs::create_dir(dir.path().join("lib")).expect("mkdir");
    std::fs::write(dir.path().join("lib/x.js"), "export const x = 1;\n").expect("write");
    let secret = dir.path().parent().expect("parent").join(format!("console-secret-{}", std::process::id()));
    std::fs::write(&secret, "secret").expect("write");
    let served = dir.path().to_path_buf();
    let app = common::spawn_with(move |a| a.console_dir = Some(served)).await;
    let r = get(&app, "/sessions/abc").await;
    assert_eq!(r.status(), 200);
    let csp = header(&r, "content-security-policy").to_string();
    let hash = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(br#"{"imports":{}}"#))
    };
    assert!(csp.contains(&format!("'sha256-{hash}'")), "CSP follows the file on disk: {csp}");
    assert_eq!(r.text().await.expect("text"), html);
    let r = get(&app, "/lib/x.js").await;
    assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(r.text().await.expect("text"), "export const x = 1;\n");
    let name = secret.file_name().expect("name").to_string_lossy().to_string();
    for path in [format!("/..%2F{name}"), format!("/lib/..%2F..%2F{name}"), "/%2Fetc%2Fpasswd".to_string()] {
        let r = get(&app, &path).await;
        let status = r.status();
        let body = r.text().await.expect("text");
        assert!(!body.contains("secret") && !body.contains("root:"), "{path}: {status} {body}");
    }
    assert_eq!(get(&app, "/app.js").await.status(), 404, "only the directory's files, not the embedded copy");
    std::fs::remove_file(&secret).expect("cleanup");
    app.shutdown().await;
}
