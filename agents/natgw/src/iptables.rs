//! Running iptables: one `iptables-restore --noflush` per apply, reading
//! back the owned chains with `iptables-save`, and the two jumps into them.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::model::{CHAIN_POST, CHAIN_PRE, CHAIN_PREFIX};

/// Errors from running an iptables tool.
#[derive(Debug, thiserror::Error)]
pub enum IptError {
    /// The binary could not be started (missing?).
    #[error("cannot run {bin}: {source}")]
    Spawn {
        /// The binary.
        bin: String,
        /// Why.
        source: std::io::Error,
    },
    /// The tool exited with an error.
    #[error("{bin} exited with {code:?}: {stderr}")]
    Failed {
        /// The binary.
        bin: String,
        /// Exit code.
        code: Option<i32>,
        /// Its standard error.
        stderr: String,
        /// The input line it blamed (`Error occurred at line: N`), 1-based.
        line: Option<usize>,
    },
}

/// Which iptables flavour to run: `iptables` (the system default),
/// `iptables-nft` or `iptables-legacy`; `-restore` / `-save` are appended.
#[derive(Clone, Debug)]
pub struct Iptables {
    /// Base command name or path.
    pub base: String,
}

/// The two jumps from the built-in chains into the owned ones.
pub const JUMPS: [(&str, &str); 2] = [("PREROUTING", CHAIN_PRE), ("POSTROUTING", CHAIN_POST)];
const JUMP_COMMENT: &str = "vpcnet:jump";
/// The jump into the accounting chain of the `filter` table.
pub const ACCT_JUMP: (&str, &str) = ("FORWARD", crate::acct::CHAIN_ACCT);

impl Iptables {
    /// A flavour by base name.
    pub fn new(base: impl Into<String>) -> Self {
        Iptables { base: base.into() }
    }

    fn run(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Result<String, IptError> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| IptError::Spawn {
            bin: bin.to_string(),
            source,
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped");
            // A write error means the child died early; its exit status says why.
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(|source| IptError::Spawn {
            bin: bin.to_string(),
            source,
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(IptError::Failed {
                bin: bin.to_string(),
                code: out.status.code(),
                line: blamed_line(&stderr),
                stderr,
            })
        }
    }

    /// `<base>-restore --noflush -w` with `input` on stdin. Atomic: on error
    /// nothing is applied.
    pub fn restore(&self, input: &str) -> Result<(), IptError> {
        self.run(
            &format!("{}-restore", self.base),
            &["--noflush", "-w"],
            Some(input),
        )
        .map(|_| ())
    }

    /// `<base>-restore --counters --noflush -w`: as `restore`, each rule
    /// starting from the `[packets:bytes]` before it.
    pub fn restore_counters(&self, input: &str) -> Result<(), IptError> {
        self.run(
            &format!("{}-restore", self.base),
            &["--counters", "--noflush", "-w"],
            Some(input),
        )
        .map(|_| ())
    }

    /// `<base>-save -c -t filter`: the filter table with counters.
    pub fn save_filter_counters(&self) -> Result<String, IptError> {
        self.run(
            &format!("{}-save", self.base),
            &["-c", "-t", "filter"],
            None,
        )
    }

    /// `<base> -t filter -S <chain> -v`: one chain's rules with counters
    /// (`-c packets bytes` in each rule).
    pub fn list_filter_chain(&self, chain: &str) -> Result<String, IptError> {
        self.run(&self.base, &["-w", "-t", "filter", "-S", chain, "-v"], None)
    }

    /// The owned part of the filter table (the accounting chains and the
    /// jump from `FORWARD`), counters dropped.
    pub fn owned_filter_snapshot(&self) -> Result<Snapshot, IptError> {
        Ok(Snapshot::parse_table(
            &self.save_filter_counters()?,
            "filter",
        ))
    }

    /// Adds the jump from `FORWARD` into the accounting chain where missing.
    /// Returns whether it was added.
    pub fn ensure_acct_jump(&self) -> Result<bool, IptError> {
        let args = |op| {
            vec![
                "-w",
                "-t",
                "filter",
                op,
                ACCT_JUMP.0,
                "-m",
                "comment",
                "--comment",
                JUMP_COMMENT,
                "-j",
                ACCT_JUMP.1,
            ]
        };
        if self.run(&self.base, &args("-C"), None).is_ok() {
            return Ok(false);
        }
        self.run(&self.base, &args("-I"), None)?;
        Ok(true)
    }

    /// The accounting jump as `iptables-save` prints it.
    pub fn acct_jump_line() -> (String, String) {
        (
            ACCT_JUMP.0.to_string(),
            format!(
                "-A {} -m comment --comment \"{JUMP_COMMENT}\" -j {}",
                ACCT_JUMP.0, ACCT_JUMP.1
            ),
        )
    }

    /// `<base>-save -t nat`.
    pub fn save_nat(&self) -> Result<String, IptError> {
        self.run(&format!("{}-save", self.base), &["-t", "nat"], None)
    }

    /// The owned part of the nat table, per chain.
    pub fn owned_snapshot(&self) -> Result<Snapshot, IptError> {
        Ok(Snapshot::parse(&self.save_nat()?))
    }

    fn jump_args<'a>(op: &'a str, from: &'a str, to: &'a str) -> Vec<&'a str> {
        vec![
            "-w",
            "-t",
            "nat",
            op,
            from,
            "-m",
            "comment",
            "--comment",
            JUMP_COMMENT,
            "-j",
            to,
        ]
    }

