{{/* Name of the chart, or nameOverride. */}}
{{- define "kas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless it already holds it. */}}
{{- define "kas.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "kas.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "kas.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kas.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kas.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the chart mounts things. */}}
{{- define "kas.cacheDir" -}}/var/cache/kas{{- end }}
{{- define "kas.configDir" -}}/etc/kas{{- end }}

{{/* The kas config file: .Values.config with the keys the chart owns. */}}
{{- define "kas.config" -}}
{{- $managed := dict
  "agent" (dict
    "listen" (dict "address" (printf ":%v" .Values.ports.agent))
    "kubernetes_api" (dict "listen" (dict "address" (printf ":%v" .Values.ports.kubernetesAPI))))
  "observability" (dict "listen" (dict "address" (printf ":%v" .Values.ports.observability)))
  "git" (dict "cache_dir" (include "kas.cacheDir" .)) }}
{{- if .Values.tls.agent.secretName }}
{{- $_ := set $managed.agent.listen "certificate_file" "/etc/kas/tls/agent/tls.crt" }}
{{- $_ := set $managed.agent.listen "key_file" "/etc/kas/tls/agent/tls.key" }}
{{- end }}
{{- if .Values.tls.kubernetesAPI.secretName }}
{{- $_ := set $managed.agent.kubernetes_api.listen "certificate_file" "/etc/kas/tls/kubernetes-api/tls.crt" }}
{{- $_ := set $managed.agent.kubernetes_api.listen "key_file" "/etc/kas/tls/kubernetes-api/tls.key" }}
{{- end }}
{{- if or .Values.config.redis .Values.config.private_api }}
{{- fail "config.redis and config.private_api: several kas replicas are not supported by this version yet" }}
{{- end }}
{{- if gt (int .Values.replicas) 1 }}
{{- fail "replicas: several kas replicas need Redis, which this version does not support yet; use 1" }}
{{- end }}
{{- mergeOverwrite (deepCopy .Values.config) $managed | toYaml }}
{{- end }}
