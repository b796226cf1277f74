{{/*
Names, labels, images, the services' URLs and the pieces every pod shares. A service is
named by its key in values (registry, datastore, inference, trainer, gateway); helpers that
need it take (dict "root" $ "svc" "<name>").
*/}}

{{- define "aiaa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-aiaa, or the release name when it already contains the chart name. */}}
{{- define "aiaa.fullname" -}}
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

{{/* A service's resource name: <fullname>-<svc>, at most 63 characters. */}}
{{- define "aiaa.svcName" -}}
{{- printf "%s-%s" (include "aiaa.fullname" .root | trunc 52 | trimSuffix "-") .svc }}
{{- end }}

{{- define "aiaa.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aiaa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aiaa.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end }}

{{- define "aiaa.labels" -}}
helm.sh/chart: {{ include "aiaa.chart" .root }}
{{ include "aiaa.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: aiaa
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* Labels of resources that belong to no one service (Secret, ServiceAccount, ...). */}}
{{- define "aiaa.commonLabels" -}}
helm.sh/chart: {{ include "aiaa.chart" . }}
app.kubernetes.io/name: {{ include "aiaa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: aiaa
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* An image reference from {repository, tag} with the global registry and tag. */}}
{{- define "aiaa.imageRef" -}}
{{- $repo := .image.repository }}
{{- with .root.Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end }}
{{- printf "%s:%s" $repo (.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{- define "aiaa.image" -}}
{{- include "aiaa.imageRef" (dict "root" .root "image" (index .root.Values .svc "image")) }}
{{- end }}

{{- define "aiaa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aiaa.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aiaa.secretName" -}}
{{- default (include "aiaa.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* The gRPC or HTTP URL other services reach a service at, through its Service. */}}
{{- define "aiaa.url" -}}
{{- printf "http://%s:%v" (include "aiaa.svcName" .) (index .root.Values .svc "port") }}
{{- end }}

{{/* Whether the data lives in an object store (else: a PVC per stateful service). */}}
{{- define "aiaa.objectStore" -}}
{{- if .Values.store.url }}true{{ end }}
{{- end }}

{{/*
Seconds of a humantime duration written as a sum of <n>h, <n>m and <n>s ("30s", "2m",
"1h 30m"): what the chart needs to check grace periods against AIAA_DRAIN_TIMEOUT and
AIAA_TRAINER_CANCEL_GRACE. Takes (dict "name" VAR "value" TEXT).
*/}}
{{- define "aiaa.seconds" -}}
{{- $text := toString .value | trim }}
{{- if not (regexMatch "^([0-9]+ ?[hms] ?)+$" $text) }}
{{- fail (printf "%s=%q: write it as a sum of hours, minutes and seconds, e.g. 30s, 2m or 1h 30m" .name $text) }}
{{- end }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+ ?[hms]" $text -1 }}
{{- $n := regexFind "[0-9]+" . | atoi }}
{{- if hasSuffix "h" . }}{{ $n = mul $n 3600 }}{{ else if hasSuffix "m" . }}{{ $n = mul $n 60 }}{{ end }}
{{- $total = add $total $n }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
A service's user-set variables: its own `env` over `grpcEnv` (the gRPC services) over the
common `env`.
*/}}
{{- define "aiaa.userEnv" -}}
{{- range $name := list "AIAA_DRAIN_TIMEOUT" }}
{{- if hasKey $.root.Values.env $name }}
{{- fail (printf "env sets %s, which only the gRPC services read: set it in grpcEnv (or in one service's env)" $name) }}
{{- end }}
{{- end }}
{{- $env := deepCopy (index .root.Values .svc "env") }}
{{- if ne .svc "gateway" }}{{ $env = merge $env (deepCopy .root.Values.grpcEnv) }}{{ end }}
{{- $env = merge $env (deepCopy .root.Values.env) }}
{{- toYaml $env }}
{{- end }}

{{/*
The container's env: the chart's wiring (`managed`, which `env` may not change), defaults
the user may override (`defaults`), the user's variables, then the secrets. Takes
(dict "root" $ "svc" NAME "managed" DICT "defaults" DICT "secrets" LIST).
*/}}
{{- define "aiaa.env" -}}
{{- $user := include "aiaa.userEnv" . | fromYaml }}
{{- $managed := .managed }}
{{- with .root.Values.telemetry.otlpEndpoint }}{{ $_ := set $managed "AIAA_OTLP_ENDPOINT" . }}{{ end }}
{{- range $name := concat (keys $managed) .secrets }}
{{- if hasKey $user $name }}
{{- fail (printf "%s.env (or env) sets %s, which the chart sets itself from its values (ports, store, secrets, telemetry.otlpEndpoint); set it there instead" $.svc $name) }}
{{- end }}
{{- end }}
{{- $all := merge $user .defaults $managed }}
{{- range $name := keys $all | sortAlpha }}
- name: {{ $name }}
  value: {{ index $all $name | toString | quote }}
{{- end }}
{{- range $name := .secrets }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "aiaa.secretName" $.root }}
      key: {{ $name }}
      optional: true
{{- end }}
{{- end }}

{{/* The store's variables of a service that keeps data (registry, datastore, trainer). */}}
{{- define "aiaa.storeEnv" -}}
{{- $env := dict "AIAA_STORE_URL" (.Values.store.url | default "/data") }}
{{- if include "aiaa.objectStore" . }}
{{- with .Values.store.s3.endpoint }}{{ $_ := set $env "AWS_ENDPOINT_URL" . }}{{ end }}
{{- with .Values.store.s3.region }}{{ $_ := set $env "AWS_REGION" . }}{{ end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* The secret variables of a service: the API key, and the S3 keys where it stores data. */}}
{{- define "aiaa.secretVars" -}}
{{- $vars := list "AIAA_API_KEY" }}
{{- if and .stores (include "aiaa.objectStore" .root) }}
{{- $vars = concat $vars (list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY") }}
{{- end }}
{{- toJson $vars }}
{{- end }}

{{/* libtorch CPU threads: the CPU limit, else the request, rounded up ("" when neither). */}}
{{- define "aiaa.cpuThreads" -}}
{{- $r := .resources | default dict }}
{{- $cpu := dig "limits" "cpu" "" $r | default (dig "requests" "cpu" "" $r) | toString }}
{{- if $cpu }}
{{- if hasSuffix "m" $cpu }}
{{- div (add (trimSuffix "m" $cpu | atoi) 999) 1000 | max 1 }}
{{- else }}
{{- ceil (float64 $cpu) | int | max 1 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks that a service's grace period exceeds what its stop may take: the drain timeout
(plus, for the trainer, the jobs' cancel grace).
*/}}
{{- define "aiaa.checkGrace" -}}
{{- if ne .svc "gateway" }}{{/* the gateway has no drain limit: its grace bounds it */}}
{{- $user := include "aiaa.userEnv" . | fromYaml }}
{{- $need := include "aiaa.seconds" (dict "name" "AIAA_DRAIN_TIMEOUT" "value" (get $user "AIAA_DRAIN_TIMEOUT" | default "30s")) | atoi }}
{{- if eq .svc "trainer" }}
{{- $need = add $need (include "aiaa.seconds" (dict "name" "AIAA_TRAINER_CANCEL_GRACE" "value" (get $user "AIAA_TRAINER_CANCEL_GRACE" | default "60s")) | atoi) }}
{{- end }}
{{- $grace := index .root.Values .svc "terminationGracePeriodSeconds" | int }}
{{- if le $grace $need }}
{{- fail (printf "%s.terminationGracePeriodSeconds=%d must exceed %d s (AIAA_DRAIN_TIMEOUT%s): Kubernetes would kill the service before it has drained" .svc $grace $need (ternary " + AIAA_TRAINER_CANCEL_GRACE" "" (eq .svc "trainer"))) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings every service shares. */}}
{{- define "aiaa.podSpec" -}}
{{- $v := index .root.Values .svc }}
serviceAccountName: {{ include "aiaa.serviceAccountName" .root }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod metadata: labels and annotations (a checksum of the Secret restarts pods when it changes). */}}
{{- define "aiaa.podMetadata" -}}
labels:
  {{- include "aiaa.selectorLabels" . | nindent 2 }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with .root.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with (index .root.Values .svc "podAnnotations") }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* A container's resources, with nvidia.com/gpu limits when the service asks for GPUs. */}}
{{- define "aiaa.resources" -}}
{{- $v := index .root.Values .svc }}
{{- $res := deepCopy ($v.resources | default dict) }}
{{- $gpu := $v.gpu | default 0 | int }}
{{- if gt $gpu 0 }}
{{- $limits := get $res "limits" | default dict }}
{{- $_ := set $limits "nvidia.com/gpu" $gpu }}
{{- $_ := set $res "limits" $limits }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Native gRPC probes: startup and liveness ask for the server as a whole (""), readiness for the service itself. */}}
{{- define "aiaa.grpcProbes" -}}
{{- $v := index .root.Values .svc }}
startupProbe:
  grpc:
    port: {{ $v.port }}
    service: ""
  periodSeconds: {{ .startupPeriod | default 2 }}
  failureThreshold: {{ .startupFailures | default 30 }}
  timeoutSeconds: 2
livenessProbe:
  grpc:
    port: {{ $v.port }}
    service: ""
  periodSeconds: {{ $v.probes.periodSeconds }}
  failureThreshold: {{ $v.probes.failureThreshold }}
  timeoutSeconds: 2
readinessProbe:
  grpc:
    port: {{ $v.port }}
    service: {{ .service }}
  periodSeconds: {{ $v.probes.periodSeconds }}
  failureThreshold: {{ $v.probes.failureThreshold }}
  timeoutSeconds: 2
{{- end }}

{{/* The data volume of a stateful service: its claim, when there is no object store. */}}
{{- define "aiaa.dataVolume" -}}
{{- if not (include "aiaa.objectStore" .root) }}
- name: data
  persistentVolumeClaim:
    claimName: {{ (index .root.Values .svc "persistence" "existingClaim") | default (include "aiaa.svcName" .) }}
{{- end }}
{{- end }}

{{- define "aiaa.dataMount" -}}
{{- if not (include "aiaa.objectStore" .) }}
- name: data
  mountPath: /data
{{- end }}
{{- end }}

{{/* The engine pool's text: models.enginePool, else the shipped files/models/engine_pool.json. */}}
{{- define "aiaa.enginePoolText" -}}
{{- .Values.models.enginePool | default (.Files.Get "files/models/engine_pool.json") }}
{{- end }}

{{/*
The engine pool's models as JSON: [{name, configFile, key, folder, config}], where key is
the ConfigMap key of the model's config, folder the config's folder (where the weights go,
relative to the pool's folder) and config its text. Fails on a pool the chart cannot mount.
*/}}
{{- define "aiaa.poolModels" -}}
{{- $text := include "aiaa.enginePoolText" . }}
{{- if not $text }}{{ fail "models.enginePool is empty and the chart's files/models/engine_pool.json is missing" }}{{ end }}
{{- $out := list }}
{{- range $i, $entry := fromJsonArray $text }}
{{- if not (kindIs "map" $entry) }}
{{- fail (printf "models.enginePool: entry %d is not a JSON object (the seed's engine_pool.json is a list of {name, class, module, config_file, labels})" $i) }}
{{- end }}
{{- $name := get $entry "name" | default "" | toString }}
{{- $file := get $entry "config_file" | default "" | toString }}
{{- if not (regexMatch "^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*$" $file) }}
{{- fail (printf "models.enginePool: model %q: config_file %q must be a relative path of letters, digits, '.', '_', '-' (the chart mounts it under the pool's folder)" $name $file) }}
{{- end }}
{{- if contains ".." $file }}
{{- fail (printf "models.enginePool: model %q: config_file %q may not leave the pool's folder" $name $file) }}
{{- end }}
{{- $config := get $.Values.models.configs $file | default ($.Files.Get (printf "files/models/%s" $file)) }}
{{- if not $config }}
{{- fail (printf "models.enginePool: model %q names config_file %q, which is neither in models.configs nor in the chart's files/models/" $name $file) }}
{{- end }}
{{- $folder := dir $file }}
{{- if eq $folder "." }}
{{- fail (printf "models.enginePool: model %q: put config_file %q in a folder of its own (the model's weights are pulled there)" $name $file) }}
{{- end }}
{{- $out = append $out (dict "name" $name "configFile" $file "key" (replace "/" "__" $file) "folder" $folder "config" $config) }}
{{- end }}
{{- if not $out }}{{ fail "models.enginePool lists no model" }}{{ end }}
{{- toJson $out }}
{{- end }}

{{/* A registry reference org/team/name:version split into its parts, as JSON. */}}
{{- define "aiaa.weightRef" -}}
{{- if not (regexMatch "^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$" (toString .ref)) }}
{{- fail (printf "models.weights.%s=%q: write it as org/team/name:version, e.g. aiaa/default/%s:1" .model .ref .model) }}
{{- end }}
{{- $parts := regexSplit "[/:]" .ref -1 }}
{{- toJson (dict "org" (index $parts 0) "team" (index $parts 1) "name" (index $parts 2) "version" (index $parts 3)) }}
{{- end }}
