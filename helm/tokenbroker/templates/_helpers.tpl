{{/* The chart name. */}}
{{- define "tokenbroker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of every object: RELEASE-tokenbroker. */}}
{{- define "tokenbroker.fullname" -}}
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

{{- define "tokenbroker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{/* Labels of every object but the component. */}}
{{- define "tokenbroker.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tokenbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tokenbroker
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tokenbroker.labels" -}}
{{ include "tokenbroker.commonLabels" . }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "tokenbroker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tokenbroker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tokenbroker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "tokenbroker.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "tokenbroker.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "tokenbroker.keyringSecretName" -}}
{{- default (printf "%s-keyring" (include "tokenbroker.fullname" .)) .Values.keyring.existingSecret }}
{{- end }}

{{- define "tokenbroker.keyringSecretKey" -}}
{{- if .Values.keyring.existingSecret }}{{ .Values.keyring.existingSecretKey }}{{ else }}keyring.yaml{{ end }}
{{- end }}

{{- define "tokenbroker.postgresSecretName" -}}
{{- default (printf "%s-postgres" (include "tokenbroker.fullname" .)) .Values.store.postgres.existingSecret }}
{{- end }}

{{- define "tokenbroker.postgresSecretKey" -}}
{{- if .Values.store.postgres.existingSecret }}{{ .Values.store.postgres.existingSecretKey }}{{ else }}dsn{{ end }}
{{- end }}

{{- define "tokenbroker.appSecretsName" -}}
{{- default (printf "%s-app-secrets" (include "tokenbroker.fullname" .)) .Values.appSecrets.existingSecret }}
{{- end }}

{{/* Refuse combinations that cannot work, with the value to change. */}}
{{- define "tokenbroker.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (ne .Values.store.type "postgres") }}
{{- fail (printf "replicaCount is %d but store.type is %q: SQLite is single-process; set store.type=postgres (with store.postgres.existingSecret) to run several replicas, or replicaCount=1" (int .Values.replicaCount) .Values.store.type) }}
{{- end }}
{{- if and (eq .Values.store.type "postgres") (not .Values.store.postgres.existingSecret) (not .Values.store.postgres.dsn) }}
{{- fail "store.type is postgres: set store.postgres.existingSecret (a Secret with the libpq connection string) or store.postgres.dsn" }}
{{- end }}
{{- if and .Values.keyring.keys (not .Values.keyring.active) }}
{{- fail "keyring.keys is set without keyring.active: name the key that seals new values" }}
{{- end }}
{{- if and .Values.keyring.active (not (hasKey .Values.keyring.keys .Values.keyring.active)) }}
{{- fail (printf "keyring.active is %q but keyring.keys has no such key" .Values.keyring.active) }}
{{- end }}
{{- if and .Values.keyring.existingSecret .Values.keyring.keys }}
{{- fail "set keyring.existingSecret or keyring.keys, not both" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name (the Issuer or ClusterIssuer that signs the certificate)" }}
{{- end }}
{{- if and .Values.tls.requireClientCertificate (not .Values.tls.clientAuth) }}
{{- fail "tls.requireClientCertificate needs tls.clientAuth=true" }}
{{- end }}
{{- if .Values.config.auth }}{{ if hasKey .Values.config.auth "service_account_tokens" }}{{ if .Values.serviceAccountIdentities.enabled }}
{{- fail "set serviceAccountIdentities or config.auth.service_account_tokens, not both" }}
{{- end }}{{ end }}{{ end }}
{{- end }}

{{/* The broker's configuration file: the chart's part (listeners, TLS, store,
keyring, service-account identities) and config from the values. */}}
{{- define "tokenbroker.config" -}}
{{- $tls := dict "certificate_file" "/etc/tokenbroker/tls/tls.crt" "private_key_file" "/etc/tokenbroker/tls/tls.key" }}
{{- if .Values.tls.clientAuth }}
{{- $_ := set $tls "client_ca_file" "/etc/tokenbroker/tls/ca.crt" }}
{{- $_ := set $tls "require_client_certificate" .Values.tls.requireClientCertificate }}
{{- end }}
{{- $server := dict "grpc_address" "[::]:50051" "health_address" "[::]:50052" "metrics_address" "0.0.0.0:9464" "shutdown_grace_period" .Values.shutdownGracePeriod "tls" $tls }}
{{- $store := dict }}
{{- if eq .Values.store.type "postgres" }}
{{- $_ := set $store "postgres" (dict "dsn_file" "/etc/tokenbroker/postgres/dsn" "pool_size" (int .Values.store.postgres.poolSize) "lease_ttl" .Values.store.postgres.leaseTTL "heartbeat_interval" .Values.store.postgres.heartbeatInterval) }}
{{- else }}
{{- $_ := set $store "sqlite" (dict "path" "/var/lib/tokenbroker/tokenbroker.db") }}
{{- end }}
{{- $config := deepCopy .Values.config }}
{{- if .Values.serviceAccountIdentities.enabled }}
{{- $auth := default dict $config.auth }}
{{- $_ := set $auth "service_account_tokens" (dict "issuer" .Values.serviceAccountIdentities.issuer "audiences" .Values.serviceAccountIdentities.audiences "jwks_url" .Values.serviceAccountIdentities.jwksUrl "jwks_ca_file" "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt" "jwks_bearer_token_file" "/var/run/secrets/kubernetes.io/serviceaccount/token") }}
{{- $_ := set $config "auth" $auth }}
{{- end }}
{{- $_ := set $config "server" $server }}
{{- $_ := set $config "store" $store }}
{{- $_ := set $config "keys" (dict "keyring_file" "/etc/tokenbroker/keyring/keyring.yaml") }}
{{- toYaml $config }}
{{- end }}
