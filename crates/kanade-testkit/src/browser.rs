//! A real headless Chromium, driven over WebDriver through `chromedriver` (Debian packages
//! `chromium` and `chromium-driver`). A small blocking client: the W3C endpoints the dashboard
//! tests use, over plain HTTP/1.1 on loopback, so no browser-automation crate is needed.
//!
//! Calls block the calling thread; run browser tests on a multi-threaded runtime with spare
//! workers so the backend under test keeps serving.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// An element handle of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Start chromedriver and a headless Chromium with a fresh profile, window `width`×`height`.
    pub fn start(width: u32, height: u32) -> Result<Self, String> {
        let driver_bin = std::env::var("KANADE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("KANADE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = crate::free_port()?;
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start {driver_bin} ({e}); install it with `apt-get install chromium chromium-driver`")
            })?;
        let mut browser = Self { driver, port, session: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !browser.call("GET", "/status", None).is_ok_and(|v| v["ready"] == true) {
            if Instant::now() > deadline {
                return Err("chromedriver did not become ready within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = std::env::temp_dir().join(format!("kanade-chromium-{port}"));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            // The page's console, so a test can fail on script errors and CSP violations.
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        } } });
        let created = browser.call("POST", "/session", Some(caps))?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("chromedriver gave no session: {created}"))?
            .to_owned();
        browser.resize(width, height)?;
        Ok(browser)
    }

    /// Set the viewport (not the window) to exactly `width`×`height` CSS pixels; narrow ones
    /// are emulated as a phone.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), String> {
        let params =
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 });
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": params }),
        )
        .map(|_| ())
    }

    /// Emulate the OS colour scheme (`prefers-color-scheme`).
    pub fn prefer_dark(&self, dark: bool) -> Result<(), String> {
        let value = if dark { "dark" } else { "light" };
        let params = json!({ "features": [{ "name": "prefers-color-scheme", "value": value }] });
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setEmulatedMedia", "params": params }),
        )
        .map(|_| ())
    }

    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.cmd("POST", "/url", json!({ "url": url })).map(|_| ())
    }

    pub fn find(&self, css: &str) -> Result<Element, String> {
        let v = self.cmd("POST", "/element", json!({ "using": "css selector", "value": css }))?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned())).ok_or_else(|| format!("no element {css:?}"))
    }

    pub fn find_all(&self, css: &str) -> Result<Vec<Element>, String> {
        let v = self.cmd("POST", "/elements", json!({ "using": "css selector", "value": css }))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
            .collect())
    }

    /// Wait until `css` matches an element (the dashboard renders asynchronously).
    pub fn wait_for(&self, css: &str, within: Duration) -> Result<Element, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.find(css) {
                Ok(e) => return Ok(e),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("{e} within {within:?}; page text:\n{}", self.page_text())),
            }
        }
    }

    /// Wait until the text of `css` satisfies `ok`; returns it.
    pub fn wait_text(
        &self,
        css: &str,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            if let Ok(e) = self.find(css) {
                last = self.text(&e).unwrap_or_default();
                if ok(&last) {
                    return Ok(last);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{css:?} still reads {last:?} after {within:?}; page text:\n{}",
                    self.page_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page's console errors since the last call (JavaScript exceptions, CSP violations,
    /// failed loads), as Chromium words them.
    pub fn console_errors(&self) -> Result<Vec<String>, String> {
        let entries = self.cmd("POST", "/se/log", json!({ "type": "browser" }))?;
        Ok(entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect())
    }

    /// Accept the open `confirm()` dialog (WebDriver user prompts).
    pub fn accept_alert(&self) -> Result<(), String> {
        self.cmd("POST", "/alert/accept", json!({})).map(|_| ())
    }

    /// Find `css` and click it, again while the element goes stale between the two: a live
    /// page redraws itself when an event arrives.
    pub fn click_on(&self, css: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            match self.wait_for(css, within).and_then(|e| self.click(&e)) {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn click(&self, e: &Element) -> Result<(), String> {
        self.cmd("POST", &format!("/element/{}/click", e.0), json!({})).map(|_| ())
    }

    pub fn type_into(&self, e: &Element, text: &str) -> Result<(), String> {
        self.cmd("POST", &format!("/element/{}/clear", e.0), json!({}))?;
        self.cmd("POST", &format!("/element/{}/value", e.0), json!({ "text": text })).map(|_| ())
    }

    pub fn text(&self, e: &Element) -> Result<String, String> {
        Ok(self
            .cmd("GET", &format!("/element/{}/text", e.0), Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Run a script in the page and return its value.
    pub fn execute(&self, script: &str) -> Result<Value, String> {
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    pub fn page_text(&self) -> String {
        self.execute("return document.body ? document.body.innerText : ''")
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Save a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot is not base64: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = (!body.is_null()).then_some(body);
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let (_, body) =
            crate::http::request(self.port, method, path, payload.as_bytes(), "application/json")?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("{method} {path}: {e}"))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            return Err(format!("{method} {path}: {err}: {}", value["message"].as_str().unwrap_or_default()));
        }
        Ok(value)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("kanade-chromium-{}", self.port)));
    }
}
