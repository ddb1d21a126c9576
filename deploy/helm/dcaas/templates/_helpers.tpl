{{/* The chart's name. */}}
{{- define "dcaas.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The KMS's object names: RELEASE-dcaas-kms, or RELEASE-kms when the
release name already holds the chart's. */}}
{{- define "dcaas.kms.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- printf "%s-kms" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s-kms" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dcaas.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dcaas
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The KMS pods' selector labels. */}}
{{- define "dcaas.kms.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dcaas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: kms
{{- end -}}

{{- define "dcaas.kms.labels" -}}
{{ include "dcaas.labels" . }}
{{ include "dcaas.kms.selectorLabels" . }}
{{- end -}}

{{/* repository:tag or repository@digest of an image value. */}}
{{- define "dcaas.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key of the PostgreSQL DSN. */}}
{{- define "dcaas.postgres.secretName" -}}
{{- if .Values.postgres.existingSecret -}}
{{- .Values.postgres.existingSecret -}}
{{- else -}}
{{- printf "%s-postgres" (include "dcaas.kms.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The KMS's URL inside the cluster. */}}
{{- define "dcaas.kms.url" -}}
{{- printf "https://%s.%s.svc:%v" (include "dcaas.kms.fullname" .) .Release.Namespace .Values.kms.ports.https -}}
{{- end -}}

{{/* "true" when a monitoring object is on: enabled true, or "auto" and the
cluster serves the Prometheus operator's API. */}}
{{- define "dcaas.monitoringOn" -}}
{{- $v := toString .value -}}
{{- if or (eq $v "true") (and (eq $v "auto") (.ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end -}}
{{- end -}}

{{/* Security context of every container: no privilege, read-only root
filesystem, no capabilities. */}}
{{- define "dcaas.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
