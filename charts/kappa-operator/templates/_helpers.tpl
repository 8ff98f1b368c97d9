{{/* Names, labels and the RBAC rules shared by the templates. */}}

{{- define "kappa-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, or the release name alone when it already contains the chart name. */}}
{{- define "kappa-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the release namespace: two releases never collide. */}}
{{- define "kappa-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "kappa-operator.fullname" .) }}
{{- end }}

{{- define "kappa-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kappa-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kappa-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kappa-operator.labels" -}}
helm.sh/chart: {{ include "kappa-operator.chart" . }}
{{ include "kappa-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kappa
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kappa-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kappa-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kappa-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kappa-operator.engineImage" -}}
{{- default (printf "ghcr.io/kappa-dev/kappa:%s" .Chart.AppVersion) .Values.engine.image }}
{{- end }}

{{- define "kappa-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.leaseNamespace }}
{{- end }}

{{/*
The operator's permissions in the namespaces it watches: operator/src/rbac.rs (RULES, scope
Watched), which operator/tests/chart.rs checks these equal. A server-side apply that creates
its object is authorized as create, hence create next to patch.
*/}}
{{- define "kappa-operator.watchedRules" -}}
# The controller lists and watches StreamJobs; the kappa.dev/cleanup finalizer is a JSON patch.
- apiGroups: ["kappa.dev"]
  resources: ["streamjobs"]
  verbs: ["list", "watch", "patch"]
# The status is written with a merge patch.
- apiGroups: ["kappa.dev"]
  resources: ["streamjobs/status"]
  verbs: ["patch"]
# Engine Deployments: owned (watched), listed per reconcile, applied and deleted per version.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Each version's ConfigMap (its recorded logic): listed, applied and deleted.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "create", "patch", "delete"]
# Each version's engine Service: applied and deleted.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "patch", "delete"]
# Engine pods are listed per reconcile (restarts, readiness).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# spec.sink.elasticsearch.credentialsSecret is read by name.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# One Event per transition; a repeated Event is patched.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Leader election (kube-lease-manager): rbac.rs RULES, scope OperatorNamespace. */}}
{{- define "kappa-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end }}
