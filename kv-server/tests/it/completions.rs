//! `kv completions SHELL` prints a completion script for the shell, which
//! knows kv's subcommands.

use std::process::Command;

fn completions(shell: &str) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["completions", shell])
        .output()?)
}

#[test]
fn each_shell_gets_a_script_that_knows_serve() -> anyhow::Result<()> {
    // A line each shell's script has and no other's does.
    let marks = [
        ("bash", "complete -F _kv"),
        ("zsh", "#compdef kv"),
        ("fish", "complete -c kv"),
    ];
    for (shell, mark) in marks {
        let out = completions(shell)?;
        anyhow::ensure!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout)?;
        anyhow::ensure!(script.contains(mark), "{shell} script lacks `{mark}`");
        anyhow::ensure!(script.contains("serve"), "{shell} script lacks `serve`");
        anyhow::ensure!(
            script.contains("access-token"),
            "{shell} script lacks serve's flags"
        );
    }
    Ok(())
}

#[test]
fn an_unknown_shell_is_refused() -> anyhow::Result<()> {
    let out = completions("tcsh")?;
    anyhow::ensure!(!out.status.success(), "{out:?}");
    let said = String::from_utf8(out.stderr)?;
    anyhow::ensure!(said.contains("bash"), "should list the shells: {said}");
    Ok(())
}
