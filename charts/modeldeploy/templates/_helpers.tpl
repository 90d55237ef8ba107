{{/* Chart name, truncated to the 63 characters Kubernetes allows. */}}
{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of this release's objects. */}}
{{- define "modeldeploy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "modeldeploy.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "modeldeploy.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
{{- end }}

{{/* Labels the Deployment selects its pods by. */}}
{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image reference. */}}
{{- define "modeldeploy.image" -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the per-node cache collector's objects. */}}
{{- define "modeldeploy.cacheGCName" -}}
{{- printf "%s-cache-gc" (include "modeldeploy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels the cache collector's DaemonSet selects its pods by. */}}
{{- define "modeldeploy.cacheGCSelectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cache-gc
{{- end }}

{{/* Standard labels of the cache collector's objects. */}}
{{- define "modeldeploy.cacheGCLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modeldeploy.cacheGCSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
{{- end }}

{{/* Name of the PVC caches' collectors' ServiceAccount and RoleBinding (one per namespace). */}}
{{- define "modeldeploy.cacheGCClaimsName" -}}
{{- printf "%s-cache-gc-claims" (include "modeldeploy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The namespaces holding a claim of cacheGC.claims, each once, as a JSON array. */}}
{{- define "modeldeploy.cacheGCClaimNamespaces" -}}
{{- $found := dict }}
{{- range .Values.cacheGC.claims }}
{{- $_ := set $found .namespace true }}
{{- end }}
{{- keys $found | sortAlpha | toJson }}
{{- end }}
