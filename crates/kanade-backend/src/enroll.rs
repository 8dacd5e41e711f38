//! Enrolment, the pure part: which agent release a new PC gets, and the install scripts that
//! `GET /api/enroll/install.sh|ps1` serve (`http/enroll.rs` is the IO around them).

use std::sync::Arc;

use kanade_shared::Version;
use kanade_shared::nats::BrokerAuth;
use kanade_shared::wire::enroll::target_fits;

/// What this backend needs to enrol agents.
#[derive(Clone, Default)]
pub struct Settings {
    /// The broker URL(s) enrolled agents dial.
    pub agent_nats_url: String,
    /// This backend's URL as PCs reach it; `None`: the URL a request came in on.
    pub public_url: Option<String>,
    /// The account key the broker's auth callout trusts: without it the broker never asks
    /// this backend, and enrolled agents' credentials admit nobody.
    pub callout: Option<Arc<nkeys::KeyPair>>,
    /// The broker's system account (URL and credentials), to disconnect revoked agents.
    pub system: Option<(String, BrokerAuth)>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("agent_nats_url", &self.agent_nats_url)
            .field("public_url", &self.public_url)
            .field("callout", &self.callout.as_ref().map(|k| k.public_key()))
            .field("system", &self.system.as_ref().map(|(url, _)| url))
            .finish()
    }
}

/// The release a PC on `os`/`arch` installs: the fleet's target version when it was published
/// for this platform, else the newest published for it. `published` holds `(version, target)`.
pub fn choose_release(
    published: &[(Version, String)],
    fleet_target: Option<&Version>,
    os: &str,
    arch: &str,
) -> Option<(Version, String)> {
    let mut fitting: Vec<&(Version, String)> =
        published.iter().filter(|(_, target)| target_fits(target, os, arch)).collect();
    // Among builds of one version for one platform (gnu, musl), the first by name.
    fitting.sort_by(|a, b| version_order(&b.0).cmp(&version_order(&a.0)).then_with(|| a.1.cmp(&b.1)));
    fleet_target
        .and_then(|want| fitting.iter().find(|(v, _)| v == want))
        .or_else(|| fitting.first())
        .map(|&(v, t)| (v.clone(), t.clone()))
}

/// A version's sort key: dot-separated numbers compare as numbers (1.10 after 1.9), a
/// pre-release (`-rc.1`) before its release; build metadata (`+…`) is ignored.
fn version_order(v: &Version) -> (Vec<(u64, String)>, bool, String) {
    let text = v.as_str().split('+').next().unwrap_or_default();
    let (core, pre) = text.split_once('-').unwrap_or((text, ""));
    let parts =
        core.split('.').map(|p| p.parse::<u64>().map_or((0, p.to_owned()), |n| (n, String::new()))).collect();
    (parts, pre.is_empty(), pre.to_owned())
}

/// The base URL of this backend from a request's Host header and scheme, when it is a plain
/// host[:port] (anything else could smuggle shell or PowerShell code into a script).
pub fn base_url(host: &str, https: bool) -> Result<String, String> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(format!("{}://{host}", if https { "https" } else { "http" }))
    } else {
        Err(format!("the Host header {host:?} is not a host name; set [enroll] public_url in backend.toml"))
    }
}

/// A broker URL (list) without any `user:password@` in it: the backend's own credentials must
/// never reach an enrolled PC's config.
pub fn without_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let u = u.trim();
            match (u.find("://"), u.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => format!("{}://{}", &u[..scheme], &u[at + 1..]),
                _ => u.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A URL as it may be pasted into a script: scheme, host, port and path characters only.
pub fn is_script_safe_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/' | b'[' | b']'))
}

