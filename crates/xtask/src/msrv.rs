//! `cargo xtask msrv`: checks each published crate's `rust-version` against what its
//! dependencies declare.
//!
//! Only one toolchain can be installed where this project is built, so the claim cannot
//! be checked by compiling with the old compiler. Two checks stand in for it:
//! clippy's `incompatible_msrv` lint (on in CI through `clippy::all`) refuses standard
//! library items newer than the crate's `rust-version`, and this command refuses a
//! dependency (normal or build, any feature) that itself declares a newer one. What
//! neither sees is syntax newer than the claim; the workspace's newest syntax is
//! let-chains, stable since 1.88, which is the claim.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;

use serde_json::Value;

/// Runs the check; `Err` with every violation, one per line.
pub fn check() -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .current_dir(crate::workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;

    let packages: BTreeMap<&str, &Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let edges: BTreeMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let deps = node["deps"]
                .as_array()?
                .iter()
                .filter(|dep| {
                    // Dev-dependencies do not reach users of the crate.
                    dep["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"] != "dev"))
                })
                .filter_map(|dep| dep["pkg"].as_str())
                .collect();
            Some((node["id"].as_str()?, deps))
        })
        .collect();

    let mut report = Vec::new();
    let mut violations = Vec::new();
    for member in metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(id) = member.as_str() else { continue };
        let package = packages[id];
        // Only what is published makes a promise to users.
        if package["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let name = package["name"].as_str().unwrap_or(id);
        let Some(claim) = package["rust_version"].as_str().and_then(version) else {
            violations.push(format!("{name}: no rust-version"));
            continue;
        };
        let mut newest: Option<((u64, u64, u64), &str)> = None;
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([id]);
        while let Some(current) = queue.pop_front() {
            for &dep in edges.get(current).into_iter().flatten() {
                if !seen.insert(dep) {
                    continue;
                }
                queue.push_back(dep);
                let dep_package = packages[dep];
                let dep_name = dep_package["name"].as_str().unwrap_or(dep);
                if let Some(needed) = dep_package["rust_version"].as_str().and_then(version) {
                    if needed > claim {
                        violations.push(format!(
                            "{name} claims rust-version {} but depends on {dep_name}, which needs {}",
                            show(claim),
                            show(needed)
                        ));
                    }
                    if newest.is_none_or(|(v, _)| needed > v) {
                        newest = Some((needed, dep_name));
                    }
                }
            }
        }
        report.push(match newest {
            Some((needed, by)) => format!(
                "{name}: rust-version {}; the most demanding of {} dependencies is {by} ({})",
                show(claim),
                seen.len(),
                show(needed)
            ),
            None => format!("{name}: rust-version {}", show(claim)),
        });
    }
    if violations.is_empty() {
        Ok(report.join("\n"))
    } else {
        Err(violations.join("\n"))
    }
}

fn version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    ))
}

fn show((major, minor, patch): (u64, u64, u64)) -> String {
    if patch == 0 {
        format!("{major}.{minor}")
    } else {
        format!("{major}.{minor}.{patch}")
    }
}
