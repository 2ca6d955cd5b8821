use super::objects::is_security_invoker;
use super::qualified;

#[test]
fn security_invoker_spellings() {
    let o = |s: &str| vec![s.to_owned()];
    assert!(is_security_invoker(&o("security_invoker=true")));
    assert!(is_security_invoker(&o("security_invoker=on")));
    assert!(is_security_invoker(&o("SECURITY_INVOKER=1")));
    assert!(!is_security_invoker(&o("security_invoker=false")));
    assert!(!is_security_invoker(&o("security_barrier=true")));
    assert!(!is_security_invoker(&[]));
}

#[test]
fn names_outside_public_are_qualified() {
    assert_eq!(qualified("public", "tenants"), "tenants");
    assert_eq!(qualified("crm", "notes"), "crm.notes");
}
