//! The man pages stay in step with the CLI, the option schema and the exit
//! codes: every visible command and option is documented, the option and
//! exit-code lists are generated from the code (set GSYNCD_BLESS=1 to
//! rewrite them), and groff finds nothing to warn about.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use gsyncd::cli::Cli;
use gsyncd::config::schema::{Kind, OPTIONS, OptionSpec, Validation};
use gsyncd::exit::Exit;

fn man(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name)
}

fn read(name: &str) -> String {
    fs::read_to_string(man(name)).unwrap_or_else(|e| panic!("man/{name}: {e}"))
}

/// roff-escapes text for a line that is not a request.
fn esc(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') { format!("\\&{s}") } else { s }
}

fn describe(o: &OptionSpec) -> String {
    let mut v = Vec::new();
    match o.validation {
        Validation::None => {}
        Validation::MinMax(lo, hi) if hi == i64::MAX => v.push(format!("At least {lo}.")),
        Validation::MinMax(lo, hi) => v.push(format!("Valid: {lo} to {hi}.")),
        Validation::Choice(c) => v.push(format!(
            "One of: {}.",
            c.iter()
                .map(|x| if x.is_empty() { "\"\"".to_owned() } else { (*x).to_owned() })
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Validation::ExecPath => v.push("An executable: a path, or a name found in PATH.".to_owned()),
        Validation::UnixTime => v.push("Unix seconds after 1971, 0 for none, or now.".to_owned()),
        Validation::AbsPath => v.push("An absolute path.".to_owned()),
        Validation::VolumeName => v.push("A volume name.".to_owned()),
        Validation::SecondaryUrl => v.push("[user@]host::volume.".to_owned()),
        Validation::SocketAddr => {
            v.push("Empty, or an IP address and port (127.0.0.1:9469, [::1]:9469).".to_owned());
        }
    }
    if !o.legacy.is_empty() {
        v.push(format!("Legacy names: {}.", o.legacy.join(", ")));
    }
    v.join(" ")
}

fn default_shown(o: &OptionSpec) -> String {
    match o.kind {
        Kind::Str => format!("\"{}\"", o.default),
        _ => o.default.to_owned(),
    }
}

/// The generated option list of gsyncd.toml(5).
fn options_section() -> String {
    let mut s = String::new();
    for o in OPTIONS.iter().filter(|o| o.is_live()) {
        let mut tags = vec![o.kind.name()];
        if o.template {
            tags.push("template");
        }
        if !o.configurable {
            tags.push("not configurable");
        }
        s.push_str(&format!(
            ".TP\n.B {}\n({}; default {})\n.br\n{}\n",
            esc(o.name),
            tags.join(", "),
            // A long path may break after a slash (roff's \: is an
            // invisible break point), so that it fits 80 columns.
            esc(&default_shown(o)).replace('/', "/\\:"),
            esc(o.help)
        ));
        let d = describe(o);
        if !d.is_empty() {
            s.push_str(&format!("{}\n", esc(&d)));
        }
    }
    s.push_str(".SS Options of the reference that have no effect\nThey are accepted in a file (with a note) and dropped by \\fBgsyncd config import\\fR; \\fBconfig set\\fR refuses them.\n");
    for o in OPTIONS.iter().filter(|o| !o.is_live()) {
        let legacy = if o.legacy.is_empty() { String::new() } else { format!(" (also {})", o.legacy.join(", ")) };
        s.push_str(&format!(".TP\n.B {}\n{}\n", esc(o.name), esc(&format!("{}{legacy}", o.dead.unwrap_or_default()))));
    }
    s
}

fn exit_section() -> String {
    Exit::ALL.iter().map(|(e, what)| format!(".TP\n.B {}\n{}\n", e.code(), esc(what))).collect()
}

/// Replaces the text between the BEGIN/END markers named `tag`; with
/// GSYNCD_BLESS=1 writes the page, otherwise fails on any difference.
fn check_generated(page: &str, tag: &str, generated: &str) {
    let text = read(page);
    let begin = text.find(&format!(".\\\" BEGIN GENERATED {tag}")).unwrap_or_else(|| panic!("{page}: no BEGIN {tag}"));
    let body = text[begin..].find('\n').unwrap() + begin + 1;
    let end = text.find(&format!(".\\\" END GENERATED {tag}")).unwrap_or_else(|| panic!("{page}: no END {tag}"));
    if &text[body..end] == generated {
        return;
    }
    if std::env::var_os("GSYNCD_BLESS").is_some() {
        fs::write(man(page), format!("{}{generated}{}", &text[..body], &text[end..])).unwrap();
        return;
    }
    panic!("man/{page}: the {tag} list is out of date; run GSYNCD_BLESS=1 cargo test --test man_pages");
}

#[test]
fn option_list_matches_the_schema() {
    check_generated("gsyncd.toml.5", "OPTIONS", &options_section());
}

#[test]
fn exit_codes_match_the_code() {
    check_generated("gsyncd.8", "EXIT CODES", &exit_section());
}

/// Every visible command's long options and subcommands appear on its page.
#[test]
fn every_visible_cli_option_is_documented() {
    let root = Cli::command();
    let gsyncd8 = read("gsyncd.8");
    for a in root.get_arguments().filter(|a| !a.is_hide_set()) {
        if let Some(l) = a.get_long() {
            let roff = format!("\\-\\-{}", l.replace('-', "\\-"));
            assert!(gsyncd8.contains(&roff), "gsyncd.8 does not document --{l}");
        }
    }
    if let Some(env) = root.get_arguments().find_map(|a| a.get_env()) {
        assert!(gsyncd8.contains(&env.to_string_lossy().replace('-', "\\-")), "gsyncd.8 lacks {env:?}");
    }
    // Names as the pages spell them (roff writes a hyphen as \-).
    let plain = |t: &str| t.replace("\\-", "-");
    let gsyncd8_plain = plain(&gsyncd8);
    let long_options_documented = |cmd: &clap::Command, text: &str, page: &str| {
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set()) {
            if let Some(l) = a.get_long().filter(|l| *l != "help") {
                assert!(plain(text).contains(&format!("--{l}")), "{page} does not document {} --{l}", cmd.get_name());
            }
        }
    };
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let page = format!("gsyncd-{}.8", sub.get_name());
        let text = read(&page);
        let listed = gsyncd8_plain.lines().any(|l| l.starts_with(&format!(".B {}", sub.get_name())));
        assert!(listed, "gsyncd.8 does not list {}", sub.get_name());
        long_options_documented(sub, &text, &page);
        for leaf in sub.get_subcommands().filter(|s| s.get_name() != "help") {
            let described = plain(&text)
                .lines()
                .filter(|l| l.starts_with(".B ") || l.starts_with(".TP"))
                .any(|l| l.split_whitespace().any(|w| w == leaf.get_name()));
            assert!(described, "{page} does not describe {}", leaf.get_name());
            long_options_documented(leaf, &text, &page);
        }
    }
}

