//! HTTPS at the gateway: the checked-in gateway.conf with its `#tls` lines
//! switched on, exactly as its comment says, on a throwaway self-signed
//! certificate. HTTP/2 is offered, Strict-Transport-Security is sent over HTTPS
//! and only there, and the plain public port redirects to HTTPS.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{StatusCode, header};

use support::free_port;
use support::gateway::{
    App, GATEWAY_CONF, Gateway, conf_for, nginx, nginx_test, openssl, prefix_with,
};

/// What starts every line of the TLS part of gateway.conf.
const MARKER: &str = "#tls";
/// The lines the test rewrites, as they read once switched on.
const TLS_LISTEN: &str = "listen 127.0.0.1:8443 ssl http2;";
const CERTIFICATE: &str = "ssl_certificate /etc/minimart/tls/fullchain.pem;";
const KEY: &str = "ssl_certificate_key /etc/minimart/tls/privkey.pem;";
const REDIRECT_LISTEN: &str = "listen 127.0.0.1:80;";
const REDIRECT_TO: &str = "https://$host:8443$request_uri";

const HSTS: &str = "max-age=31536000";

/// `conf` with TLS switched on: the marker and the one space after it removed
/// from the start of every line (`sed -E 's/^#tls ?//'`), nothing else.
fn switched_on(conf: &str) -> String {
    conf.lines()
        .map(|line| match line.strip_prefix(MARKER) {
            Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
            None => line,
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Replaces the one `from` in `conf`.
fn replace_once(conf: &str, from: &str, to: &str) -> String {
    assert_eq!(conf.matches(from).count(), 1, "exactly one `{from}`");
    conf.replace(from, to)
}

/// A self-signed certificate for 127.0.0.1 and its key, in `folder`.
fn self_signed(openssl: &Path, folder: &Path) {
    std::fs::create_dir_all(folder).expect("the certificate folder");
    let made = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(folder.join("privkey.pem"))
        .arg("-out")
        .arg(folder.join("fullchain.pem"))
        .output()
        .expect("openssl req runs");
    assert!(
        made.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// `openssl s_client` to `port`, trusting only `certificate` (the handshake
/// fails unless the gateway presents it, valid for 127.0.0.1), sending `input`,
/// and killed if it has not finished within 10 s.
fn s_client(openssl: &Path, port: u16, certificate: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(openssl)
        .arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(certificate)
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client runs");
    let pid = Pid::from_raw(child.id() as i32);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("the request is written");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(Duration::from_secs(10)) {
        Ok(output) => output.expect("openssl s_client ends"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("openssl s_client did not finish within 10 s");
        }
    }
}

/// The answer to `GET path` over HTTPS (HTTP/1.1): the status line, and the
/// header lines (`name: value`, the name lower-cased).
fn https_get(openssl: &Path, port: u16, certificate: &Path, path: &str) -> (String, Vec<String>) {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let output = s_client(
        openssl,
        port,
        certificate,
        &["-quiet", "-alpn", "http/1.1"],
        &request,
    );
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "GET {path} over HTTPS: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head = said.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .map(|line| match line.split_once(':') {
            Some((name, value)) => format!("{}: {}", name.to_ascii_lowercase(), value.trim()),
            None => line.to_owned(),
        })
        .collect();
    (status, headers)
}

fn values<'a>(headers: &'a [String], name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    headers
        .iter()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn tls_is_in_the_config_but_switched_off() {
    let tls_lines: Vec<&str> = GATEWAY_CONF
        .lines()
        .filter(|line| line.starts_with(MARKER))
        .collect();
    assert!(tls_lines.len() > 5, "the marked TLS lines: {tls_lines:?}");
    let on = switched_on(GATEWAY_CONF);
    for line in [TLS_LISTEN, CERTIFICATE, KEY, REDIRECT_LISTEN, REDIRECT_TO] {
        assert_eq!(on.matches(line).count(), 1, "switched on: `{line}`");
    }
    // Off, no line speaks TLS.
    let active = GATEWAY_CONF
        .lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with('#'));
    for line in active {
        assert!(
            !line.starts_with("ssl_") && !line.contains(" ssl") && !line.contains("8443"),
            "TLS is switched off in the checked-in file: {line}"
        );
    }
}

#[actix_web::test]
async fn switched_on_tls_serves_the_shop_over_http2_with_hsts() {
    let Some(nginx) = nginx() else { return };
    let Some(openssl) = openssl() else { return };
    let plain_port = free_port();
    let tls_port = free_port();
    let redirect_port = free_port();
    assert!(plain_port != tls_port && tls_port != redirect_port && plain_port != redirect_port);
    // The origin browsers see, once the shop is on HTTPS.
    let public_url = format!("https://127.0.0.1:{tls_port}");
    let app = App::start_on(
        Some(plain_port),
        None,
        &[("MINIMART_PUBLIC_URL", &public_url)],
    )
    .await;

    // The certificate in the prefix, named there relative to the configuration.
    let on = switched_on(&conf_for(plain_port, &app.address));
    let on = replace_once(
        &on,
        TLS_LISTEN,
        &format!("listen 127.0.0.1:{tls_port} ssl http2;"),
    );
    let on = replace_once(
        &on,
        CERTIFICATE,
        "ssl_certificate .gateway/tls/fullchain.pem;",
    );
    let on = replace_once(&on, KEY, "ssl_certificate_key .gateway/tls/privkey.pem;");
    let on = replace_once(
        &on,
        REDIRECT_LISTEN,
        &format!("listen 127.0.0.1:{redirect_port};"),
    );
    let on = replace_once(
        &on,
        REDIRECT_TO,
        &format!("https://$host:{tls_port}$request_uri"),
    );
    let prefix = prefix_with(&on);
    let tls = prefix.path().join(".gateway/tls");
    self_signed(&openssl, &tls);
    let certificate = tls.join("fullchain.pem");

    // No warnings but, on nginx 1.25.1 and later, the one about the older
    // `listen ... http2` syntax the config uses for Debian's nginx.
    let checked = nginx_test(&nginx, prefix.path());
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "nginx -t: {said}");
    for warning in said.lines().filter(|line| line.contains("[warn]")) {
        assert!(
            warning.contains("\"listen ... http2\" directive is deprecated"),
            "{said}"
        );
    }
    let gateway = Gateway::start_in(&nginx, plain_port, prefix).await;

    // HTTP/2 offered, on TLS 1.2 and 1.3 alike, with the configured certificate.
    for version in ["-tls1_2", "-tls1_3"] {
        let handshake = s_client(
            &openssl,
            tls_port,
            &certificate,
            &[version, "-alpn", "h2"],
            "",
        );
        let said = String::from_utf8_lossy(&handshake.stdout);
        assert!(
            said.contains("ALPN protocol: h2"),
            "{version}: {said}{}",
            String::from_utf8_lossy(&handshake.stderr)
        );
        assert!(said.contains("Verify return code: 0 (ok)"), "{said}");
    }

    // The shop over HTTPS, with HSTS once.
    for (path, content_type) in [("/healthz", "application/json"), ("/", "text/html")] {
        let (status, headers) = https_get(&openssl, tls_port, &certificate, path);
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        assert!(
            values(&headers, "content-type")
                .first()
                .is_some_and(|value| value.starts_with(content_type)),
            "{path}: {headers:?}"
        );
        assert_eq!(
            values(&headers, "strict-transport-security"),
            [HSTS],
            "{path}: {headers:?}"
        );
        assert_eq!(values(&headers, "x-request-id").len(), 1, "{headers:?}");
    }

    // No HSTS over plain HTTP: neither on the loopback port nor on the redirect.
    let plain = gateway
        .client
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("GET plain");
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(
        !plain
            .headers()
            .contains_key(header::STRICT_TRANSPORT_SECURITY)
    );
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .get(format!(
            "http://127.0.0.1:{redirect_port}/products/tea?from=mail"
        ))
        .send()
        .await
        .expect("GET on the redirecting port");
    assert_eq!(redirect.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        redirect.headers()[header::LOCATION],
        format!("{public_url}/products/tea?from=mail").as_str()
    );
    assert!(
        !redirect
            .headers()
            .contains_key(header::STRICT_TRANSPORT_SECURITY)
    );
    drop(gateway);
    drop(app);
}
