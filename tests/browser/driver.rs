//! Starting chromedriver and a headless Chromium session, and the few things the
//! stories ask of a page. Every page a story visits must also keep the browser's
//! console clean: the browser's log is read (and emptied) whenever a story opens a
//! page, checks one's accessibility or finishes, and any error or warning from the
//! pages' scripts fails the story.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::gateway::installed;
use support::{free_port, skip};

const CHROMIUM: &str = "/usr/bin/chromium";
const AXE: &str = include_str!("../assets/axe-core-4.11.1.min.js");

/// A chromedriver process and one browser session; both end when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser, or `None` (after saying so loudly) when none is installed here.
    /// In CI a missing browser fails the test instead.
    pub async fn start() -> Option<Browser> {
        if !(installed("chromedriver", "--version") && installed(CHROMIUM, "--version")) {
            skip(
                "chromium and chromedriver are not installed: browser stories cannot run \
                 (apt-get install chromium chromium-driver)",
            );
            return None;
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({
            // The browser's log (console messages, uncaught exceptions) from the start
            // of each page's load, read back with `BrowserLog`.
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "no browser session: {error}");
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// A browser on the page at `url`; `None` as [`Browser::start`].
    pub async fn start_on(url: &str) -> Option<Browser> {
        let browser = Browser::start().await?;
        browser.open(url).await;
        Some(browser)
    }

    /// Opens `url`, once the page left behind has been found console-clean.
    pub async fn open(&self, url: &str) {
        self.assert_console_clean().await;
        self.client.goto(url).await.expect("the page opens");
    }

    /// Fails on any error or warning the pages' scripts wrote to the console (or
    /// threw) since the last look.
    pub async fn assert_console_clean(&self) {
        let problems = self.console_problems().await;
        assert!(problems.is_empty(), "{problems}");
    }

    /// The errors and warnings in the browser's log since the last look (reading
    /// the log empties it), said with the page now open; empty when there are none.
    async fn console_problems(&self) -> String {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("the browser's log");
        let problems: Vec<&Value> = log
            .as_array()
            .expect("log entries")
            .iter()
            .filter(|entry| matches!(entry["level"].as_str(), Some("SEVERE" | "WARNING")))
            // Failed loads are the server's answers, not the scripts': a wrong admin
            // token is a 401 on purpose (and there is no /favicon.ico). What the
            // scripts make of an answer shows as `console-api` or `javascript`.
            .filter(|entry| entry["source"].as_str() != Some("network"))
            .collect();
        if problems.is_empty() {
            return String::new();
        }
        let page = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(error) => error.to_string(),
        };
        format!("console errors or warnings (the browser now on {page}): {problems:#?}")
    }

    pub async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|error| panic!("no {selector} on the page: {error}"))
    }

    /// Clicks the element `selector` picks, once it is there.
    pub async fn click(&self, selector: &str) {
        let element = self.css(selector).await;
        (element.click().await).unwrap_or_else(|error| panic!("clicking {selector}: {error}"));
    }

    /// Types `text` into the field `selector` picks, in place of what it held.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let field = self.css(selector).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    pub async fn text_of(&self, selector: &str) -> String {
        self.css(selector).await.text().await.expect("its text")
    }

    /// Fails unless `selector` shows text containing `wanted` now.
    pub async fn assert_shows(&self, selector: &str, wanted: &str) {
        let text = self.text_of(selector).await;
        assert!(
            text.contains(wanted),
            "{selector} shows no {wanted:?}: {text}"
        );
    }

    /// Waits until `selector` shows text containing `wanted` (10 s at most).
    pub async fn until_text(&self, selector: &str, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(element) = self.client.find(Locator::Css(selector)).await
                && let Ok(text) = element.text().await
                && text.contains(wanted)
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{selector} never showed {wanted:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the order's notifications tell `wanted` (10 s at most).
    pub async fn until_notified(&self, wanted: &str) -> String {
        self.until_text(".notifications", wanted).await
    }

    /// Runs axe-core in the page and fails on serious or critical violations (and
    /// on console errors or warnings so far).
    pub async fn assert_accessible(&self, page: &str) {
        self.assert_console_clean().await;
        self.client.execute(AXE, vec![]).await.expect("axe loads");
        let violations = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                  nodes: v.nodes.map(n => n.target.join(' ')) }))))
                   .catch(e => done([{ id: 'axe-error', help: String(e) }]));",
                vec![],
            )
            .await
            .expect("axe runs");
        assert_eq!(
            violations,
            Value::Array(vec![]),
            "{page}: serious or critical accessibility violations"
        );
    }

    /// With `MINIMART_SCREENSHOTS=DIR` set, saves the page as `DIR/NAME.png`
    /// (`MINIMART_SCREENSHOTS=docs cargo test --test browser` refreshes the
    /// README's pictures); without it, does nothing.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("MINIMART_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Puts a marker in the page's JavaScript state: it survives only if the page
    /// is never reloaded.
    pub async fn mark_page(&self) {
        self.client
            .execute("window.__minimart_marker = 'still here';", vec![])
            .await
            .expect("a marker");
    }

    pub async fn page_was_not_reloaded(&self) -> bool {
        self.client
            .execute("return window.__minimart_marker === 'still here';", vec![])
            .await
            .expect("the marker")
            == Value::Bool(true)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Checks the last page's console, then ends the session (closing Chromium)
    /// before chromedriver is stopped.
    pub async fn finish(self) {
        // What a page does at its end (an event stream closing, say) shows shortly
        // after the story's last look at it.
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        let problems = self.console_problems().await;
        let _ = self.client.clone().close().await;
        assert!(problems.is_empty(), "{problems}");
    }
}

/// Chromedriver's command for the browser's log (`goog:loggingPrefs`): the entries
/// since the last read, each with `level`, `source`, `message` and `timestamp`.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        // fantoccini's `url` types, named through reqwest's re-export of the crate.
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (hyper::Method, Option<String>) {
        (
            hyper::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}
