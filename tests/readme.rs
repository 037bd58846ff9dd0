//! The README's full adapters.toml example stays valid.

#[test]
fn readme_full_example_validates() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("A full example")
        .expect("the README has a full example");
    let rest = &readme[start..];
    let body = rest
        .split_once("```toml\n")
        .and_then(|(_, b)| b.split_once("```"))
        .map(|(b, _)| b)
        .expect("a ```toml block after it");
    let path = std::path::Path::new("README.md#example.toml");
    match coro::sinks::config::parse(path, body) {
        Ok((config, _)) => {
            assert_eq!(config.adapters.len(), 2);
            assert_eq!(config.adapters[0].sinks.len(), 2);
            assert!(config.adapters[0].dead_letter.is_some());
        }
        Err(errors) => panic!("the README example does not validate:\n{errors}"),
    }
}
