//! The `residency` binary's conventions (issue 16 item 5): shell completions and man pages
//! generated from its clap definition, `--help` with examples and possible values, typed
//! tiers/statuses/regions refused by clap (exit 2), and configuration errors exiting 64.
//! No stack needed: `regions` against a real gateway is in `gateway_cli.rs`.

use std::process::Output;

use integration_tests::binary;

fn residency(args: &[&str]) -> Output {
    std::process::Command::new(binary("residency"))
        .args(args)
        .env_remove("RESIDENCY_ADMIN_URL")
        .env_remove("RESIDENCY_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run residency")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SUBCOMMANDS: &[&str] = &[
    "up",
    "audit",
    "tenants",
    "orgs",
    "keys",
    "domains",
    "regions",
    "directory",
    "token",
];

#[test]
fn completions_cover_every_subcommand_in_every_shell() {
    let bash = residency(&["completions", "bash"]);
    assert!(bash.status.success(), "{bash:?}");
    let script = stdout(&bash);
    assert!(script.contains("complete -F _residency"), "{script}");
    for sub in SUBCOMMANDS {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    // Nested subcommands and typed values complete too.
    assert!(
        script.contains("residency__subcmd__tenants__subcmd__create"),
        "{script}"
    );
    assert!(
        script.contains("starter growth scale enterprise"),
        "{script}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = residency(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(stdout(&out).contains("regions"), "{shell}");
    }
    let bad = residency(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[test]
fn man_pages_are_roff_with_every_subcommand() {
    let out = residency(&["man"]);
    assert!(out.status.success(), "{out:?}");
    let page = stdout(&out);
    assert!(page.contains(".TH residency 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("residency\\-{sub}(1)")),
            "no {sub} in {page}"
        );
    }
    assert!(page.contains("Examples:"), "{page}");
    // The exit codes are documented where a user looks: --help and the man page.
    assert!(page.contains("64  configuration error"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let out = residency(&["man", "--dir", dir.path().join("man1").to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for file in [
        "residency.1",
        "residency-tenants.1",
        "residency-tenants-create.1",
        "residency-tenants-move.1",
        "residency-regions.1",
        "residency-completions.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join("man1").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(".TH"), "{file}: {text}");
    }
    let create =
        std::fs::read_to_string(dir.path().join("man1/residency-tenants-create.1")).unwrap();
    assert!(create.contains("enterprise"), "{create}");
}

#[test]
fn help_shows_examples_and_possible_values() {
    let top = residency(&["--help"]);
    assert!(stdout(&top).contains("Examples:"), "{top:?}");
    assert!(stdout(&top).contains("regions"), "{top:?}");
    for code in [
        "64  configuration error",
        "69  a service is unreachable",
        "77  Postgres rejected the login",
    ] {
        assert!(stdout(&top).contains(code), "{code}: {top:?}");
    }
    for sub in [
        &["up", "--help"][..],
        &["tenants", "--help"],
        &["keys", "--help"],
        &["audit", "--help"],
        &["token", "--help"],
        &["domains", "--help"],
        &["regions", "--help"],
        &["tenants", "move", "--help"],
    ] {
        let out = residency(sub);
        assert!(out.status.success(), "{sub:?}: {out:?}");
        let help = stdout(&out);
        let examples = help.split_once("Examples:\n").map_or("", |(_, e)| e);
        assert!(examples.contains("residency "), "{sub:?}: {help}");
    }
    let short = stdout(&residency(&["tenants", "list", "-h"]));
    assert!(
        short.contains("[possible values: starter, growth, scale, enterprise]"),
        "{short}"
    );
    assert!(
        short.contains("[possible values: provisioning, active, suspended, moving, deleted]"),
        "{short}"
    );
    let long = stdout(&residency(&["tenants", "create", "--help"]));
    assert!(
        long.contains("scale:      1000 requests/min by default, API keys"),
        "{long}"
    );
    let update = stdout(&residency(&["tenants", "update", "-h"]));
    assert!(
        update.contains("[possible values: active, suspended]"),
        "{update}"
    );
}

#[test]
fn invalid_typed_values_are_clap_errors_with_exit_2() {
    let tier = residency(&[
        "tenants", "create", "--name", "x", "--region", "eu", "--tier", "platinum",
    ]);
    assert_eq!(tier.status.code(), Some(2), "{tier:?}");
    assert!(
        stderr(&tier).contains("invalid value 'platinum' for '--tier <TIER>'")
            && stderr(&tier).contains("[possible values: starter, growth, scale, enterprise]"),
        "{tier:?}"
    );
    let status = residency(&["tenants", "update", "t", "--status", "deleted"]);
    assert_eq!(status.status.code(), Some(2), "{status:?}");
    assert!(
        stderr(&status).contains("[possible values: active, suspended]"),
        "{status:?}"
    );
    let region = residency(&["tenants", "list", "--region", "EU"]);
    assert_eq!(region.status.code(), Some(2), "{region:?}");
    assert!(
        stderr(&region).contains("region id must be")
            && stderr(&region).contains("residency regions"),
        "{region:?}"
    );
    let moved = residency(&["tenants", "move", "t", "--to", "Mars!"]);
    assert_eq!(moved.status.code(), Some(2), "{moved:?}");
    // An update with nothing to change is a usage error too.
    let nothing = residency(&["tenants", "update", "t"]);
    assert_eq!(nothing.status.code(), Some(2), "{nothing:?}");
}

#[test]
fn configuration_errors_exit_64_and_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope/stack.json");
    let admin = residency(&["tenants", "list", "--stack", missing.to_str().unwrap()]);
    assert_eq!(admin.status.code(), Some(64), "{admin:?}");
    assert!(
        stderr(&admin).contains("--admin-url") && stderr(&admin).contains("stack.json"),
        "{admin:?}"
    );
    let https = residency(&[
        "regions",
        "--admin-url",
        "https://gateway.internal:9090",
        "--admin-token",
        "t",
    ]);
    assert_eq!(https.status.code(), Some(64), "{https:?}");
    let token = residency(&[
        "token",
        "--tenant",
        "0190a5c4-0000-7000-8000-000000000001",
        "--stack",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(token.status.code(), Some(64), "{token:?}");
    assert!(stderr(&token).contains("stack.json"), "{token:?}");
    let bad_url = residency(&["directory", "migrate", "--owner-url", "not a url"]);
    assert_eq!(bad_url.status.code(), Some(64), "{bad_url:?}");
    assert!(
        stderr(&bad_url).contains("RESIDENCY_DIRECTORY_OWNER_URL"),
        "{bad_url:?}"
    );
    let no_password = std::process::Command::new(binary("residency"))
        .args([
            "directory",
            "bootstrap",
            "--owner-url",
            "postgres://dir_owner:pw@127.0.0.1:1/dir",
            "--admin-url",
            "postgres://postgres@127.0.0.1:1/postgres",
        ])
        .env_remove("DIRECTORY_READER_PASSWORD")
        .env_remove("DIRECTORY_WRITER_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(no_password.status.code(), Some(64), "{no_password:?}");
    assert!(
        stderr(&no_password).contains("DIRECTORY_READER_PASSWORD"),
        "{no_password:?}"
    );
    // Unreachable is not a configuration error: 69.
    let down = residency(&[
        "regions",
        "--admin-url",
        "http://127.0.0.1:9",
        "--admin-token",
        "t",
    ]);
    assert_eq!(down.status.code(), Some(69), "{down:?}");
    assert!(
        stderr(&down).contains("cannot reach the admin api"),
        "{down:?}"
    );
}
