use super::*;

#[test]
fn aliases_resolve_as_argocd_admin_does() {
    assert_eq!(resolve_resource("app"), "applications");
    assert_eq!(resolve_resource("cert"), "certificates");
    assert_eq!(resolve_resource("key"), "gpgkeys");
    assert_eq!(resolve_resource("write-repositories"), "write-repositories");
    assert_eq!(resolve_resource("whatever"), "whatever");
}

#[test]
fn strict_validation_allows_paths_only_where_argo_cd_does() {
    assert!(validate_resource_action("applications", "update/apps/Deployment/ns/x").is_ok());
    assert!(validate_resource_action("applications", "action/argoproj.io/Rollout/resume").is_ok());
    assert!(validate_resource_action("applications", "sync/x").is_err());
    assert!(validate_resource_action("projects", "update").is_ok());
    assert!(validate_resource_action("certificates", "update").is_err());
    assert!(validate_resource_action("extensions", "invoke").is_ok());
    assert_eq!(
        validate_resource_action("aplications", "get"),
        Err("'aplications' is not a valid resource name".to_string())
    );
}

#[test]
fn project_scoped_resources_default_to_every_object() {
    assert_eq!(default_object("applications", None), "*/*");
    assert_eq!(default_object("write-repositories", Some("*")), "*/*");
    assert_eq!(default_object("applications", Some("p/a")), "p/a");
    assert_eq!(default_object("projects", None), "");
}
