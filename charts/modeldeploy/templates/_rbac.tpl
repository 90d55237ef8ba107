{{/*
The namespaced permissions the operator uses: exactly what its code calls (the kube
adapter's API_CALLS table plus kopf's watches, progress annotations and events), as
derived in modeldeploy_operator/permissions.py. tests/charts/test_rbac.py fails if a rule
here grants less, or more, than that; `helm test` asks the API server for each one.
*/}}
{{- define "modeldeploy.namespacedRules" -}}
- apiGroups: ["modeldeploy.dev"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["modeldeploy.dev"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Server-side apply of an object that does not exist yet needs create as well as patch.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "patch", "delete"]
# Pods are created only for the prefetch step (spec.cache.prefetch); Deployments make the rest.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
{{- if and .Values.peering.enabled .Values.watchNamespaces }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Cluster-scoped permissions: kopf follows CRDs and, when namespaced, namespaces; the
prefetch step lists Nodes to find those spec.pod's placement selects (kube.CLUSTER_API_CALLS). */}}
{{- define "modeldeploy.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if and .Values.peering.enabled (not .Values.watchNamespaces) }}
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}