/// The secondary-side roles are hidden from --help (nobody types them) but
/// administrators of the secondary configure and read them: every option of
/// `secondary` and `ssh-gate` is on gsyncd-secondary(8).
#[test]
fn secondary_side_roles_are_documented() {
    let text = read("gsyncd-secondary.8").replace("\\-", "-");
    let root = Cli::command();
    for name in ["secondary", "ssh-gate"] {
        let sub = root.find_subcommand(name).unwrap();
        assert!(text.contains(&format!("gsyncd {name}")), "gsyncd-secondary.8 does not show gsyncd {name}");
        for a in sub.get_arguments().filter(|a| !a.is_global_set()) {
            if let Some(l) = a.get_long().filter(|l| *l != "help") {
                assert!(text.contains(&format!("--{l}")), "gsyncd-secondary.8 does not document {name} --{l}");
            }
        }
    }
    assert!(
        text.contains(
            "command=\"/usr/bin/gsyncd ssh-gate\",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty"
        ),
        "gsyncd-secondary.8 lacks the authorized_keys line"
    );
}

/// Every option name the man page documents exists, and every live option
/// is documented (both directions of drift).
#[test]
fn documented_options_exist() {
    let text = read("gsyncd.toml.5");
    let documented: Vec<String> =
        text.split(".TP\n.B ").skip(1).map(|s| s.lines().next().unwrap().replace("\\-", "-")).collect();
    for d in &documented {
        assert!(OPTIONS.iter().any(|o| o.name == d), "gsyncd.toml.5 documents unknown option {d}");
    }
    for o in OPTIONS {
        assert!(documented.iter().any(|d| d == o.name), "gsyncd.toml.5 lacks {}", o.name);
    }
}

