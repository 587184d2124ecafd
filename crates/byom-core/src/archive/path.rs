//! Member path normalisation and the hostile-path policy.
//!
//! `tar czf model.tar.gz .` writes `./config.yaml`; a package must be judged the same however
//! it was made, so paths are normalised before anything looks at them, and duplicates are
//! detected on the normalised form.

/// Why a member path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    Absolute,
    ParentComponent,
}

/// `./a//b/` → `a/b`. Absolute paths and `..` components are refused, never resolved.
pub fn normalise(raw: &str) -> Result<String, PathProblem> {
    let bytes = raw.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if raw.starts_with('/') || raw.starts_with('\\') || drive {
        return Err(PathProblem::Absolute);
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathProblem::ParentComponent),
            p if p.split('\\').any(|q| q == "..") => return Err(PathProblem::ParentComponent),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// macOS AppleDouble (`._name`) and `__MACOSX/` members: metadata, not package content.
pub fn is_appledouble(path: &str) -> bool {
    path.split('/').next() == Some("__MACOSX")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with("._"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dot_prefixes() {
        assert_eq!(normalise("./config.yaml"), Ok("config.yaml".into()));
        assert_eq!(
            normalise("././export_artifacts//m.pt"),
            Ok("export_artifacts/m.pt".into())
        );
        assert_eq!(normalise("./"), Ok(String::new()));
        assert_eq!(
            normalise("export_artifacts/"),
            Ok("export_artifacts".into())
        );
    }

    #[test]
    fn refuses_escapes() {
        assert_eq!(normalise("/etc/passwd"), Err(PathProblem::Absolute));
        assert_eq!(normalise("C:/x"), Err(PathProblem::Absolute));
        assert_eq!(normalise("a/../../x"), Err(PathProblem::ParentComponent));
        assert_eq!(normalise("..\\x"), Err(PathProblem::ParentComponent));
        assert_eq!(normalise("a/..b"), Ok("a/..b".into()));
    }

    #[test]
    fn appledouble() {
        assert!(is_appledouble("._config.yaml"));
        assert!(is_appledouble("export_artifacts/._m.pt"));
        assert!(is_appledouble("__MACOSX/export_artifacts/._m.pt"));
        assert!(!is_appledouble("config.yaml"));
    }
}
