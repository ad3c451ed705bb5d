//! The step kinds of the catalogue: their names (what providers are routed by) and which
//! config fields force a replacement instead of an in-place update.
//!
//! Replacement fields follow what the clouds allow: a cluster cannot move region or change its
//! name; a node group's instance types and disk are fixed at creation on EKS and GKE; a
//! StorageClass's provisioner, parameters, reclaim policy and binding mode are immutable in
//! Kubernetes (the API server answers 422); a bucket cannot be
//! renamed; a network's address plan (range, zones) is fixed once its subnets exist, and a key
//! is never swapped in place (what it encrypted needs it); an add-on or an identity binding is
//! identified by what it is for; a pull-through cache is named by its mirror's prefix (a new
//! prefix is a new cache). Everything else updates in place.

use bmac_core::Kind;

/// The managed cluster (control plane).
pub const CLUSTER: &str = "cluster";
/// The network (VPC and subnets) a cloud cluster lives in.
pub const NETWORK: &str = "network";
/// A customer-managed encryption key (the cluster's Secrets).
pub const ENCRYPTION_KEY: &str = "encryption_key";
/// The CNI plugin installation.
pub const CNI: &str = "cni";
/// A node pool / node group.
pub const NODE_POOL: &str = "node_pool";
/// A Kubernetes StorageClass.
pub const STORAGE_CLASS: &str = "storage_class";
/// An object-storage bucket (audit archive).
pub const OBJECT_BUCKET: &str = "object_bucket";
/// Control-plane audit log delivery (log types on the cluster).
pub const AUDIT_LOGGING: &str = "audit_logging";
/// Export of audit logs into the archive bucket.
pub const AUDIT_ARCHIVE: &str = "audit_archive";
/// An alarm on denied requests / anomalies in the audit log.
pub const AUDIT_ALARM: &str = "audit_alarm";
/// A namespace with its labels.
pub const NAMESPACE: &str = "namespace";
/// The PodSecurity admission labels of a namespace (applied after the namespace exists).
pub const POD_SECURITY_LABELS: &str = "pod_security_labels";
/// The policy engine install (Kyverno or Gatekeeper).
pub const POLICY_ENGINE: &str = "policy_engine";
/// One policy (Kyverno ClusterPolicy or Gatekeeper constraint).
pub const POLICY: &str = "policy";
/// A registry mirror / pull-through cache.
pub const REGISTRY_MIRROR: &str = "registry_mirror";
/// What the registry holding the pull-through caches lets the cluster's nodes do.
pub const REGISTRY_POLICY: &str = "registry_policy";
/// A cloud IAM role (or GCP service account) for workload identity.
pub const IAM_ROLE: &str = "iam_role";
/// A Kubernetes ServiceAccount bound to a cloud role.
pub const SERVICE_ACCOUNT: &str = "service_account";
/// Extra Kubernetes objects from the spec.
pub const MANIFEST: &str = "manifest";
/// A cluster add-on the cloud manages (an EKS add-on: the VPC CNI, the EBS CSI driver, the
/// Pod Identity agent).
pub const ADDON: &str = "addon";
/// The binding of a cloud role to a Kubernetes service account held by the cloud (an EKS Pod
/// Identity association).
pub const IDENTITY_BINDING: &str = "identity_binding";
/// The cloud IAM's trust in the cluster's OIDC issuer (EKS IAM roles for service accounts).
pub const OIDC_PROVIDER: &str = "oidc_provider";

/// Every kind the catalogue produces.
pub const ALL: &[&str] = &[
    CLUSTER,
    NETWORK,
    ENCRYPTION_KEY,
    CNI,
    NODE_POOL,
    STORAGE_CLASS,
    OBJECT_BUCKET,
    AUDIT_LOGGING,
    AUDIT_ARCHIVE,
    AUDIT_ALARM,
    NAMESPACE,
    POD_SECURITY_LABELS,
    POLICY_ENGINE,
    POLICY,
    REGISTRY_MIRROR,
    REGISTRY_POLICY,
    IAM_ROLE,
    SERVICE_ACCOUNT,
    MANIFEST,
    ADDON,
    IDENTITY_BINDING,
    OIDC_PROVIDER,
];

/// The [`Kind`] for a catalogue kind name, with its replacement fields.
pub fn kind(name: &str) -> Kind {
    let replace_on: &[&str] = match name {
        // GKE fixes Dataplane V2 at creation.
        CLUSTER => &["/name", "/region", "/provider", "/account", "/datapath"],
        NETWORK => &["/cluster", "/cidr", "/zones", "/zone_count", "/existing"],
        ENCRYPTION_KEY => &["/alias", "/existing"],
        NODE_POOL => &["/name", "/instance_types", "/disk"],
        STORAGE_CLASS => &[
            "/name",
            "/type",
            "/encrypted",
            "/provisioner",
            "/parameters",
            "/reclaim_policy",
            "/volume_binding_mode",
        ],
        OBJECT_BUCKET => &["/name", "/object_lock"],
        NAMESPACE => &["/name"],
        SERVICE_ACCOUNT => &["/namespace", "/name"],
        IAM_ROLE => &["/name", "/purpose"],
        POLICY_ENGINE => &["/engine"],
        CNI => &["/plugin"],
        // EKS names an add-on and a Pod Identity association by cluster, add-on, namespace
        // and service account; only versions, settings and roles change in place.
        ADDON => &["/cluster", "/name"],
        IDENTITY_BINDING => &["/cluster", "/namespace", "/service_account"],
        OIDC_PROVIDER => &["/cluster"],
        REGISTRY_MIRROR => &["/mirror", "/pull_through_cache"],
        _ => &[],
    };
    Kind::with_replace_on(name, replace_on.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_fields_follow_the_clouds() {
        assert!(kind(CLUSTER).replace_on().any(|p| p == "/region"));
        assert!(kind(NODE_POOL).replace_on().any(|p| p == "/instance_types"));
        assert!(!kind(NODE_POOL).replace_on().any(|p| p == "/scaling"));
        assert_eq!(kind(POLICY).replace_on().count(), 0);
        assert_eq!(kind(NAMESPACE).name(), NAMESPACE);
    }
}
