//! With `--features libfuzzer`: link LLVM's libFuzzer runtime (it provides `main`, the sancov
//! callbacks and the mutator). `LIBFUZZER_LIB` names the archive; by default clang's.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBFUZZER_LIB");
    if std::env::var_os("CARGO_FEATURE_LIBFUZZER").is_none() {
        return;
    }
    let lib = std::env::var("LIBFUZZER_LIB")
        .unwrap_or_else(|_| "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a".into());
    let path = std::path::Path::new(&lib);
    let dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("lib"))
        .and_then(|n| n.strip_suffix(".a"))
        .unwrap_or("clang_rt.fuzzer-x86_64")
        .to_string();
    println!("cargo:rustc-link-search=native={dir}");
    println!("cargo:rustc-link-lib=static={name}");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