    /// Adds the jumps into the owned chains where missing (`-C`, then `-I`).
    /// The chains must exist. Returns how many were added.
    pub fn ensure_jumps(&self) -> Result<usize, IptError> {
        let mut added = 0;
        for (from, to) in JUMPS {
            if self
                .run(&self.base, &Self::jump_args("-C", from, to), None)
                .is_err()
            {
                self.run(&self.base, &Self::jump_args("-I", from, to), None)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Whether the SNAT target takes `--random-fully` here: applies and
    /// removes a probe chain.
    pub fn supports_random_fully(&self) -> bool {
        let probe = format!("{CHAIN_PREFIX}PROBE");
        let ok = self
            .restore(&format!(
                "*nat\n:{probe} - [0:0]\n-A {probe} -j SNAT --to-source 127.0.0.1 --random-fully\nCOMMIT\n"
            ))
            .is_ok();
        let _ = self.restore(&format!("*nat\n:{probe} - [0:0]\n-X {probe}\nCOMMIT\n"));
        ok
    }

    /// The jump lines as `iptables-save` prints them.
    pub fn jump_lines() -> Vec<(String, String)> {
        JUMPS
            .iter()
            .map(|(from, to)| {
                (
                    from.to_string(),
                    format!("-A {from} -m comment --comment \"{JUMP_COMMENT}\" -j {to}"),
                )
            })
            .collect()
    }
}

/// `Error occurred at line: N` (both backends) or `line N failed`.
fn blamed_line(stderr: &str) -> Option<usize> {
    for l in stderr.lines() {
        if let Some(rest) = l.split("Error occurred at line:").nth(1) {
            return rest.trim().parse().ok();
        }
        if let Some(rest) = l.split(": line ").nth(1) {
            return rest.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// The agent-owned lines of a nat table dump: owned chains and their rules,
/// plus rules elsewhere that mention an owned chain (the jumps). Counters
/// are dropped; order within a chain is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Chain -> its owned rule lines.
    pub chains: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    /// Parses `iptables-save` output (its nat table).
    pub fn parse(save: &str) -> Snapshot {
        Snapshot::parse_table(save, "nat")
    }

    /// Parses one table of `iptables-save` output, with or without `-c`.
    pub fn parse_table(save: &str, table: &str) -> Snapshot {
        let mut s = Snapshot::default();
        let mut in_table = false;
        for l in save.lines() {
            if let Some(t) = l.strip_prefix('*') {
                in_table = t == table;
                continue;
            }
            if !in_table {
                continue;
            }
            // `-c` output: `[packets:bytes] -A ...`.
            let l = match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                Some((_, rule)) => rule,
                None => l,
            };
            if let Some(decl) = l.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or_default();
                if name.starts_with(CHAIN_PREFIX) {
                    s.chains.entry(name.to_string()).or_default();
                }
            } else if let Some(rule) = l.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap_or_default();
                if chain.starts_with(CHAIN_PREFIX) || l.contains(CHAIN_PREFIX) {
                    s.chains
                        .entry(chain.to_string())
                        .or_default()
                        .push(l.to_string());
                }
            }
        }
        s
    }

    /// The snapshot the rendered lines should produce, with the jumps.
    pub fn expected(chains: &[String], lines: &[String]) -> Snapshot {
        let mut s = Snapshot::default();
        for c in chains {
            s.chains.entry(c.clone()).or_default();
        }
        for (from, l) in Iptables::jump_lines() {
            s.chains.entry(from).or_default().push(l);
        }
        for l in lines {
            let chain = l
                .strip_prefix("-A ")
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_default();
            s.chains
                .entry(chain.to_string())
                .or_default()
                .push(l.clone());
        }
        s
    }

    /// Owned chains present (`VPCNAT-*`).
    pub fn owned_chains(&self) -> Vec<String> {
        self.chains
            .keys()
            .filter(|c| c.starts_with(CHAIN_PREFIX))
            .cloned()
            .collect()
    }

    /// All rule lines carrying `comment`.
    pub fn lines_with_comment(&self, comment: &str) -> Vec<String> {
        let needle = format!("--comment \"{comment}\"");
        self.chains
            .values()
            .flatten()
            .filter(|l| l.contains(&needle))
            .cloned()
            .collect()
    }

    /// Number of rule lines.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blamed_line_both_backends() {
        assert_eq!(
            blamed_line("iptables-restore v1.8.9 (legacy): x\n\nError occurred at line: 4\nTry"),
            Some(4)
        );
        assert_eq!(blamed_line("iptables-restore: line 12 failed"), Some(12));
        assert_eq!(blamed_line("something else"), None);
    }
}
