//! `quarry prompts` as an operator runs it, against moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quarry_testkit::{Moto, unique_stage, workspace_root};

fn quarry(moto: &str, stage: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["prompts", "--aws-endpoint", moto, "--stage", stage])
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn push_list_show_diff_promote_rollback() {
    let moto = Moto::shared();
    let stage = unique_stage();
    let dir = std::env::temp_dir().join(format!("quarry-prompts-{stage}"));
    std::fs::create_dir_all(&dir).unwrap();
    let source =
        std::fs::read_to_string(workspace_root().join("infra/prompts/summarize.yaml")).unwrap();
    std::fs::write(dir.join("summarize.yaml"), &source).unwrap();
    let dir_arg = dir.to_str().unwrap();

    let (ok, out) = quarry(moto.url(), &stage, &["push", "--dir", dir_arg]);
    assert!(ok, "{out}");
    assert!(out.contains("new        summarize@1"), "{out}");
    let (ok, out) = quarry(moto.url(), &stage, &["push", "--dir", dir_arg]);
    assert!(ok && out.contains("unchanged  summarize@1"), "{out}");

    std::fs::write(
        dir.join("summarize.yaml"),
        source.replace(
            "at most {{ max_words }} words",
            "{{ max_words }} words or fewer",
        ),
    )
    .unwrap();
    let (ok, out) = quarry(moto.url(), &stage, &["push", "--dir", dir_arg]);
    assert!(
        ok && out.contains("changed    summarize@1 -> summarize@2"),
        "{out}"
    );
    assert!(
        out.contains("-  Summarize the following text in at most {{ max_words }} words."),
        "{out}"
    );

    let (ok, out) = quarry(
        moto.url(),
        &stage,
        &["promote", "summarize", "1", "--to", "prod"],
    );
    assert!(ok && out.contains("summarize:prod -> 1"), "{out}");
    let (ok, out) = quarry(
        moto.url(),
        &stage,
        &["promote", "summarize", "2", "--to", "prod"],
    );
    assert!(ok && out.contains("summarize:prod 1 -> 2"), "{out}");
    let (ok, out) = quarry(moto.url(), &stage, &["list"]);
    assert!(
        ok && out.contains("summarize") && out.contains("prod=2"),
        "{out}"
    );
    let (ok, out) = quarry(moto.url(), &stage, &["show", "summarize:prod"]);
    assert!(
        ok && out.starts_with("# summarize@2") && out.contains("words or fewer"),
        "{out}"
    );
    let (ok, out) = quarry(moto.url(), &stage, &["diff", "summarize", "1", "prod"]);
    assert!(
        ok && out.contains("+  Summarize the following text in {{ max_words }} words or fewer."),
        "{out}"
    );

    let (ok, out) = quarry(
        moto.url(),
        &stage,
        &["rollback", "summarize", "--label", "prod"],
    );
    assert!(ok && out.contains("rolled back 2 -> 1"), "{out}");
    let (ok, out) = quarry(moto.url(), &stage, &["show", "summarize:prod"]);
    assert!(ok && out.starts_with("# summarize@1"), "{out}");

    let (ok, out) = quarry(
        moto.url(),
        &stage,
        &["promote", "summarize", "7", "--to", "prod"],
    );
    assert!(!ok && out.contains("has no version 7"), "{out}");
    let (ok, out) = quarry(moto.url(), &stage, &["show", "nope"]);
    assert!(!ok && out.contains("nope"), "{out}");
}
