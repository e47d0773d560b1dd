{{/* Chart name, capped for the 63-character label limit. */}}
{{- define "llm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "llm-operator.fullname" -}}
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

{{- define "llm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator Pod: stable across upgrades. */}}
{{- define "llm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels on every object of the release. */}}
{{- define "llm-operator.labels" -}}
helm.sh/chart: {{ include "llm-operator.chart" . }}
{{ include "llm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: llm-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Rules on the objects the operator manages, granted in each watched namespace (or cluster-wide).
Every verb here is one the operator or kopf really uses; see the chart README for why.
*/}}
{{- define "llm-operator.namespacedRules" -}}
# kopf lists/watches LLMDeployments; the operator gets one by name when a child changes and patches its own
# dashboards finalizer (kopf itself keeps no state in them: watch-event handlers only).
- apiGroups: ["llmops.dev"]
  resources: ["llmdeployments"]
  verbs: ["get", "list", "watch", "patch"]
# The operator and kopf merge-patch the status subresource.
- apiGroups: ["llmops.dev"]
  resources: ["llmdeployments/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion: clusters running the
# OwnerReferencesPermissionEnforcement admission plugin require update on the owner's finalizers.
- apiGroups: ["llmops.dev"]
  resources: ["llmdeployments/finalizers"]
  verbs: ["update"]
# Children: watched by kopf, read, written by server-side apply (a patch, authorized as create when the
# object does not exist yet), and deleted (monitors, when monitoring is switched off).
- apiGroups: ["ray.io"]
  resources: ["rayservices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors", "podmonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# While KubeRay reports Ray pods not ready, the operator lists its deployment's pods (by label) to report
# what the scheduler says of those it cannot place; with spec.probe.restartOnStall it deletes the worker
# pods of a deployment whose model stalled (KubeRay re-creates them).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "delete"]
# The operator posts Events (create only; it never updates them).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.secretsGet }}
# The token Secret of spec.model.tokenSecretRef is looked up as metadata only; never list or watch.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}


{{/* The one namespace of the dashboard ConfigMaps: dashboards.namespace, else the release namespace. */}}
{{- define "llm-operator.dashboardsNamespace" -}}
{{- .Values.dashboards.namespace | default .Release.Namespace }}
{{- end }}

{{/* Fail early on combinations that would leave the operator failing with 403s. */}}
{{- define "llm-operator.validate" -}}
{{- if and .Values.rbac.create (not .Values.rbac.secretsGet) .Values.settings.checkSecrets }}
{{- fail "rbac.secretsGet=false needs settings.checkSecrets=false: without get on Secrets the operator cannot check spec.model.tokenSecretRef" }}
{{- end }}
{{- if ge (int .Values.leaderElection.renewDeadline) (int .Values.leaderElection.leaseDuration) }}
{{- fail "leaderElection.renewDeadline must be less than leaderElection.leaseDuration: a leader must stop before its Lease can expire for a standby" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects the metrics Service" }}
{{- end }}
{{- end }}