/// An enrolment token as it may appear inside a script: hex only.
pub fn is_token_text(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

const SYSTEMD_UNIT: &str = include_str!("../../../deploy/systemd/kanade-agent.service");

/// The one-liner an admin pastes on a Linux PC (as root). No `curl -f`: a refused token is
/// answered with a script that prints why, which sh then shows.
pub fn linux_line(base: &str, token: &str) -> String {
    format!("curl -sSL '{base}/api/enroll/install.sh?token={token}' | sudo sh")
}

/// The one-liner for an elevated PowerShell on a Windows PC (TLS 1.2 switched on first: Windows
/// PowerShell 5.1 may offer only older versions).
pub fn windows_line(base: &str, token: &str) -> String {
    format!(
        "powershell -NoProfile -ExecutionPolicy Bypass -Command \"[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor 3072; iwr -UseBasicParsing '{base}/api/enroll/install.ps1?token={token}' | iex\""
    )
}

/// The POSIX shell installer. `base` and `token` must have passed [`base_url`] and
/// [`is_token_text`]: they are pasted into single quotes.
pub fn install_sh(base: &str, token: &str) -> String {
    let unit = SYSTEMD_UNIT.trim_end();
    format!(
        r#"#!/bin/sh
# kanade agent installer: downloads the agent from {base}, enrols this PC (its own broker
# credentials, written into agent.toml) and installs the systemd service.
#   {line}
# KANADE_PC_ID      this PC's id (default: the host name up to its first dot)
# KANADE_PREFIX     install under this directory instead of / (no service; prints how to start)
# KANADE_NO_SERVICE 1: do not install or start the systemd service
# (sudo drops the environment: pass them after it, e.g. ... | sudo KANADE_PC_ID=lab-07 sh)
set -eu
BASE='{base}'
TOKEN='{token}'
PREFIX="${{KANADE_PREFIX:-}}"
fail() {{ echo "kanade install: $*" >&2; exit 1; }}
command -v curl >/dev/null 2>&1 || fail "curl is needed"
case "$(uname -s)" in
  Linux) OS=linux ;;
  Darwin) OS=macos ;;
  *) fail "$(uname -s) is not supported (Linux or macOS; Windows: install.ps1)" ;;
esac
ARCH=$(uname -m)
PC_ID="${{KANADE_PC_ID:-$(uname -n | cut -d. -f1 | tr -c 'A-Za-z0-9_\n-' '-' | cut -c1-64)}}"
BIN="$PREFIX/usr/local/bin/kanade-agent"
CONF="$PREFIX/etc/kanade/agent.toml"
mkdir -p "$(dirname "$BIN")" "$(dirname "$CONF")"

# The error of a refused request: the "error" field of the JSON body, else the body.
why() {{ sed -n 's/.*"error" *: *"\([^"]*\)".*/\1/p' "$1" | grep . || cat "$1"; }}

echo "kanade install: downloading the agent for $OS/$ARCH"
code=$(curl -sS -o "$BIN.new" -w '%{{http_code}}' "$BASE/api/enroll/agent?token=$TOKEN&os=$OS&arch=$ARCH") \
  || fail "cannot reach $BASE"
[ "$code" = 200 ] || {{ msg=$(why "$BIN.new"); rm -f "$BIN.new"; fail "download refused ($code): $msg"; }}
chmod 755 "$BIN.new"

echo "kanade install: enrolling $PC_ID"
umask 077
code=$(curl -sS -o "$CONF.new" -w '%{{http_code}}' -H 'Accept: application/toml' \
  -H 'Content-Type: application/json' \
  -d "{{\"token\":\"$TOKEN\",\"pc_id\":\"$PC_ID\",\"os\":\"$OS\",\"arch\":\"$ARCH\"}}" "$BASE/api/enroll") \
  || fail "cannot reach $BASE"
[ "$code" = 200 ] || {{ msg=$(why "$CONF.new"); rm -f "$CONF.new" "$BIN.new"; fail "enrolment refused ($code): $msg"; }}
# Only an enrolled PC gets the new binary: a refusal leaves an installed agent as it was.
mv -f "$BIN.new" "$BIN"
if [ -n "$PREFIX" ]; then
  sed -i.orig -e "s|^data_dir = .*|data_dir = \"$PREFIX/var/lib/kanade\"|" \
    -e "s|^path = .*|path = \"$PREFIX/var/log/kanade\"|" "$CONF.new" && rm -f "$CONF.new.orig"
fi
[ -f "$CONF" ] && mv -f "$CONF" "$CONF.bak"
mv -f "$CONF.new" "$CONF"
echo "kanade install: $CONF written (this PC's broker credentials inside, readable by root only)"

