{{/* Name of the chart, or nameOverride. */}}
{{- define "agentk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless it already holds it. */}}
{{- define "agentk.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "agentk.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "agentk.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "agentk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentk.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "agentk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agentk.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentk.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The official gitlab-agent chart's values (config.kasAddress, config.token,
config.secretName, config.kasCaCert, config.kasHeaders) stand in for ours
when ours are not set.
*/}}
{{- define "agentk.kasAddress" -}}
{{- .Values.kasAddress | default ((.Values.config).kasAddress) }}
{{- end }}

{{- define "agentk.existingTokenSecret" -}}
{{- .Values.token.existingSecret | default ((.Values.config).secretName) }}
{{- end }}

{{- define "agentk.tokenValue" -}}
{{- .Values.token.value | default ((.Values.config).token) }}
{{- end }}

{{- define "agentk.caPEM" -}}
{{- .Values.kasCACert.pem | default ((.Values.config).kasCaCert) }}
{{- end }}

{{/* The Secret holding the token. */}}
{{- define "agentk.tokenSecret" -}}
{{- if include "agentk.existingTokenSecret" . }}
{{- include "agentk.existingTokenSecret" . }}
{{- else if include "agentk.tokenValue" . }}
{{- printf "%s-token" (include "agentk.fullname" .) }}
{{- else }}
{{- fail "agentk needs a token: set token.existingSecret (a Secret holding it under token.key) or token.value (or the gitlab-agent chart's config.secretName or config.token)" }}
{{- end }}
{{- end }}

{{/* Whether a CA certificate for kas is configured. */}}
{{- define "agentk.hasCA" -}}
{{- if or (include "agentk.caPEM" .) .Values.kasCACert.existingConfigMap .Values.kasCACert.existingSecret }}true{{ end }}
{{- end }}

{{/* GOMEMLIMIT in bytes: goMemLimit.ratio of resources.limits.memory
(a Kubernetes quantity: plain bytes, or with a k/M/G/T or Ki/Mi/Gi/Ti suffix). */}}
{{- define "agentk.goMemLimit" -}}
{{- $q := .Values.resources.limits.memory -}}
{{- if kindIs "float64" $q }}{{ $q = int64 $q }}{{ end -}}
{{- $q = toString $q -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $unit := trimPrefix $num $q -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- if or (not $num) (not (hasKey $units $unit)) -}}
{{- fail (printf "resources.limits.memory %q: want a quantity such as 512Mi or 1G (for GOMEMLIMIT; or set goMemLimit.enabled: false)" $q) -}}
{{- end -}}
{{- mulf (float64 $num) (get $units $unit) .Values.goMemLimit.ratio | floor | int64 -}}
{{- end -}}
