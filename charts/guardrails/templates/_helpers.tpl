{{/* The chart's name: `guardrails`, or nameOverride. */}}
{{- define "guardrails.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Namespaced objects: fullnameOverride; else the release name when it already contains the chart's
name (release `guardrails` -> `guardrails`); else `<release>-<name>`.
*/}}
{{- define "guardrails.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "guardrails.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRole, ClusterRoleBinding, webhook configurations) are shared by every
namespace: `<release namespace>-<fullname>`, so that releases of the same name in two namespaces do
not collide.
*/}}
{{- define "guardrails.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "guardrails.fullname" .) | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{- define "guardrails.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "guardrails.labels" -}}
helm.sh/chart: {{ include "guardrails.chart" . | quote }}
{{ include "guardrails.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end -}}

{{- define "guardrails.selectorLabels" -}}
app.kubernetes.io/name: {{ include "guardrails.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/* The container image; image.repository has no default: the project publishes no image. */}}
{{- define "guardrails.image" -}}
{{- $repository := required "image.repository is required: build the image from the repository's Dockerfile (docker build -t <registry>/guardrails:<version> .), push it, and set image.repository=<registry>/guardrails (README.md, \"Build and push the image\")" .Values.image.repository -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) | quote -}}
{{- end -}}

{{- define "guardrails.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "guardrails.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "guardrails.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{- define "guardrails.scheduling" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "guardrails.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{ include "guardrails.fullname" . }}-tls
{{- else -}}
{{ required "tls.secretName is required when tls.certManager.enabled is false" .Values.tls.secretName }}
{{- end -}}
{{- end -}}

{{/*
Fail when the cluster does not serve an API the values need. Only when the capabilities come from a
cluster (helm install/upgrade, `helm template --validate`, or `helm template --api-versions ...` as
Argo CD runs it): apiregistration.k8s.io/v1 is served by every kube-apiserver but is not among Helm's
built-in defaults, so plain `helm template` and `helm lint` render without a cluster.
Call with (list $ "cert-manager.io/v1" "a message").
*/}}
{{- define "guardrails.requireApi" -}}
{{- $root := index . 0 -}}
{{- $api := index . 1 -}}
{{- if and ($root.Capabilities.APIVersions.Has "apiregistration.k8s.io/v1") (not ($root.Capabilities.APIVersions.Has $api)) -}}
{{- fail (printf "%s is not served by this cluster: %s" $api (index . 2)) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the webhooks never see: kube-system, the release namespace, webhook.excludeNamespaces. */}}
{{- define "guardrails.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq }}
        - {{ . | quote }}
        {{- end }}
{{- end -}}

{{- define "guardrails.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "guardrails.fullname" .root | quote }}
    namespace: {{ .root.Release.Namespace | quote }}
    path: {{ .path | quote }}
    port: {{ .root.Values.service.port | int }}
  {{- if not .root.Values.tls.certManager.enabled }}
  caBundle: {{ required "tls.caBundle is required when tls.certManager.enabled is false" .root.Values.tls.caBundle | quote }}
  {{- end }}
{{- end -}}

{{- define "guardrails.caInjection" -}}
{{- if .Values.tls.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "guardrails.fullname" .) | quote }}
{{- end }}
{{- end -}}

{{/*
matchConditions (Kubernetes >= 1.30); the API server calls a webhook only when all of them hold.

not-an-automation-status-write: skip status-only writes from the configured automation identities:
the application controller rewrites an Application's status on every reconcile and the Application
CRD has no status subresource, so without this every one of those writes waits for Guardrails. They
are allowed anyway; the trade-off is that they leave no audit line. Anything else they write (an
operation, spec, labels, annotations, finalizers, a deletion) still goes through the webhook.

not-an-exempt-application: webhook.exemptApplications (`namespace/name`), e.g. the Argo CD
Application that deploys Guardrails itself, so that Argo CD can always heal Guardrails.
*/}}
{{- define "guardrails.matchConditions" -}}
{{- $skipStatus := and .Values.webhook.skipAutomationStatusWrites .Values.config.automation -}}
{{- if or $skipStatus .Values.webhook.exemptApplications }}
matchConditions:
{{- if $skipStatus }}
  - name: not-an-automation-status-write
    expression: >-
      !(request.userInfo.username in {{ .Values.config.automation | toJson }} &&
      request.operation == 'UPDATE' &&
      ((has(request.subResource) && request.subResource == 'status') ||
      (request.resource.resource == 'applications' && !has(request.subResource) &&
      has(object.spec) && has(oldObject.spec) && object.spec == oldObject.spec &&
      has(object.operation) == has(oldObject.operation) &&
      (!has(object.operation) || object.operation == oldObject.operation) &&
      has(object.metadata.labels) == has(oldObject.metadata.labels) &&
      (!has(object.metadata.labels) || object.metadata.labels == oldObject.metadata.labels) &&
      has(object.metadata.annotations) == has(oldObject.metadata.annotations) &&
      (!has(object.metadata.annotations) || object.metadata.annotations == oldObject.metadata.annotations) &&
      has(object.metadata.finalizers) == has(oldObject.metadata.finalizers) &&
      (!has(object.metadata.finalizers) || object.metadata.finalizers == oldObject.metadata.finalizers) &&
      !has(object.metadata.deletionTimestamp))))
{{- end }}
{{- with .Values.webhook.exemptApplications }}
  - name: not-an-exempt-application
    expression: >-
      !(request.resource.group == 'argoproj.io' && request.resource.resource == 'applications' &&
      (request.namespace + '/' + request.name) in {{ . | toJson }})
{{- end }}
{{- end }}
{{- end -}}

{{/*
The policy files: files/policies (the shipped set; with includeDefaults false only the schema) and
policies.extra, which may add `*.cedar` files or replace a shipped one (the schema included).
Rendered with toYaml, so any contents (leading spaces, tabs, `---`) survive as written.
*/}}
{{- define "guardrails.policyFiles" -}}
{{- $files := dict -}}
{{- range $path, $_ := .Files.Glob "files/policies/*" -}}
{{- $name := base $path -}}
{{- if or $.Values.policies.includeDefaults (eq $name "guardrails.cedarschema") -}}
{{- $_ := set $files $name ($.Files.Get $path) -}}
{{- end -}}
{{- end -}}
{{- range $name, $contents := .Values.policies.extra -}}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $name) -}}
{{- fail (printf "policies.extra: %q is not a usable file name (letters, digits, '-', '_' and '.' only)" $name) -}}
{{- end -}}
{{- if not (or (hasSuffix ".cedar" $name) (eq $name "guardrails.cedarschema")) -}}
{{- fail (printf "policies.extra: %q would never be loaded: Guardrails reads *.cedar files and guardrails.cedarschema" $name) -}}
{{- end -}}
{{- if not (kindIs "string" $contents) -}}
{{- fail (printf "policies.extra: %q must be the file's contents as a string" $name) -}}
{{- end -}}
{{- $_ := set $files $name $contents -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{/*
The configuration file: config, with mode, and platformGroups added to the `platform` team.
*/}}
{{- define "guardrails.configFile" -}}
{{- $config := deepCopy .Values.config -}}
{{- $_ := set $config "mode" .Values.mode -}}
{{- if .Values.platformGroups -}}
{{- $teams := $config.teams | default dict -}}
{{- $platform := get $teams "platform" | default dict -}}
{{- $groups := concat ($platform.groups | default list) .Values.platformGroups | uniq -}}
{{- $_ := set $platform "groups" $groups -}}
{{- $_ := set $teams "platform" $platform -}}
{{- $_ := set $config "teams" $teams -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
The ConfigMap holding the client CA for mutual TLS (tls.clientCA), or nothing when it is off.
*/}}
{{- define "guardrails.clientCA" -}}
{{- with .Values.tls.clientCA -}}
{{- if and .pem .configMap -}}
{{- fail "tls.clientCA: set either pem or configMap, not both" -}}
{{- else if .pem -}}
{{- if not (contains "-----BEGIN CERTIFICATE-----" .pem) -}}
{{- fail "tls.clientCA.pem: expected PEM certificates (-----BEGIN CERTIFICATE-----)" -}}
{{- end -}}
{{- printf "%s-client-ca" (include "guardrails.fullname" $) -}}
{{- else if .configMap -}}
{{- .configMap -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
`serve --request-timeout`: limits.requestTimeout, else a second less than the webhook's timeout
(800ms for a 1 s timeout), so Guardrails answers before the API server gives up.
*/}}
{{- define "guardrails.requestTimeout" -}}
{{- $webhook := .Values.webhook.timeoutSeconds | int -}}
{{- if .Values.limits.requestTimeout -}}
{{- .Values.limits.requestTimeout -}}
{{- else if gt $webhook 1 -}}
{{- printf "%ds" (sub $webhook 1) -}}
{{- else -}}
800ms
{{- end -}}
{{- end -}}

{{- /*
A Namespace label's value in CEL, or "!absent" (never a valid label value) when the object is null
(CREATE's oldObject, DELETE's object) or has no such label.
*/}}
{{- define "guardrails.labelValue" -}}
({{ .object }} != null && has({{ .object }}.metadata.labels) && {{ .key | squote }} in {{ .object }}.metadata.labels ? {{ .object }}.metadata.labels[{{ .key | squote }}] : '!absent')
{{- end -}}
