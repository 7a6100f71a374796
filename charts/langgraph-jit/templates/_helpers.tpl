{{/* The release's name for every object; the operator's Service, Secrets and webhooks use it. */}}
{{- define "langgraph-jit.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Run pods' NetworkPolicies let egress reach the operator's pods by these two labels. */}}
{{- define "langgraph-jit.selectorLabels" -}}
app.kubernetes.io/name: langgraph-jit
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "langgraph-jit.labels" -}}
{{ include "langgraph-jit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Where ClusterConnections' Secrets are read: credentials.namespace, else the release's. */}}
{{- define "langgraph-jit.credentialsNamespace" -}}
{{- .Values.credentials.namespace | default .Release.Namespace -}}
{{- end -}}
