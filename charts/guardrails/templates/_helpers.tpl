{{- define "guardrails.fullname" -}}
{{- printf "%s-guardrails" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "guardrails.labels" -}}
app.kubernetes.io/name: guardrails
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "guardrails.selectorLabels" -}}
app.kubernetes.io/name: guardrails
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guardrails.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{ include "guardrails.fullname" . }}-tls
{{- else -}}
{{ required "tls.secretName is required when tls.certManager.enabled is false" .Values.tls.secretName }}
{{- end -}}
{{- end -}}

{{- define "guardrails.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        - kube-system
        - {{ .Release.Namespace }}
        {{- range .Values.webhook.excludeNamespaces }}
        - {{ . }}
        {{- end }}
{{- end -}}

{{- define "guardrails.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "guardrails.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- if not .root.Values.tls.certManager.enabled }}
  caBundle: {{ required "tls.caBundle is required when tls.certManager.enabled is false" .root.Values.tls.caBundle }}
  {{- end }}
{{- end -}}

{{- define "guardrails.caInjection" -}}
{{- if .Values.tls.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "guardrails.fullname" . }}
{{- end }}
{{- end -}}

{{/*
Skip status-only writes from the configured automation identities (matchConditions, Kubernetes >= 1.30):
the application controller rewrites an Application's status on every reconcile and the Application CRD
has no status subresource, so without this every one of those writes waits for Guardrails. They are
allowed anyway; the trade-off is that they leave no audit line. Anything else they write (an operation,
spec, labels, annotations, finalizers, a deletion) still goes through the webhook.
*/}}
{{- define "guardrails.matchConditions" -}}
{{- if and .Values.webhook.skipAutomationStatusWrites .Values.config.automation }}
matchConditions:
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
{{- end }}
