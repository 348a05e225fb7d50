{{/* Names: every object is "<fullname>-<component>", trimmed to the 63-character label limit. */}}
{{- define "minmo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "minmo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "minmo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels. Call with (dict "ctx" $ "component" "orchestrator"). */}}
{{- define "minmo.labels" -}}
helm.sh/chart: {{ include "minmo.chart" .ctx }}
{{ include "minmo.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: minmo-serve
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels never change between upgrades (a Deployment's selector is immutable). */}}
{{- define "minmo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "minmo.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .pool }}
minmo-serve/pool: {{ . }}
{{- end }}
{{- end -}}

{{- define "minmo.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* Object names shared between templates. */}}
{{- define "minmo.orchestrator.fullname" -}}{{ include "minmo.fullname" . }}-orchestrator{{- end -}}
{{- define "minmo.autoscaler.fullname" -}}{{ include "minmo.fullname" . }}-autoscaler{{- end -}}
{{- define "minmo.redis.fullname" -}}{{ include "minmo.fullname" . }}-redis{{- end -}}
{{- define "minmo.pool.fullname" -}}{{ include "minmo.fullname" .ctx }}-triton-{{ .pool }}{{- end -}}
{{- define "minmo.orchestrator.tlsSecret" -}}
{{- default (printf "%s-tls" (include "minmo.orchestrator.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* Termination grace periods, from the parts they must cover (docs/operations-cluster.md, "Drains").
     Orchestrator: preStop wait + the drain `minmo serve --drain-seconds` promises to finish within + 10 s
     for the process to exit. Triton: the preStop wait's bound + tritonserver's exit timeout + 10 s. */}}
{{- define "minmo.orchestrator.gracePeriod" -}}
{{- add .Values.orchestrator.preStopSeconds .Values.orchestrator.drainSeconds 10 -}}
{{- end -}}
{{- define "minmo.triton.gracePeriod" -}}
{{- add .Values.triton.termination.maxSeconds .Values.triton.termination.exitTimeoutSeconds 10 -}}
{{- end -}}

{{/* topologySpreadConstraints with each constraint's labelSelector filled in with the component's selector
     labels (and, for a Deployment, matchLabelKeys pod-template-hash, so a rollout spreads its new pods too).
     Call with (dict "constraints" LIST "selector" (dict of labels) "deployment" bool). */}}
{{- define "minmo.topologySpread" -}}
{{- $out := list -}}
{{- range .constraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $.selector) -}}
{{- end -}}
{{- if and $.deployment (not (hasKey $c "matchLabelKeys")) -}}
{{- $_ := set $c "matchLabelKeys" (list "pod-template-hash") -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- if $out -}}{{- toYaml $out -}}{{- end -}}
{{- end -}}

{{/* Scheduling fields shared by every pod template. Call with (dict "priority" S "runtime" S "spread" YAML). */}}
{{- define "minmo.scheduling" -}}
{{- with .priority }}
priorityClassName: {{ . }}
{{- end }}
{{- with .runtime }}
runtimeClassName: {{ . }}
{{- end }}
{{- with .spread }}
topologySpreadConstraints:
  {{- . | nindent 2 }}
{{- end }}
{{- end -}}


{{/* Redis: the URL the components connect to (never with the password in it) and its password Secret. */}}
{{- define "minmo.redis.url" -}}
{{- if .Values.redis.bundled.enabled -}}
{{- printf "redis://%s:6379/0" (include "minmo.redis.fullname" .) -}}
{{- else -}}
{{- .Values.redis.external.url -}}
{{- end -}}
{{- end -}}

{{- define "minmo.redis.passwordSecret" -}}
{{- if .Values.redis.bundled.enabled -}}
{{- default (printf "%s-password" (include "minmo.redis.fullname" .)) .Values.redis.bundled.existingSecret -}}
{{- else -}}
{{- .Values.redis.external.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "minmo.redis.passwordKey" -}}
{{- if .Values.redis.bundled.enabled -}}redis-password{{- else -}}{{ .Values.redis.external.passwordKey }}{{- end -}}
{{- end -}}

{{/* Auth Secrets: an existing one or the one the chart creates. */}}
{{- define "minmo.auth.secret" -}}
{{- if eq .Values.auth.mode "api-keys" -}}
{{- default (printf "%s-api-keys" (include "minmo.fullname" .)) .Values.auth.apiKeys.existingSecret -}}
{{- else if eq .Values.auth.mode "jwt" -}}
{{- default (printf "%s-jwt" (include "minmo.fullname" .)) .Values.auth.jwt.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root, numeric user, RuntimeDefault seccomp. Call with the uid. */}}
{{- define "minmo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security. Call with (dict "uid" N "readOnly" bool). */}}
{{- define "minmo.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Cross-field rules the JSON schema cannot word clearly: fail the render with a message that says what to fix. */}}
{{- define "minmo.validate" -}}
{{- $bundled := .Values.redis.bundled.enabled -}}
{{- $external := .Values.redis.external.url -}}
{{- if and $bundled $external -}}
{{- fail "redis: both redis.bundled.enabled=true and redis.external.url are set; use one: set redis.bundled.enabled=false to use the external Redis, or clear redis.external.url" -}}
{{- end -}}
{{- if and (not $bundled) (not $external) -}}
{{- fail "redis: no Redis configured; set redis.external.url (redis:// or rediss://) or redis.bundled.enabled=true" -}}
{{- end -}}
{{- if and (ne .Values.auth.mode "none") (not .Values.tls.enabled) (not .Values.tls.insecure) -}}
{{- fail (printf "auth.mode=%s with tls.enabled=false would send bearer tokens in clear text: keep tls.enabled=true (a Secret with tls.crt, tls.key and ca.crt: tls.existingSecret, or tls.certManager), or set tls.insecure=true if a service mesh encrypts pod traffic" .Values.auth.mode) -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.enabled=true needs tls.certManager.issuerRef.name: the Issuer or ClusterIssuer that signs the orchestrator's certificate" -}}
{{- end -}}
{{- $o := .Values.orchestrator -}}
{{- if gt (add $o.preStopSeconds $o.drainSeconds) 600 -}}
{{- fail (printf "orchestrator.preStopSeconds + orchestrator.drainSeconds is %d s: keep it within 600 s (a node drain waits that long for every replica)" (add $o.preStopSeconds $o.drainSeconds)) -}}
{{- end -}}
{{- $term := .Values.triton.termination -}}
{{- if lt (int $term.maxSeconds) (add $term.minSeconds $term.quietSeconds) -}}
{{- fail (printf "triton.termination.maxSeconds (%d) must be at least minSeconds + quietSeconds (%d)" (int $term.maxSeconds) (add $term.minSeconds $term.quietSeconds)) -}}
{{- end -}}
{{- if and (eq .Values.auth.mode "jwt") (or (not .Values.auth.jwt.issuer) (not .Values.auth.jwt.audience)) -}}
{{- fail "auth.mode=jwt needs auth.jwt.issuer and auth.jwt.audience" -}}
{{- end -}}
{{- if and (eq .Values.auth.mode "jwt") (not .Values.auth.jwt.existingSecret) (not .Values.auth.jwt.publicKey) -}}
{{- fail "auth.mode=jwt needs auth.jwt.existingSecret (a Secret with jwt-public-key.pem) or auth.jwt.publicKey (PEM)" -}}
{{- end -}}
{{- $m := .Values.triton.modelRepository -}}
{{- if and (eq $m.source "pvc") (not $m.pvc.claimName) -}}
{{- fail "triton.modelRepository.source=pvc needs triton.modelRepository.pvc.claimName" -}}
{{- end -}}
{{- if and (eq $m.source "url") (not $m.url) -}}
{{- fail "triton.modelRepository.source=url needs triton.modelRepository.url (s3://, gs:// or as://)" -}}
{{- end -}}
{{- $names := list -}}
{{- $served := list -}}
{{- range .Values.tritonPools -}}
{{- if has .name $names -}}
{{- fail (printf "tritonPools: the pool name %q appears twice; pool names must be unique" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- $pool := .name -}}
{{- range .models -}}
{{- if has . $served -}}
{{- fail (printf "tritonPools[%s]: the model %q is already served by another pool; each model belongs to exactly one pool" $pool .) -}}
{{- end -}}
{{- end -}}
{{- $served = concat $served .models -}}
{{- if gt (int .minReplicas) (int .maxReplicas) -}}
{{- fail (printf "tritonPools[%s]: minReplicas (%d) is greater than maxReplicas (%d)" .name (int .minReplicas) (int .maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- range list "encoder" "backbone" "duplex" "speech_lm" "vocoder" -}}
{{- if not (has . $served) -}}
{{- fail (printf "tritonPools: no pool serves the model %q; every one of encoder, backbone, duplex, speech_lm, vocoder needs a pool" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Health check over TLS for the exec probes: the standard grpc.health.v1 service (`minmo.liveness` for
     liveness, `minmo.v1.MinMo` for readiness), verified with the Secret's CA against the name the certificate
     is issued for (tls.serverName, default the Service's <name>.<namespace>.svc); with mutual TLS the pod
     presents its own certificate. Call with (dict "ctx" $ "service" NAME). */}}
{{- define "minmo.orchestrator.tlsHealthScript" -}}
{{- $ctx := .ctx -}}
{{- $serverName := default (printf "%s.%s.svc" (include "minmo.orchestrator.fullname" $ctx) $ctx.Release.Namespace) $ctx.Values.tls.serverName -}}
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
d = '/etc/minmo/tls/'
r = lambda n: open(d + n, 'rb').read()
{{- if $ctx.Values.tls.clientAuth }}
creds = grpc.ssl_channel_credentials(r('ca.crt'), r('tls.key'), r('tls.crt'))
{{- else }}
creds = grpc.ssl_channel_credentials(r('ca.crt'))
{{- end }}
ch = grpc.secure_channel('localhost:{{ $ctx.Values.orchestrator.port }}', creds, options=[('grpc.ssl_target_name_override', '{{ $serverName }}')])
status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service='{{ .service }}'), timeout=4).status
sys.exit(0 if status == health_pb2.HealthCheckResponse.SERVING else 1)
{{- end -}}
