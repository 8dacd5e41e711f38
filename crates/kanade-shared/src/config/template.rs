//! Config files are templates first: `{{ system.host }}`, `{{ env(name="X", default="Y") }}`,
//! `{% if is_windows() %}…{% endif %}`. Unknown variables are errors, not empty strings, so a
//! typo never silently becomes an empty value.

use minijinja::value::Kwargs;
use minijinja::{Error, ErrorKind, UndefinedBehavior, context};

use super::Environment;

pub fn render(text: &str, env: &Environment) -> Result<String, String> {
    let mut jinja = minijinja::Environment::new();
    jinja.set_undefined_behavior(UndefinedBehavior::Strict);
    let os = env.os;
    jinja.add_function("is_windows", move || os == super::OsKind::Windows);
    jinja.add_function("is_linux", move || os == super::OsKind::Linux);
    jinja.add_function("is_macos", move || os == super::OsKind::Macos);
    let vars = env.clone();
    jinja.add_function("env", move |kwargs: Kwargs| -> Result<String, Error> {
        let name: String = kwargs.get("name")?;
        let default: Option<String> = kwargs.get("default")?;
        kwargs.assert_all_used()?;
        match (vars.var(&name), default) {
            (Some(v), _) => Ok(v.to_owned()),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable {name} is not set and env() was given no default"),
            )),
        }
    });
    let ctx = context! {
        system => context! { host => env.host.clone(), os => env.os.as_str(), arch => env.arch.clone() },
    };
    jinja.render_str(text, ctx).map_err(|e| {
        let line = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
        match e.detail() {
            Some(detail) => format!("{}: {detail}{line}", e.kind()),
            None => format!("{}{line}", e.kind()),
        }
    })
}
