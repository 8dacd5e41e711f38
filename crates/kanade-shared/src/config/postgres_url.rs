//! TLS settings in a `postgres://` URL, read the way libpq reads them (`sslmode`, `sslrootcert`),
//! so an admin's existing connection string means the same thing here. The driver underneath
//! knows only `disable | prefer | require` and refuses `sslrootcert`: this module takes both out
//! of the URL and says what the connection must verify.

use std::path::PathBuf;

/// How a connection to Postgres uses TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: PgSslMode,
    /// Where the certificates that may sign the server's come from (verify modes only).
    pub roots: PgRoots,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, its certificate not checked (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked against `sslrootcert` when one is
    /// given (as libpq does), otherwise not.
    Require,
    /// TLS, the certificate chain checked; the host name not.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgRoots {
    /// No `sslrootcert`: the system's trusted roots serve the verify modes.
    Unset,
    /// `sslrootcert=system`.
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

impl PgTls {
    /// Whether the server's certificate chain is checked: always in the verify modes, and, as
    /// libpq does, in `prefer` and `require` when a root file is given.
    pub fn verifies_chain(&self) -> bool {
        match self.mode {
            PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
            PgSslMode::Require | PgSslMode::Prefer => matches!(self.roots, PgRoots::File(_)),
            PgSslMode::Disable => false,
        }
    }
}

/// Split a `postgres://` URL into the URL the driver accepts and the TLS it must use. The error
/// names the parameter and value that are wrong.
pub fn postgres_tls(url: &str) -> Result<(String, PgTls), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = None;
    let mut roots = PgRoots::Unset;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => PgSslMode::Disable,
                    "allow" | "prefer" => PgSslMode::Prefer,
                    "require" => PgSslMode::Require,
                    "verify-ca" => PgSslMode::VerifyCa,
                    "verify-full" => PgSslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                        ));
                    }
                })
            }
            "sslrootcert" => {
                let path = percent_decode(value).ok_or_else(|| {
                    format!("sslrootcert={value:?} has a broken %-escape (write %2F for /, %20 for a space)")
                })?;
                roots = match path.as_str() {
                    "" => {
                        return Err(
                            "sslrootcert is empty; give the path of a PEM file of CA certificates".into()
                        );
                    }
                    "system" => PgRoots::System,
                    _ => PgRoots::File(PathBuf::from(path)),
                };
            }
            _ => kept.push(pair),
        }
    }
    // The driver is told only whether TLS is off, optional or required; the checks are ours.
    // As libpq 16: `sslrootcert=system` makes `verify-full` the default and allows nothing
    // weaker (a public CA's certificate for any name would do otherwise), and `verify-ca`
    // needs the CA it is to check against.
    let mode = match (mode, &roots) {
        (None, PgRoots::System) => PgSslMode::VerifyFull,
        (None, _) => PgSslMode::Prefer,
        (Some(m), PgRoots::System) if m != PgSslMode::VerifyFull => {
            return Err(format!(
                "sslrootcert=system checks against every public CA, so it needs sslmode=verify-full (not {})",
                mode_name(m)
            ));
        }
        (Some(PgSslMode::VerifyCa), PgRoots::Unset) => {
            return Err(
                "sslmode=verify-ca needs sslrootcert=<PEM file of the CA that signs the server's certificate>".into(),
            );
        }
        (Some(m), _) => m,
    };
    kept.push(match mode {
        PgSslMode::Disable => "sslmode=disable",
        PgSslMode::Prefer => "sslmode=prefer",
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => "sslmode=require",
    });
    Ok((format!("{base}?{}", kept.join("&")), PgTls { mode, roots }))
}

fn mode_name(m: PgSslMode) -> &'static str {
    match m {
        PgSslMode::Disable => "disable",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: PgSslMode, roots: PgRoots) -> PgTls {
        PgTls { mode, roots }
    }

    #[test]
    fn libpq_tls_parameters_are_read_and_the_driver_gets_what_it_knows() {
        use PgRoots::*;
        use PgSslMode::*;
        let cases: &[(&str, &str, PgTls)] = &[
            ("postgres://h/db", "postgres://h/db?sslmode=prefer", tls(Prefer, Unset)),
            ("postgres://h/db?sslmode=disable", "postgres://h/db?sslmode=disable", tls(Disable, Unset)),
            (
                "postgres://u:p@h:5432/db?application_name=x&sslmode=require",
                "postgres://u:p@h:5432/db?application_name=x&sslmode=require",
                tls(Require, Unset),
            ),
            (
                "postgres://h/db?sslmode=verify-full&sslrootcert=/etc/kanade/pg%20ca.pem",
                "postgres://h/db?sslmode=require",
                tls(VerifyFull, File("/etc/kanade/pg ca.pem".into())),
            ),
            (
                "postgres://h/db?sslrootcert=system",
                "postgres://h/db?sslmode=require",
                tls(VerifyFull, System),
            ),
            (
                "postgres://h/db?sslmode=verify-ca&sslrootcert=/ca.pem",
                "postgres://h/db?sslmode=require",
                tls(VerifyCa, File("/ca.pem".into())),
            ),
            ("postgres://h/db?sslmode=allow", "postgres://h/db?sslmode=prefer", tls(Prefer, Unset)),
        ];
        for (url, driver, want) in cases {
            let (got_url, got) = postgres_tls(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((&got_url, &got), (&driver.to_string(), want), "{url}");
        }
    }

    #[test]
    fn a_wrong_tls_parameter_is_named_with_its_value() {
        let cases = [
            ("postgres://h/db?sslmode=verify", "sslmode=\"verify\" is not one of"),
            ("postgres://h/db?sslrootcert=%zz", "sslrootcert=\"%zz\" has a broken %-escape"),
            ("postgres://h/db?sslrootcert=", "sslrootcert is empty"),
            (
                "postgres://h/db?sslmode=require&sslrootcert=system",
                "sslrootcert=system checks against every public CA, so it needs sslmode=verify-full (not require)",
            ),
            ("postgres://h/db?sslmode=verify-ca", "sslmode=verify-ca needs sslrootcert="),
        ];
        for (url, want) in cases {
            let err = postgres_tls(url).expect_err(url);
            assert!(err.starts_with(want), "{url}: {err}");
        }
    }

    #[test]
    fn prefer_and_require_check_the_chain_only_when_given_a_root_file() {
        use PgRoots::*;
        use PgSslMode::*;
        let cases = [
            (Disable, Unset, false),
            (Prefer, File("ca.pem".into()), true),
            (Prefer, Unset, false),
            (Require, Unset, false),
            (Require, File("ca.pem".into()), true),
            (VerifyCa, Unset, true),
            (VerifyFull, System, true),
        ];
        for (mode, roots, want) in cases {
            assert_eq!(tls(mode, roots.clone()).verifies_chain(), want, "{mode:?} {roots:?}");
        }
    }
}