if [ -z "$PREFIX" ] && [ "${{KANADE_NO_SERVICE:-}}" != 1 ] && command -v systemctl >/dev/null 2>&1 \
  && [ -d /run/systemd/system ]; then
  cat > /etc/systemd/system/kanade-agent.service <<'UNIT'
{unit}
UNIT
  systemctl daemon-reload
  systemctl enable kanade-agent
  # restart, not start: a re-enrolled PC's running agent must pick up its new credentials.
  systemctl restart kanade-agent
  echo "kanade install: kanade-agent.service enabled and (re)started"
else
  echo "kanade install: start the agent with: $BIN --config $CONF"
fi
"#,
        line = linux_line(base, token),
    )
}

/// The PowerShell installer for Windows (run elevated). Same inputs as [`install_sh`].
pub fn install_ps1(base: &str, token: &str) -> String {
    format!(
        r#"# kanade agent installer: downloads the agent from {base}, enrols this PC (its own broker
# credentials, written into agent.toml) and installs the kanade-agent service. Run elevated:
#   {line}
# $env:KANADE_PC_ID overrides this PC's id (default: the computer name).
$ErrorActionPreference = 'Stop'
$Admin = [Security.Principal.WindowsBuiltInRole]::Administrator
if (-not ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole($Admin)) {{
  throw 'kanade install: run this in an elevated PowerShell (Run as administrator)'
}}
# The server's reason when it gave one, else what went wrong on the way.
function Why($e) {{ if ($e.ErrorDetails.Message) {{ $e.ErrorDetails.Message }} else {{ $e.Exception.Message }} }}
# Windows PowerShell 5.1: TLS 1.2 on, and no progress bar (it slows downloads to a crawl).
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor 3072
$ProgressPreference = 'SilentlyContinue'
$Base = '{base}'
$Token = '{token}'
$PcId = if ($env:KANADE_PC_ID) {{ $env:KANADE_PC_ID }} else {{ $env:COMPUTERNAME -replace '[^A-Za-z0-9_-]', '-' }}
$Arch = if ($env:PROCESSOR_ARCHITECTURE -eq 'ARM64') {{ 'aarch64' }} else {{ 'x86_64' }}
$Dir = Join-Path $env:ProgramFiles 'Kanade'
$ConfDir = Join-Path $env:ProgramData 'Kanade\config'
New-Item -ItemType Directory -Force -Path $Dir, $ConfDir | Out-Null
$Exe = Join-Path $Dir 'kanade-agent.exe'
Write-Host "kanade install: downloading the agent for windows/$Arch"
try {{
  Invoke-WebRequest -UseBasicParsing -Uri "$Base/api/enroll/agent?token=$Token&os=windows&arch=$Arch" -OutFile "$Exe.new"
}} catch {{ throw "kanade install: the download failed: $(Why $_)" }}
Write-Host "kanade install: enrolling $PcId"
$Body = @{{ token = $Token; pc_id = $PcId; os = 'windows'; arch = $Arch }} | ConvertTo-Json
try {{
  $R = Invoke-RestMethod -Method Post -Uri "$Base/api/enroll" -ContentType 'application/json' -Body $Body
}} catch {{ Remove-Item -Force "$Exe.new" -ErrorAction SilentlyContinue; throw "kanade install: enrolment failed: $(Why $_)" }}
# A re-enrolled PC: its running agent is stopped before its binary and config are replaced.
$Service = Get-Service -Name kanade-agent -ErrorAction SilentlyContinue
if ($Service -and $Service.Status -ne 'Stopped') {{ Stop-Service kanade-agent }}
Move-Item -Force "$Exe.new" $Exe
$Conf = Join-Path $ConfDir 'agent.toml'
# Readable by SYSTEM and Administrators only (SIDs: group names are localised) before the
# broker password goes in; UTF-8 without a byte order mark.
if (-not (Test-Path $Conf)) {{ New-Item -ItemType File -Path $Conf | Out-Null }}
icacls $Conf /inheritance:r /grant:r '*S-1-5-18:(F)' '*S-1-5-32-544:(F)' | Out-Null
if ($LASTEXITCODE -ne 0) {{ throw "kanade install: cannot restrict $Conf to SYSTEM and Administrators (icacls $LASTEXITCODE)" }}
[IO.File]::WriteAllText($Conf, $R.agent_toml)
if ($Service) {{
  Start-Service kanade-agent
}} else {{
  & $Exe --config $Conf service install
  if ($LASTEXITCODE -ne 0) {{ throw "kanade install: service install failed ($LASTEXITCODE)" }}
}}
Write-Host "kanade install: kanade-agent service installed and running"
"#,
        line = windows_line(base, token),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_pc_gets_the_fleet_target_else_the_newest_for_its_platform() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        let published = vec![
            (v("1.0.0"), "x86_64-unknown-linux-gnu".to_owned()),
            (v("1.2.0"), "x86_64-unknown-linux-musl".to_owned()),
            (v("1.2.0"), "x86_64-unknown-linux-gnu".to_owned()),
            (v("1.1.0"), "x86_64-pc-windows-gnu".to_owned()),
            (v("2.0.0"), "aarch64-unknown-linux-gnu".to_owned()),
            (v("1.10.0-rc.1"), "x86_64-pc-windows-gnu".to_owned()),
            (v("1.9.0"), "x86_64-pc-windows-gnu".to_owned()),
        ];
        let pick = |target: Option<&str>, os, arch| {
            choose_release(&published, target.map(v).as_ref(), os, arch).map(|(v, t)| format!("{v} {t}"))
        };
        assert_eq!(pick(None, "linux", "x86_64").as_deref(), Some("1.2.0 x86_64-unknown-linux-gnu"));
        assert_eq!(pick(Some("1.0.0"), "linux", "x86_64").as_deref(), Some("1.0.0 x86_64-unknown-linux-gnu"));
        // The fleet's target was not built for this platform: the newest that was.
        assert_eq!(pick(Some("2.0.0"), "linux", "x86_64").as_deref(), Some("1.2.0 x86_64-unknown-linux-gnu"));
        // 1.10 is newer than 1.9, and its release candidate too.
        assert_eq!(pick(None, "windows", "x86_64").as_deref(), Some("1.10.0-rc.1 x86_64-pc-windows-gnu"));
        assert_eq!(pick(None, "macos", "aarch64"), None);
    }

    #[test]
    fn only_a_plain_host_becomes_the_scripts_url() {
        assert_eq!(base_url("kanade.example:8443", true).unwrap(), "https://kanade.example:8443");
        assert_eq!(base_url("[::1]:8080", false).unwrap(), "http://[::1]:8080");
        for bad in ["", "a b", "x';rm -rf /'", "h$(id)", "h\"x"] {
            assert!(base_url(bad, false).is_err(), "{bad}");
        }
        assert!(is_token_text(&"ab".repeat(32)));
        assert!(!is_token_text("ab'; x"));
    }

    #[test]
    fn broker_credentials_never_reach_an_agents_url() {
        assert_eq!(without_credentials("nats://backend:pw@a:4222"), "nats://a:4222");
        assert_eq!(
            without_credentials("tls://u:p@a:4222, nats://b:4222,nats://x@c:4222"),
            "tls://a:4222,nats://b:4222,nats://c:4222"
        );
        assert_eq!(without_credentials("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert!(is_script_safe_url("https://kanade.example.com:8443/base"));
        assert!(!is_script_safe_url("https://x'; rm -rf /"));
        assert!(!is_script_safe_url("ftp://x"));
    }

    #[test]
    fn the_scripts_carry_the_url_token_and_unit() {
        let token = "0f".repeat(32);
        let sh = install_sh("http://h:8080", &token);
        assert!(sh.starts_with("#!/bin/sh\n"));
        assert!(sh.contains(&format!("TOKEN='{token}'")));
        assert!(sh.contains("BASE='http://h:8080'"));
        assert!(sh.contains("ExecStart=/usr/local/bin/kanade-agent --config /etc/kanade/agent.toml"));
        let ps = install_ps1("http://h:8080", &token);
        assert!(ps.contains(&format!("$Token = '{token}'")));
        assert!(ps.contains("service install"));
    }
}