#[test]
fn groff_finds_nothing_to_warn_about() {
    if Command::new("groff").arg("--version").output().is_err() {
        panic!("groff is not installed (package groff-base); scripts/test.sh installs it");
    }
    let mut pages: Vec<PathBuf> = fs::read_dir(man(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "8" || x == "5"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 10, "{pages:?}");
    for path in &pages {
        let page = path.file_name().unwrap().to_string_lossy();
        let o = Command::new("groff").args(["-man", "-ww", "-z"]).arg(path).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.trim().is_empty(), "groff on {page}:\n{err}");
    }
}

/// The exit codes a page's EXIT STATUS section lists.
fn listed_exit_codes(page: &str) -> Vec<u8> {
    let text = read(page);
    let start = text.find(".SH EXIT STATUS").unwrap_or_else(|| panic!("{page}: no EXIT STATUS"));
    let section = &text[start + 1..];
    let section = &section[..section.find("\n.SH ").unwrap_or(section.len())];
    let lines: Vec<&str> = section.lines().collect();
    let mut codes = Vec::new();
    for w in lines.windows(2).filter(|w| w[0] == ".TP") {
        for word in w[1].split(|c: char| !c.is_ascii_digit()).filter(|x| !x.is_empty()) {
            codes.push(word.parse().unwrap());
        }
    }
    codes
}

/// gsyncd-create(8) and gsyncd-delete(8) follow the code: every check of
/// create is described under its name, the authorized_keys line is the one
/// create prints, and the pages list the exit codes the commands' errors map
/// to, and only codes that exist.
#[test]
fn create_and_delete_pages_match_the_code() {
    use gsyncd::cmd::create::{CreateError, DeleteError, Step, authorized_keys_line};
    use gsyncd::exit::HasExit;
    let create = read("gsyncd-create.8").replace("\\-", "-");
    for step in Step::ALL {
        let described = create.lines().any(|l| l.starts_with(".B ") && l.contains(step.name()));
        assert!(described, "gsyncd-create.8 does not describe check {:?}", step.name());
    }
    let line = authorized_keys_line("/usr/bin/gsyncd", "VOLUME", "ssh-ed25519 AAAA... gsyncd:SESSION@NODE");
    assert!(create.contains(&line), "gsyncd-create.8 does not show the line create prints: {line}");
    let known: Vec<u8> = Exit::ALL.iter().map(|(e, _)| e.code()).collect();
    let session = || "s".to_owned();
    let create_codes = [
        CreateError::Exists { session: session(), path: "/x".into() }.exit(),
        CreateError::Running { session: session(), pid: "1".into() }.exit(),
        CreateError::Check { step: Step::Ssh, problem: String::new(), fix: String::new() }.exit(),
    ];
    let delete_codes = [
        DeleteError::Running { session: session(), pid: "1".into() }.exit(),
        DeleteError::Reset { problem: String::new(), fix: String::new() }.exit(),
        DeleteError::Remove { path: "/x".into(), reason: String::new() }.exit(),
        Exit::NoSuchSession,
    ];
    for (page, used) in [("gsyncd-create.8", &create_codes[..]), ("gsyncd-delete.8", &delete_codes[..])] {
        let listed = listed_exit_codes(page);
        for c in &listed {
            assert!(known.contains(c), "{page} lists exit code {c}, which src/exit.rs does not have");
        }
        for e in used {
            assert!(listed.contains(&e.code()), "{page} does not list exit code {}", e.code());
        }
    }
}

