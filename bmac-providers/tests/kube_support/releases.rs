//! Release bundles in the shape of the upstream delivery and policy projects' install
//! manifests, written for these tests (not copied from any release): many documents, CRDs,
//! RBAC, Deployments, Services whose ports name no `protocol`, namespaced objects that name no
//! namespace (Argo CD's install is meant for `kubectl apply -n argocd`), and one CRD whose
//! schema is larger than the 256 KiB annotation limit (generated here rather than committed).

use serde_json::{json, Value};

/// Multi-document YAML of `objects`, as a release manifest is written.
pub fn yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o).expect("a JSON value is YAML"));
    }
    out
}

/// A CRD with one served version whose `spec` has `properties`.
pub fn crd(group: &str, version: &str, kind: &str, plural: &str, properties: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                      "singular": kind.to_ascii_lowercase()},
            "scope": "Namespaced",
            "versions": [{
                "name": version, "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                             "properties": properties},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}}
            }]
        }
    })
}

/// `count` documented string properties: a schema of roughly `count` × 600 bytes.
pub fn many_properties(count: usize) -> Value {
    let text = "Describes one knob of the generated schema, written long on purpose so that the \
                whole definition outgrows what a last-applied-configuration annotation may hold. ";
    let props: serde_json::Map<String, Value> = (0..count)
        .map(|i| {
            (
                format!("field{i:04}"),
                json!({"type": "string", "description": format!("{i}: {}", text.repeat(4))}),
            )
        })
        .collect();
    Value::Object(props)
}

fn deployment(name: &str, namespace: Option<&str>, image: &str, port: u16) -> Value {
    let mut meta = json!({"name": name, "labels": {"app.kubernetes.io/name": name}});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"serviceAccountName": name, "containers": [{"name": name, "image": image,
                    "ports": [{"containerPort": port, "name": "http"}]}]}}}})
}

fn service(name: &str, namespace: Option<&str>, ports: Value) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": ports}})
}

/// An Argo CD–shaped install: no Namespace object, and no namespace on its namespaced objects.
/// The Application CRD's schema is over 256 KiB.
pub fn argocd() -> Vec<Value> {
    vec![
        crd(
            "argoproj.io",
            "v1alpha1",
            "Application",
            "applications",
            many_properties(520),
        ),
        crd(
            "argoproj.io",
            "v1alpha1",
            "AppProject",
            "appprojects",
            json!({}),
        ),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "argocd-server"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "argocd-application-controller"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "argocd-server"},
            "rules": [{"apiGroups": ["argoproj.io"], "resources": ["applications", "appprojects"],
                       "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "argocd-server"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "argocd-server"},
            "subjects": [{"kind": "ServiceAccount", "name": "argocd-server"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "bmac-test-argocd-application-controller"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "bmac-test-argocd-application-controller"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "bmac-test-argocd-application-controller"},
            "subjects": [{"kind": "ServiceAccount", "name": "argocd-application-controller",
                          "namespace": "argocd"}]}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"},
            "data": {"timeout.reconciliation": "180s"}}),
        service(
            "argocd-server",
            None,
            json!([{"name": "http", "port": 80, "targetPort": 8080},
                   {"name": "https", "port": 443, "targetPort": 8080}]),
        ),
        deployment(
            "argocd-server",
            None,
            "quay.io/argoproj/argocd:v2.11.0",
            8080,
        ),
    ]
}

/// A Flux–shaped install: its own Namespace, and every namespaced object names it.
pub fn flux() -> Vec<Value> {
    let ns = Some("flux-system");
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "flux-system", "labels": {"app.kubernetes.io/part-of": "flux"}}}),
        crd(
            "source.toolkit.fluxcd.io",
            "v1",
            "GitRepository",
            "gitrepositories",
            json!({"url": {"type": "string"}, "interval": {"type": "string"}}),
        ),
        crd(
            "kustomize.toolkit.fluxcd.io",
            "v1",
            "Kustomization",
            "kustomizations",
            json!({"path": {"type": "string"}, "prune": {"type": "boolean"}}),
        ),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "source-controller", "namespace": "flux-system"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "bmac-test-flux-crd-controller"},
            "rules": [{"apiGroups": ["source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io"],
                       "resources": ["*"], "verbs": ["*"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "bmac-test-flux-crd-controller"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "bmac-test-flux-crd-controller"},
            "subjects": [{"kind": "ServiceAccount", "name": "source-controller",
                          "namespace": "flux-system"}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-egress", "namespace": "flux-system"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "egress": [{}], "ingress": [{"from": [{"podSelector": {}}]}]}}),
        service(
            "source-controller",
            ns,
            json!([{"name": "http", "port": 80, "targetPort": "http"}]),
        ),
        deployment(
            "source-controller",
            ns,
            "ghcr.io/fluxcd/source-controller:v1.3.0",
            9090,
        ),
    ]
}

/// A Gatekeeper–shaped install: its namespace, the ConstraintTemplate CRD, a Service and a
/// Deployment (the constraint CRDs are made by Gatekeeper's controller from the templates).
pub fn gatekeeper() -> Vec<Value> {
    let ns = Some("gatekeeper-system");
    let mut template = crd(
        "templates.gatekeeper.sh",
        "v1",
        "ConstraintTemplate",
        "constrainttemplates",
        json!({}),
    );
    template["spec"]["scope"] = json!("Cluster");
    let mut assign = crd(
        "mutations.gatekeeper.sh",
        "v1",
        "AssignMetadata",
        "assignmetadata",
        json!({}),
    );
    assign["spec"]["scope"] = json!("Cluster");
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "gatekeeper-system", "labels": {"admission.gatekeeper.sh/ignore": "no-self-managing"}}}),
        template,
        assign,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "gatekeeper-admin", "namespace": "gatekeeper-system"}}),
        service(
            "gatekeeper-webhook-service",
            ns,
            json!([{"name": "https-webhook-server", "port": 443, "targetPort": "webhook-server"}]),
        ),
        deployment(
            "gatekeeper-controller-manager",
            ns,
            "openpolicyagent/gatekeeper:v3.16.3",
            8443,
        ),
    ]
}

