{{/*
Names. Every object of a release is named from "tpp-operator.fullname", so two releases (in the
same or different namespaces) never collide on cluster-scoped objects such as the ClusterRole.
*/}}

{{/* The chart's name, or .Values.nameOverride. */}}
{{- define "tpp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: .Values.fullnameOverride, else "<release>-<name>" (just "<release>" when
the release name already contains the chart's name). Truncated to 63 characters (DNS label).
*/}}
{{- define "tpp-operator.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "tpp-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; never change them (Deployment selectors are immutable). */}}
{{- define "tpp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tpp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "tpp-operator.labels" -}}
helm.sh/chart: {{ include "tpp-operator.chart" . }}
{{ include "tpp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tpp-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "tpp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tpp-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image reference: repository:tag, or repository@digest when a digest is set. */}}
{{- define "tpp-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* RUST_LOG for .Values.logLevel: our crate at that level, the noisy HTTP/kube crates at warn. */}}
{{- define "tpp-operator.rustLog" -}}
{{- if .Values.logFilter }}
{{- .Values.logFilter }}
{{- else if has .Values.logLevel (list "error" "warn") }}
{{- .Values.logLevel }}
{{- else }}
{{- printf "%s,kube=warn,hyper=warn,reqwest=warn" .Values.logLevel }}
{{- end }}
{{- end }}
