//! The command line: init, config, stats, import, export, help.

use crate::support::*;
use crate::synth;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["init", "--help"],
        &["config", "--help"],
        &["config", "set", "--help"],
        &["stats", "--help"],
        &["import", "--help"],
        &["export", "--help"],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["user", "passwd", "--help"],
        &["user", "disable", "--help"],
        &["user", "list", "--help"],
    ] {
        let out = lucent().args(cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn init_is_idempotent_and_config_is_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(lucent_in(&dir, &["init"]).status.success());
    assert!(dir.join("lucent.db").exists() && dir.join("config.toml").exists());
    assert!(lucent_in(&dir, &["config", "set", "dicom.ae_title", "PACSNODE"]).status.success());
    let again = lucent_in(&dir, &["init"]);
    assert!(again.status.success(), "{}", text(&again));
    let got = lucent_in(&dir, &["config", "get", "dicom.ae_title"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "PACSNODE", "init overwrote the config");

    let unknown = lucent_in(&dir, &["config", "set", "dicom.nope", "1"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("valid keys") && text(&unknown).contains("dicom.max_associations"),
        "{}",
        text(&unknown)
    );
    let bad = lucent_in(&dir, &["config", "set", "dicom.max_associations", "many"]);
    assert!(!bad.status.success() && text(&bad).contains("a non-negative integer"), "{}", text(&bad));
    let show = lucent_in(&dir, &["config", "show"]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("ae_title = \"PACSNODE\""));

    let stats = lucent_in(&dir, &["stats"]);
    assert!(String::from_utf8_lossy(&stats.stdout).contains("instances  0"), "{}", text(&stats));
    let missing = lucent_in(&tmp.path().join("nowhere"), &["stats"]);
    assert!(!missing.status.success() && text(&missing).contains("lucent init"), "{}", text(&missing));
}

#[test]
fn import_reports_duplicates_and_rejections_and_export_gives_back_the_data_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let files = synth::write_ct_series(&input, &synth::Spec { patients: 2, per_patient: 3, size: 16, run: 51 });
    std::fs::create_dir_all(input.join("nested")).unwrap();
    std::fs::copy(&files[0], input.join("nested/copy.dcm")).unwrap();
    std::fs::write(input.join("nested/notes.txt"), "not dicom").unwrap();
    let dir = tmp.path().join("data");
    assert!(lucent_in(&dir, &["config", "set", "storage.min_free_mb", "0"]).status.success());

    let out = lucent_in(&dir, &["import", input.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("imported 6, duplicates 1, rejected 1"), "{t}");
    assert!(t.contains("notes.txt: not a DICOM Part 10 file"), "{t}");
    let s = stats(&dir);
    assert_eq!((s["patients"].as_u64(), s["studies"].as_u64(), s["instances"].as_u64()), (Some(2), Some(2), Some(6)));

    // Export one study: exactly its three instances, data sets byte-identical.
    let study = "2.25.1000051.1.1";
    let out_dir = tmp.path().join("out");
    let exp = lucent_in(&dir, &["export", "--out", out_dir.to_str().unwrap(), "--study", study]);
    assert!(exp.status.success(), "{}", text(&exp));
    let mut exported: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().path()).collect();
    exported.sort();
    assert_eq!(exported.len(), 3);
    for (i, f) in files[3..].iter().enumerate() {
        let name = format!("2.25.1000051.1.1.1.{i}.dcm");
        let e = out_dir.join(&name);
        assert_eq!(part10(&e).unwrap().1, part10(f).unwrap().1, "{name}");
    }
    let none = lucent_in(&dir, &["export", "--out", out_dir.to_str().unwrap(), "--study", "9.9.9"]);
    assert!(!none.status.success());
}

#[test]
fn user_commands_manage_accounts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    // init creates the first administrator once, printing a one-time password.
    let first = text(&lucent_in(&d, &["init"]));
    assert!(first.contains("one-time password:"), "{first}");
    let again = text(&lucent_in(&d, &["init"]));
    assert!(!again.contains("one-time password:"), "printed only once: {again}");
    let pw = "a long enough passphrase\n";
    let ok = lucent_stdin(&d, &["user", "add", "dr.who", "--role", "radiologist", "--password-stdin"], pw);
    assert!(ok.status.success(), "{}", text(&ok));
    let dup = lucent_stdin(&d, &["user", "add", "DR.WHO", "--role", "referrer", "--password-stdin"], pw);
    assert!(
        !dup.status.success() && text(&dup).contains("exists already"),
        "names are case-insensitive: {}",
        text(&dup)
    );
    let weak = lucent_stdin(&d, &["user", "add", "tech", "--role", "technologist", "--password-stdin"], "short\n");
    assert!(!weak.status.success() && text(&weak).contains("at least 12"), "{}", text(&weak));
    let role = lucent_stdin(&d, &["user", "add", "tech", "--role", "nurse", "--password-stdin"], pw);
    assert!(text(&role).contains("roles are admin, radiologist, technologist, referrer, auditor"), "{}", text(&role));
    // Without --password-stdin and without a terminal, the command says what to do.
    let no_tty = lucent_stdin(&d, &["user", "passwd", "dr.who"], pw);
    assert!(!no_tty.status.success() && text(&no_tty).contains("--password-stdin"), "{}", text(&no_tty));
    assert!(lucent_in(&d, &["user", "disable", "dr.who"]).status.success());
    let list = text(&lucent_in(&d, &["user", "list"]));
    assert!(list.contains("admin") && list.contains("must change password"), "{list}");
    assert!(list.lines().any(|l| l.starts_with("dr.who") && l.contains("disabled")), "{list}");
    let missing = lucent_in(&d, &["user", "disable", "nobody"]);
    assert!(!missing.status.success() && text(&missing).contains("no user named nobody"));
    // A disabled account cannot sign in; enabled with a new password it can.
    let server = Server::start(&d, &[]);
    assert!(login(server.http_port, "dr.who", "a long enough passphrase").is_err());
    assert!(lucent_in(&d, &["user", "enable", "dr.who"]).status.success());
    let set = lucent_stdin(
        &d,
        &["user", "passwd", "dr.who", "--password-stdin", "--no-change-required"],
        "another long passphrase\n",
    );
    assert!(set.status.success(), "{}", text(&set));
    assert!(login(server.http_port, "dr.who", "another long passphrase").is_ok());
    assert!(server.stop());
}