/// The constraint CRD Gatekeeper's controller would make for a ConstraintTemplate (the test
/// server has no controller, so the test plays its part).
pub fn constraint_crd(template: &Value) -> Value {
    let kind = template
        .pointer("/spec/crd/spec/names/kind")
        .and_then(Value::as_str)
        .expect("a template names its constraint kind");
    let plural = kind.to_ascii_lowercase();
    let mut crd = crd(
        "constraints.gatekeeper.sh",
        "v1beta1",
        kind,
        &plural,
        json!({"parameters": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
    );
    crd["spec"]["scope"] = json!("Cluster");
    crd
}

/// A Cilium–shaped install, as `helm template` renders it but with no namespace on its
/// namespaced objects (bmac places them in `kube-system`): the CiliumNetworkPolicy CRD, the
/// agent's ServiceAccount, ClusterRole and ClusterRoleBinding, its ConfigMap and DaemonSet.
pub fn cilium() -> Vec<Value> {
    vec![
        crd(
            "cilium.io",
            "v2",
            "CiliumNetworkPolicy",
            "ciliumnetworkpolicies",
            json!({}),
        ),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cilium"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cilium"},
            "rules": [{"apiGroups": ["cilium.io"], "resources": ["*"], "verbs": ["*"]},
                      {"apiGroups": [""], "resources": ["pods", "nodes"],
                       "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "cilium"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cilium"},
            "subjects": [{"kind": "ServiceAccount", "name": "cilium", "namespace": "kube-system"}]}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config"},
            "data": {"ipam": "eni", "enable-ipv4": "true", "routing-mode": "native",
                     "egress-masquerade-interfaces": "eth0"}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "cilium", "labels": {"k8s-app": "cilium"}},
            "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                "template": {"metadata": {"labels": {"k8s-app": "cilium"}},
                    "spec": {"serviceAccountName": "cilium", "hostNetwork": true,
                        "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.16.3",
                            "command": ["cilium-agent"], "args": ["--config-dir=/tmp/cilium/config-map"]}]}}}}),
    ]
}

/// A Tigera-operator–shaped Calico install: its namespace, the Installation CRD, the
/// operator's RBAC and Deployment, and the `Installation` with `cni.type` `cni_type`
/// (`AmazonVPC` for policy beside the VPC CNI, `Calico` for Calico networking).
pub fn calico(cni_type: &str) -> Vec<Value> {
    let mut installation = crd(
        "operator.tigera.io",
        "v1",
        "Installation",
        "installations",
        json!({}),
    );
    installation["spec"]["scope"] = json!("Cluster");
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tigera-operator"}}),
        installation,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "tigera-operator", "namespace": "tigera-operator"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "tigera-operator"},
            "rules": [{"apiGroups": ["operator.tigera.io"], "resources": ["*"], "verbs": ["*"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "tigera-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tigera-operator"},
            "subjects": [{"kind": "ServiceAccount", "name": "tigera-operator", "namespace": "tigera-operator"}]}),
        deployment(
            "tigera-operator",
            Some("tigera-operator"),
            "quay.io/tigera/operator:v1.36.2",
            9443,
        ),
        json!({"apiVersion": "operator.tigera.io/v1", "kind": "Installation",
            "metadata": {"name": "default"},
            "spec": {"kubernetesProvider": "EKS", "cni": {"type": cni_type},
                     "calicoNetwork": {"bgp": "Disabled"}}}),
    ]
}

/// The VPC CNI's `aws-node` DaemonSet in `kube-system` as an EKS cluster has it (trimmed):
/// node affinity, the `aws-node` container with its environment, and the network policy
/// agent with `--enable-network-policy=<network_policy>`.
pub fn aws_node(network_policy: bool) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "aws-node", "namespace": "kube-system", "labels": {"k8s-app": "aws-node"}},
        "spec": {"selector": {"matchLabels": {"k8s-app": "aws-node"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": {"k8s-app": "aws-node"}},
                "spec": {"priorityClassName": "system-node-critical", "hostNetwork": true,
                    "serviceAccountName": "aws-node",
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                            {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn",
                             "values": ["fargate", "hybrid", "auto"]}]}]}}},
                    "containers": [
                        {"name": "aws-node",
                         "image": "602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon-k8s-cni:v1.19.0-eksbuild.1",
                         "env": [{"name": "ADDITIONAL_ENI_TAGS", "value": "{}"},
                                 {"name": "ANNOTATE_POD_IP", "value": "false"},
                                 {"name": "AWS_VPC_K8S_CNI_LOGLEVEL", "value": "DEBUG"}]},
                        {"name": "aws-network-policy-agent",
                         "image": "602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon/aws-network-policy-agent:v1.1.5-eksbuild.1",
                         "args": [format!("--enable-network-policy={network_policy}")]}]}}}})
}
