//! `${variable}` expansion in template options, as in the reference
//! (`string.Template`): variables are option names with `_` for `-` plus the
//! session's identity and, for some roles, brick details. `$$` is a literal `$`.
//!
//! Unlike the reference, a misspelt variable is refused when the value is set,
//! and expansion is recursive (`pid-file` uses `${run_dir}`, which uses
//! `${session}`), with a depth bound against cycles.

use super::schema::{EXTRA_VARIABLES, OPTIONS};

/// A piece of a template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a template into text and variables. An unterminated `${` is text.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        let (text, tail) = rest.split_at(pos);
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
        if let Some(after) = tail.strip_prefix("$$") {
            out.push(Piece::Text("$"));
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("${") {
            if let Some(end) = inner.find('}') {
                out.push(Piece::Var(&inner[..end]));
                rest = &inner[end + 1..];
            } else {
                out.push(Piece::Text(tail));
                rest = "";
            }
        } else {
            out.push(Piece::Text("$"));
            rest = &tail[1..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// Whether `name` is a template variable gsyncd knows.
pub fn is_known_variable(name: &str) -> bool {
    EXTRA_VARIABLES.iter().any(|(v, _)| *v == name)
        || OPTIONS.iter().any(|o| o.is_live() && o.name.replace('-', "_") == name)
}

/// Refuses a template that names an unknown variable.
pub fn check_variables(s: &str) -> Result<(), String> {
    for p in pieces(s) {
        if let Piece::Var(v) = p
            && !is_known_variable(v)
        {
            return Err(format!(
                "unknown template variable ${{{v}}}; variables are option names with '_' for '-' \
                 (such as ${{state_dir}}) and {}",
                EXTRA_VARIABLES.iter().map(|(n, _)| format!("${{{n}}}")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

const MAX_DEPTH: usize = 8;

/// Expands `s`. `lookup` gives a variable's raw value (itself possibly a
/// template); variables it does not know are left as written, because some
/// (such as `${local_id}`) exist only inside the role that uses the value.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    expand_depth(s, lookup, 0)
}

fn expand_depth(s: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for p in pieces(s) {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => match lookup(v) {
                Some(raw) if depth < MAX_DEPTH => out.push_str(&expand_depth(&raw, lookup, depth + 1)),
                _ => {
                    out.push_str("${");
                    out.push_str(v);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// The reference's `escape()`: a path as one file-name component
/// (`/bricks/b1` becomes `bricks-b1`).
pub fn escape_path(path: &str) -> String {
    path.replace('/', "-").trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "session" => Some("demo".into()),
            "run_dir" => Some("/run/gsyncd/${session}".into()),
            "loop_a" => Some("${loop_b}".into()),
            "loop_b" => Some("${loop_a}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_recursively_and_keeps_unknowns() {
        assert_eq!(expand("${run_dir}/monitor.pid", &vars), "/run/gsyncd/demo/monitor.pid");
        assert_eq!(expand("x-${local_id}.log", &vars), "x-${local_id}.log");
        assert_eq!(expand("$$5 and $x and ${unterminated", &vars), "$5 and $x and ${unterminated");
    }

    #[test]
    fn cycles_end() {
        assert!(expand("${loop_a}", &vars).contains("${loop_"));
    }

    #[test]
    fn variable_names_are_checked() {
        assert!(check_variables("${state_dir}/x ${session} ${local_id}").is_ok());
        assert!(check_variables("${sesion}").is_err());
    }

    #[test]
    fn escape_matches_reference() {
        assert_eq!(escape_path("/bricks/b1/"), "bricks-b1");
    }
}