/// gsyncd-status(8) and gsyncd-checkpoint(8) follow the code: every table
/// column and every `--json` key is described, the pages list the exit
/// codes the commands' errors map to (and only codes that exist), and the
/// codes `checkpoint wait --help` names are the real ones.
#[test]
fn status_and_checkpoint_pages_match_the_code() {
    use gsyncd::cmd::checkpoint::CheckpointError;
    use gsyncd::cmd::status::{Clock, SessionStatus, Source, row, table};
    use gsyncd::exit::HasExit;
    use gsyncd::proto::status::BrickStatus;
    // Font changes out, hyphens plain: the words as a reader sees them.
    let plain = |t: &str| t.replace("\\-", "-").replace("\\fR", "").replace("\\fB", "").replace("\\fI", "");
    let status = plain(&read("gsyncd-status.8"));
    let st = BrickStatus { worker_status: "Active".into(), ..BrickStatus::default() };
    let session = SessionStatus {
        session: "s".into(),
        primary: "pv".into(),
        secondary: "h::sv".into(),
        secondary_user: None,
        secondary_host: None,
        secondary_volume: None,
        state: "Started".into(),
        running: true,
        source: Source::Monitor,
        checkpoint: None,
        note: None,
        bricks: vec![row("n", b"/b", Some(0), st, "Started", 0, 0)],
    };
    let header = table(std::slice::from_ref(&session), true, true, &Clock::utc()).lines().nth(1).unwrap().to_owned();
    for col in header.split("    ").map(str::trim).filter(|c| !c.is_empty()) {
        let described = status.lines().any(|l| l.starts_with(".B ") && l.contains(col));
        assert!(described, "gsyncd-status.8 does not describe column {col}");
    }
    let json = serde_json::to_value(&session).unwrap();
    let brick_keys = json["bricks"][0].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let session_keys = json.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let top = ["version", "generated", "sessions", "errors", "session", "error"];
    for k in brick_keys.iter().chain(&session_keys).map(String::as_str).chain(top) {
        let described = status
            .lines()
            .any(|l| (l.starts_with(".B ") || l.starts_with(".BR ")) && l.split_whitespace().nth(1) == Some(k));
        assert!(described, "gsyncd-status.8 does not describe JSON key {k}");
    }

    let known: Vec<u8> = Exit::ALL.iter().map(|(e, _)| e.code()).collect();
    let s = || "s".to_owned();
    let checkpoint_codes = [
        CheckpointError::NoCheckpoint { session: s() }.exit(),
        CheckpointError::NotRunning { session: s() }.exit(),
        CheckpointError::TimedOut { session: s(), checkpoint: s(), secs: 1, waiting: s() }.exit(),
        CheckpointError::FailuresPending { session: s(), checkpoint: s(), waiting: s() }.exit(),
        Exit::InvalidValue,
        Exit::BadConfigFile,
        Exit::NoSuchSession,
    ];
    let status_codes = [Exit::Ok, Exit::BadConfigFile, Exit::NoSuchSession, Exit::Usage];
    for (page, used) in [("gsyncd-checkpoint.8", &checkpoint_codes[..]), ("gsyncd-status.8", &status_codes[..])] {
        let listed = listed_exit_codes(page);
        for c in &listed {
            assert!(known.contains(c), "{page} lists exit code {c}, which src/exit.rs does not have");
        }
        for e in used {
            assert!(listed.contains(&e.code()), "{page} does not list exit code {}", e.code());
        }
    }
    let wait = Cli::command().find_subcommand("checkpoint").unwrap().find_subcommand("wait").unwrap().clone();
    let help = wait.get_after_help().unwrap().to_string();
    for (e, what) in [
        (Exit::TimedOut, "timed out"),
        (Exit::NotRunning, "the session is not running"),
        (Exit::FailuresPending, "held back by failure-ledger items"),
    ] {
        assert!(
            help.contains(&format!("{} {what}", e.code())),
            "checkpoint wait --help lacks {} {what}: {help}",
            e.code()
        );
    }
}

