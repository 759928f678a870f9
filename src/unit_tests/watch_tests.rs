//! Unit tests for `src/watch.rs`: which directories a path depends on.

use super::*;

#[cfg(unix)]
#[test]
fn resolving_follows_links_and_records_where_they_live() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    // git-sync style: root/current -> .worktrees/a, then a ConfigMap-style ..data inside.
    std::fs::create_dir_all(root.join(".worktrees/a/..v1")).unwrap();
    std::fs::write(root.join(".worktrees/a/..v1/x.yaml"), "").unwrap();
    std::os::unix::fs::symlink("..v1", root.join(".worktrees/a/..data")).unwrap();
    std::os::unix::fs::symlink("..data/x.yaml", root.join(".worktrees/a/x.yaml")).unwrap();
    std::os::unix::fs::symlink(".worktrees/a", root.join("current")).unwrap();

    let mut dirs = BTreeSet::new();
    let real = resolve(&root.join("current/./x.yaml"), &mut dirs).unwrap();
    assert_eq!(real, root.join(".worktrees/a/..v1/x.yaml"));
    let expected: BTreeSet<PathBuf> = [root.clone(), root.join(".worktrees/a")].into();
    assert_eq!(dirs, expected);
}

#[cfg(unix)]
#[test]
fn a_missing_path_records_the_deepest_directory_that_exists() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let mut dirs = BTreeSet::new();
    assert_eq!(resolve(&root.join("gone/policies"), &mut dirs), None);
    assert_eq!(dirs, [root.clone()].into());
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_does_not_resolve() {
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("b", root.path().join("a")).unwrap();
    std::os::unix::fs::symlink("a", root.path().join("b")).unwrap();
    assert_eq!(resolve(&root.path().join("a"), &mut BTreeSet::new()), None);
}

#[test]
fn the_watch_set_covers_the_directory_its_parent_and_the_config_directory() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("p")).unwrap();
    std::fs::create_dir_all(root.join("c")).unwrap();
    std::fs::write(root.join("c/config.yaml"), "").unwrap();
    let targets = [
        Target::Dir(root.join("p")),
        Target::File(root.join("c/config.yaml")),
    ];
    let dirs: Vec<PathBuf> = watch_set(&targets).into_keys().collect();
    assert_eq!(dirs, [root.clone(), root.join("c"), root.join("p")]);
}
