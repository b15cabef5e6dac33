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
{{- if .Values.config.redis }}
{{- if not .Values.privateAPI.secretName }}
{{- fail "privateAPI.secretName: several kas replicas (config.redis) authenticate each other with a shared secret: name a Secret with a key \"secret\" of at least 32 bytes" }}
{{- end }}
{{- $priv := dict "listen" (dict "address" (printf ":%v" .Values.ports.privateAPI)) "authentication_secret_file" (printf "%s/private-api/secret" (include "kas.configDir" .)) }}
{{- if .Values.privateAPI.tls.secretName }}
{{- $_ := set $priv.listen "certificate_file" (printf "%s/tls/private-api/tls.crt" (include "kas.configDir" .)) }}
{{- $_ := set $priv.listen "key_file" (printf "%s/tls/private-api/tls.key" (include "kas.configDir" .)) }}
{{- $_ := set $priv "ca_certificate_file" (printf "%s/tls/private-api/ca.crt" (include "kas.configDir" .)) }}
{{- end }}
{{- $_ := set $managed "private_api" $priv }}
{{- if .Values.redisPasswordSecretName }}
{{- $_ := set $managed "redis" (dict "password_file" (printf "%s/redis/password" (include "kas.configDir" .))) }}
{{- end }}
{{- else if .Values.config.private_api }}
{{- fail "config.private_api: the private API is for several kas replicas, which need config.redis (the agent registry)" }}
{{- end }}
{{- if .Values.config.gitlab }}
{{- if not .Values.gitlab.secretName }}
{{- fail "gitlab.secretName: with config.gitlab, name a Secret with a key \"secret\" holding GitLab's .gitlab_kas_secret" }}
{{- end }}
{{- $secret := printf "%s/gitlab/secret" (include "kas.configDir" .) }}
{{- $gl := dict "authentication_secret_file" $secret }}
{{- if .Values.gitlab.gitPasswordSecretName }}
{{- $_ := set $gl "git" (dict "password_file" (printf "%s/gitlab-git/password" (include "kas.configDir" .))) }}
{{- end }}
{{- if .Values.gitlab.caSecretName }}
{{- $_ := set $gl "ca_certificate_file" (printf "%s/gitlab-ca/ca.crt" (include "kas.configDir" .)) }}
{{- end }}
{{- $_ := set $managed "gitlab" $gl }}
{{- $_ := set $managed "api" (dict "listen" (dict "address" (printf ":%v" .Values.ports.api) "authentication_secret_file" $secret)) }}
{{- else if .Values.config.api }}
{{- fail "config.api: the api listener serves GitLab, which needs config.gitlab" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) .Values.gitCache.persistence.enabled (has "ReadWriteOnce" .Values.gitCache.persistence.accessModes) }}
{{- fail "gitCache.persistence: several kas replicas cannot share a ReadWriteOnce volume; use the default emptyDir (each replica keeps its own mirrors) or a ReadWriteMany access mode" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.config.redis) }}
{{- fail "replicas: several kas replicas need Redis (config.redis.address) to find each other's agents; use 1, or set config.redis and privateAPI.secretName" }}
{{- end }}
{{- mergeOverwrite (deepCopy .Values.config) $managed | toYaml }}
{{- end }}

{{/* GOMEMLIMIT in bytes: goMemLimit.ratio of resources.limits.memory
(a Kubernetes quantity: plain bytes, or with a k/M/G/T or Ki/Mi/Gi/Ti suffix). */}}
{{- define "kas.goMemLimit" -}}
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

{{/* The checksum/config pod annotation: of the whole config, or with
liveReload of the keys kas cannot reload (kas/reload.go reloadableKeys). */}}
{{- define "kas.configChecksum" -}}
{{- $c := include "kas.config" . | fromYaml }}
{{- if .Values.liveReload }}
{{- $_ := unset $c "agents" }}
{{- $_ := unset $c "users" }}
{{- $_ := unset $c "repositories" }}
{{- with $c.limits }}
{{- $_ := unset . "max_connections_per_agent" }}
{{- $_ := unset . "max_agent_streams_per_connection" }}
{{- end }}
{{- if not $c.limits }}
{{- $_ := unset $c "limits" }}
{{- end }}
{{- end }}
{{- toYaml $c | sha256sum }}
{{- end }}