/// gsyncd-doctor(8) follows the code: every check is described under its
/// number and name, in order, and the page lists the exit codes doctor's
/// errors map to (and only codes that exist); `doctor --help` names the
/// check-failed code.
#[test]
fn doctor_page_matches_the_code() {
    use gsyncd::cmd::doctor::{DoctorError, Step};
    use gsyncd::exit::HasExit;
    let page = read("gsyncd-doctor.8").replace("\\-", "-");
    let described: Vec<&str> = page.lines().filter_map(|l| l.strip_prefix(".B ")).collect();
    let mut at = 0;
    for step in Step::ALL {
        let want = format!("{} {}", step.number(), step.name());
        let found = described[at..].iter().position(|l| *l == want);
        assert!(found.is_some(), "gsyncd-doctor.8 does not describe check {want:?} (after the previous one)");
        at += found.unwrap_or(0) + 1;
    }
    assert!(page.contains(&format!("/{}]", Step::ALL.len())), "gsyncd-doctor.8 does not say how many checks there are");
    let failed =
        DoctorError::Failed { step: Step::Ssh, problem: String::new(), fix: String::new(), more: String::new() };
    let known: Vec<u8> = Exit::ALL.iter().map(|(e, _)| e.code()).collect();
    let listed = listed_exit_codes("gsyncd-doctor.8");
    for c in &listed {
        assert!(known.contains(c), "gsyncd-doctor.8 lists exit code {c}, which src/exit.rs does not have");
    }
    for e in [Exit::Ok, failed.exit(), Exit::BadConfigFile, Exit::NoSuchSession, Exit::Usage] {
        assert!(listed.contains(&e.code()), "gsyncd-doctor.8 does not list exit code {}", e.code());
    }
    let doctor = Cli::command().find_subcommand("doctor").unwrap().clone();
    let help = doctor.get_after_help().unwrap().to_string();
    assert!(help.contains(&format!("{} a check failed", failed.exit().code())), "doctor --help: {help}");
}

/// Every metric the monitor serves is described in gsyncd-status(8) under
/// its name, with its type and the `status --json` key it carries (the
/// numbers themselves are checked against status in src/monitor/metrics.rs).
#[test]
fn metrics_are_documented() {
    use gsyncd::monitor::metrics::METRICS;
    let page = read("gsyncd-status.8");
    let start = page.find(".SH METRICS").expect("gsyncd-status.8 has no METRICS section");
    let section = &page[start..];
    let section = &section[..section[1..].find("\n.SH ").map_or(section.len(), |e| e + 1)];
    let items: Vec<&str> = section.split(".TP\n").skip(1).collect();
    for m in METRICS {
        let head = format!(".B {}", m.name);
        let item = items.iter().find(|i| i.lines().next() == Some(head.as_str()));
        let Some(item) = item else { panic!("gsyncd-status.8 does not describe metric {}", m.name) };
        assert!(item.contains(m.kind.name()), "gsyncd-status.8: {} is not said to be a {}", m.name, m.kind.name());
        if !m.json.is_empty() {
            assert!(
                item.contains(&format!(".BR {} .", m.json)),
                "gsyncd-status.8: {} does not name JSON key {}",
                m.name,
                m.json
            );
        }
    }
    let documented = items.iter().filter(|i| i.starts_with(".B gsyncd_")).count();
    assert_eq!(documented, METRICS.len(), "gsyncd-status.8 describes metrics that are not served");
}
