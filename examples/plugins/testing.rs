//! Builds the example and test plugins for the tests and benchmarks that load them:
//! the C ones with the C compiler the `cc` crate finds, the Rust ones with a nested
//! `cargo build` into the target directory the running test was built in.
//!
//! Included with `#[path]` (`sinks/src/plugin/tests.rs`, `broker/tests/plugins.rs`,
//! `benches/plugin.rs`), so it needs nothing but `cc` and std.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root: the first directory above the including crate that holds the
/// plugin header.
pub fn workspace() -> PathBuf {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .find(|d| d.join("core/include/coro_plugin.h").is_file())
        .unwrap_or_else(|| {
            panic!(
                "no workspace with core/include/coro_plugin.h above {}",
                start.display()
            )
        })
        .to_path_buf()
}

/// The target directory and profile directory name (`debug`, `release`) this test or
/// benchmark binary was built in: `<target>/<profile>/deps/<binary>`.
fn target() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a binary in <target>/<profile>/deps");
    let profile = profile_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "debug".into());
    let target = profile_dir.parent().expect("<target>").to_path_buf();
    (target, profile)
}

/// The target triple for the `cc` crate, which otherwise reads it from a build
/// script's environment.
fn triple() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "macos" => format!("{arch}-apple-darwin"),
        _ => format!("{arch}-unknown-linux-gnu"),
    }
}

/// Compiles `examples/plugins/c/<name>.c` with `-D` `defines` into a shared library
/// and returns its path. Outputs are named by a hash of their inputs and renamed into
/// place whole, so concurrent test runs share them safely.
pub fn c_plugin(name: &str, defines: &[&str]) -> PathBuf {
    let root = workspace();
    let source = root.join("examples/plugins/c").join(format!("{name}.c"));
    let include = root.join("core/include");
    let mut hasher = DefaultHasher::new();
    std::fs::read(&source)
        .expect("plugin source")
        .hash(&mut hasher);
    std::fs::read(include.join("coro_plugin.h"))
        .expect("header")
        .hash(&mut hasher);
    defines.hash(&mut hasher);
    let dir = target().0.join("coro-test-plugins");
    std::fs::create_dir_all(&dir).expect("plugin output dir");
    let lib = dir.join(format!(
        "{}{name}-{:016x}{}",
        std::env::consts::DLL_PREFIX,
        hasher.finish(),
        std::env::consts::DLL_SUFFIX
    ));
    if lib.is_file() {
        return lib;
    }
    let tmp = dir.join(format!(
        ".{name}-{}-{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let compiler = cc::Build::new()
        .target(&triple())
        .host(&triple())
        .opt_level(2)
        .debug(false)
        .pic(true)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args([
        "-shared",
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
        "-Wall",
        "-Wextra",
        "-Werror",
    ])
    .arg("-I")
    .arg(&include);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.arg("-o").arg(&tmp).arg(&source);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "compiling {}: {cmd:?}\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &lib).expect("renaming the plugin into place");
    lib
}

/// The Rust plugins, built once per process.
pub struct RustPlugins {
    /// `examples/plugins/jsonl-rs`: JSON lines into a file.
    pub jsonl: PathBuf,
    /// `plugin-sdk/examples/testsink.rs`: a blackhole with switchable faults.
    pub testsink: PathBuf,
}

/// Builds the Rust plugins with the cargo running the tests, in the same target
/// directory and profile, and returns their paths.
pub fn rust_plugins() -> &'static RustPlugins {
    static BUILT: OnceLock<RustPlugins> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (target, profile) = target();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace())
            .args([
                "build",
                "--quiet",
                "-p",
                "coro-plugin-jsonl",
                "-p",
                "coro-plugin-sdk",
                "--lib",
                "--example",
                "testsink",
            ])
            .arg("--target-dir")
            .arg(&target);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "building the Rust plugins: {cmd:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = |dir: PathBuf, name: &str| {
            let path = dir.join(format!(
                "{}{name}{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            ));
            assert!(path.is_file(), "{} was not built", path.display());
            path
        };
        let out_dir = target.join(&profile);
        RustPlugins {
            jsonl: lib(out_dir.clone(), "coro_plugin_jsonl"),
            testsink: lib(out_dir.join("examples"), "testsink"),
        }
    })
}
