//! Adapter model names: `ft-<base>-<first 12 characters of the task id>`, 0G's rule (`makeAdapterName` in the
//! official SDK, `lora/manager.go` in 0G's broker), so names agree with the official CLI's `get-adapter-name`.

use crate::error::{Error, Result};

/// The prefix every adapter model name starts with.
pub const ADAPTER_PREFIX: &str = "ft-";

/// Longest adapter name accepted (a model field of a request is compared against it).
pub const MAX_NAME_LEN: usize = 128;

/// The adapter name 0G's SDK makes for `base_model` and `task_id`: `/`, `.` and spaces in the base become `-`,
/// leading and trailing `-` are trimmed, the task id is cut to its first 12 characters.
///
/// ```
/// assert_eq!(
///     zg_adapters::adapter_name("Qwen/Qwen2.5-0.5B-Instruct", "5f1e2d3c-aaaa-bbbb-cccc-1234567890ab"),
///     "ft-Qwen-Qwen2-5-0-5B-Instruct-5f1e2d3c-aaa"
/// );
/// ```
pub fn adapter_name(base_model: &str, task_id: &str) -> String {
    let sanitized: String = base_model
        .chars()
        .map(|c| if matches!(c, '/' | '.' | ' ') { '-' } else { c })
        .collect();
    let sanitized = sanitized.trim_matches('-');
    let short: String = task_id.chars().take(12).collect();
    format!("{ADAPTER_PREFIX}{sanitized}-{short}")
}

/// Whether a requested model names an adapter (starts with `ft-`).
pub fn is_adapter_name(model: &str) -> bool {
    model.starts_with(ADAPTER_PREFIX)
}

/// Checks that `name` can be used as an adapter name and as a directory name: the `ft-` prefix, at most
/// [`MAX_NAME_LEN`] bytes, only ASCII letters, digits, `-` and `_` (so no path separators, no `..`).
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason| Error::BadName {
        name: name.chars().take(MAX_NAME_LEN).collect(),
        reason,
    };
    if !is_adapter_name(name) {
        return Err(bad("it does not start with \"ft-\""));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("longer than 128 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad("only ASCII letters, digits, '-' and '_' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_official_sdk() {
        // makeAdapterName(baseModel, taskId) from @0gfoundation/0g-compute-ts-sdk 0.9.0.
        assert_eq!(
            adapter_name("smollm2-135m-instruct", "0d4c6a52-9f7e-4b1a-8c3d-2e5f6a7b8c9d"),
            "ft-smollm2-135m-instruct-0d4c6a52-9f7"
        );
        assert_eq!(adapter_name("/a.b c/", "short"), "ft-a-b-c-short");
        assert_eq!(adapter_name("m", "0123456789abcdef"), "ft-m-0123456789ab");
        check_name(&adapter_name("Qwen/Qwen2.5-0.5B", "0123456789abcdef")).unwrap();
    }

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        for bad in [
            "ft-../x",
            "ft-a/b",
            "model",
            "ft-a b",
            "ft-\u{0}",
            &format!("ft-{}", "a".repeat(200)),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
